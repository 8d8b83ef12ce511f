"""Tiny hand-made PettingZoo turn-based games and scripted players for tests/test_selfplay.py."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import AECEnv
from pettingzoo.utils import AgentSelector


class _Game(AECEnv):
    """Shared bookkeeping of the test games (PettingZoo's AEC conventions)."""

    metadata = {"render_modes": [], "name": "test_game"}

    def __init__(self, seats: int, actions: int, obs_dim: int):
        super().__init__()
        self.possible_agents = [f"p{i}" for i in range(seats)]
        obs = spaces.Box(-100, 100, shape=(obs_dim,), dtype=np.float32)
        mask = spaces.Box(0, 1, shape=(actions,), dtype=np.int8)
        self._obs = spaces.Dict({"observation": obs, "action_mask": mask})
        self._act = spaces.Discrete(actions)

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs

    def action_space(self, agent: str) -> spaces.Space:
        return self._act

    def _start(self) -> None:
        self.agents = list(self.possible_agents)
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {a: {} for a in self.agents}
        self._selector = AgentSelector(self.agents)
        self.agent_selection = self._selector.reset()


class RewardEveryTurn(_Game):
    """``seats`` players take ``moves`` turns in all; every move credits EVERY seat a reward that
    depends on the move's number, the mover, the seat and the action, so that a learner's reward
    comes partly from the other seats' turns. Does NOT clear the mover's cumulative reward at its
    step (some PettingZoo games do not): the adapter must not count a reward twice."""

    def __init__(self, seats: int = 3, moves: int = 10):
        super().__init__(seats, 3, 2)
        self.moves = moves

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._start()
        self.move = 0

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        obs = np.array([self.move, self.possible_agents.index(agent)], dtype=np.float32)
        return {"observation": obs, "action_mask": np.ones(3, dtype=np.int8)}

    @staticmethod
    def reward(move: int, mover: int, seat: int, action: int) -> float:
        return 0.25 * (move + 1) * (1 if seat == mover else -0.5) + 0.125 * action * (seat + 1)

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        mover = self.possible_agents.index(agent)
        self.rewards = {a: self.reward(self.move, mover, i, int(action)) for i, a in enumerate(self.agents)}
        self.move += 1
        if self.move >= self.moves:
            self.terminations = dict.fromkeys(self.agents, True)
        self._accumulate_rewards()
        self.agent_selection = self._selector.next()


def reward_every_turn() -> AECEnv:
    return RewardEveryTurn()


class TakeLast(_Game):
    """One heap of ``heap`` stones; a move takes 1 or 2 (actions 0 and 1; taking more than is
    left is masked); who takes the last stone wins (+1, the other -1)."""

    def __init__(self, heap: int = 4):
        super().__init__(2, 2, 1)
        self.heap0 = heap

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._start()
        self.heap = self.heap0

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        mask = np.array([self.heap >= 1, self.heap >= 2], dtype=np.int8)
        return {"observation": np.array([self.heap], dtype=np.float32), "action_mask": mask}

    def step(self, action: Any) -> None:
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        self._cumulative_rewards[agent] = 0.0
        self.heap -= int(action) + 1
        assert self.heap >= 0, "an illegal move reached the game"
        self.rewards = dict.fromkeys(self.agents, 0.0)
        if self.heap == 0:
            other = next(a for a in self.agents if a != agent)
            self.rewards[agent], self.rewards[other] = 1.0, -1.0
            self.terminations = dict.fromkeys(self.agents, True)
        self._accumulate_rewards()
        self.agent_selection = self._selector.next()


def take_last() -> AECEnv:
    return TakeLast()


def optimal_take_last(observation: Any, mask: np.ndarray | None, rng: np.random.Generator) -> int:
    """Leave a multiple of 3 when possible, else take one."""
    heap = int(observation[0])
    return 1 if heap % 3 == 2 else 0


def always_first_legal(observation: Any, mask: np.ndarray | None, rng: np.random.Generator) -> int:
    return int(np.flatnonzero(mask)[0])


class Constant:
    """A fake snapshot player that always plays ``payload["action"]`` (tests the pool draws)."""

    def __init__(self, payload: dict[str, Any]):
        self.action = int(payload["action"])

    def __call__(self, observation: Any, mask: np.ndarray | None, rng: np.random.Generator) -> int:
        return self.action
