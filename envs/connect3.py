"""Connect-Three: a small two-player game with gravity, written as a PettingZoo ``AECEnv``.

An example of a turn-based game: ``register_env("ConnectThree-v0", env)`` registers a function
that returns the ``AECEnv``; ppo-envkit turns it into a one-seat Gymnasium environment whose
other seat is played by opponents (a random legal player at first, then snapshots of the
learner: self-play), see ``docs/several-agents.md``.

The board has 4 rows and 5 columns. Players drop a piece into a column that is not full
(``Discrete(5)``, the legal columns in the mask); the first to line up three of their pieces
(across, up or diagonally) wins: +1 for the winner, -1 for the loser, 0 each for a full board.

Observation (PettingZoo's convention for games): ``{"observation", "action_mask"}``, the
observation a ``(4, 5, 2)`` int8 array: plane 0 the pieces of the player to move, plane 1 the
opponent's. A move to a full column ends the game as a loss for the player who made it
(PettingZoo's ``TerminateIllegalWrapper``, as in its classic games; ppo-envkit never sends one).

Measured (2000 games per seat): a uniformly random player wins 59 % of its games from the first seat and 38 %
from the second against another random player (draws are rare).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppo_envkit import register_env

ROWS, COLS, LINE = 4, 5, 3

try:
    from gymnasium import spaces
    from pettingzoo import AECEnv
    from pettingzoo.utils import AgentSelector, wrappers
except ImportError:  # PettingZoo is optional (pip install 'ppo-envkit[pettingzoo]')
    AECEnv = None


def lines_through(board: np.ndarray, row: int, col: int) -> bool:
    """Whether the piece at ``(row, col)`` completes a line of ``LINE`` of its owner."""
    owner = board[row, col]
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        count = 1
        for sign in (1, -1):
            r, c = row + sign * dr, col + sign * dc
            while 0 <= r < ROWS and 0 <= c < COLS and board[r, c] == owner:
                count += 1
                r, c = r + sign * dr, c + sign * dc
        if count >= LINE:
            return True
    return False


if AECEnv is not None:

    class ConnectThree(AECEnv):
        """Two players drop pieces into a 4 x 5 board; three in a row wins."""

        metadata = {"render_modes": ["rgb_array"], "name": "connect_three_v0", "render_fps": 2}

        def __init__(self, render_mode: str | None = None):
            super().__init__()
            self.render_mode = render_mode
            self.possible_agents = ["player_0", "player_1"]
            board = spaces.Box(0, 1, shape=(ROWS, COLS, 2), dtype=np.int8)
            mask = spaces.Box(0, 1, shape=(COLS,), dtype=np.int8)
            self.observation_spaces = {
                a: spaces.Dict({"observation": board, "action_mask": mask}) for a in self.possible_agents
            }
            self.action_spaces = {a: spaces.Discrete(COLS) for a in self.possible_agents}
            self.board = np.zeros((ROWS, COLS), dtype=np.int8)  # 0 empty, 1 / 2 the players' pieces

        def observation_space(self, agent: str) -> spaces.Space:
            return self.observation_spaces[agent]

        def action_space(self, agent: str) -> spaces.Space:
            return self.action_spaces[agent]

        def observe(self, agent: str) -> dict[str, np.ndarray]:
            me = self.possible_agents.index(agent) + 1
            planes = np.stack([self.board == me, self.board == 3 - me], axis=-1).astype(np.int8)
            legal = (self.board[0] == 0).astype(np.int8)  # row 0 is the top
            return {"observation": planes, "action_mask": legal}

        def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
            self.board[:] = 0
            self.agents = list(self.possible_agents)
            self.rewards = dict.fromkeys(self.agents, 0.0)
            self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
            self.terminations = dict.fromkeys(self.agents, False)
            self.truncations = dict.fromkeys(self.agents, False)
            self.infos = {a: {} for a in self.agents}
            self._selector = AgentSelector(self.agents)
            self.agent_selection = self._selector.reset()

        def step(self, action: Any) -> None:
            agent = self.agent_selection
            if self.terminations[agent] or self.truncations[agent]:
                self._was_dead_step(action)
                return
            self._cumulative_rewards[agent] = 0.0
            col = int(action)
            me = self.possible_agents.index(agent) + 1
            row = int(np.flatnonzero(self.board[:, col] == 0)[-1])  # the lowest empty cell
            self.board[row, col] = me
            self.rewards = dict.fromkeys(self.agents, 0.0)
            if lines_through(self.board, row, col):
                other = self.possible_agents[2 - me]
                self.rewards[agent], self.rewards[other] = 1.0, -1.0
                self.terminations = dict.fromkeys(self.agents, True)
            elif not (self.board == 0).any():
                self.terminations = dict.fromkeys(self.agents, True)
            self._accumulate_rewards()
            self.agent_selection = self._selector.next()

        def render(self) -> np.ndarray | None:
            """The board as an RGB picture (``rgb_array``): blue board, red and yellow pieces."""
            if self.render_mode != "rgb_array":
                return None
            cell = 40
            image = np.zeros((ROWS * cell, COLS * cell, 3), dtype=np.uint8)
            image[...] = (30, 60, 160)
            yy, xx = np.mgrid[0:cell, 0:cell]
            disc = (yy - cell / 2 + 0.5) ** 2 + (xx - cell / 2 + 0.5) ** 2 <= (cell * 0.4) ** 2
            colours = {0: (235, 235, 235), 1: (220, 40, 40), 2: (240, 210, 30)}
            for r in range(ROWS):
                for c in range(COLS):
                    image[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][disc] = colours[
                        int(self.board[r, c])
                    ]
            return image

        def close(self) -> None:
            pass

    def env(render_mode: str | None = None) -> AECEnv:
        """The game with PettingZoo's usual guards (an illegal move loses; order of calls checked)."""
        game = ConnectThree(render_mode=render_mode)
        game = wrappers.TerminateIllegalWrapper(game, illegal_reward=-1)
        game = wrappers.AssertOutOfBoundsWrapper(game)
        return wrappers.OrderEnforcingWrapper(game)

    register_env("ConnectThree-v0", env)
