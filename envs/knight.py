"""KnightTour: a knight's tour on a small board. Action masking: most actions are illegal.

A knight starts on a random cell of a 5 x 5 board (``size`` is a constructor argument)
and hops from cell to cell. The action is the target cell (``Discrete(size * size)``);
the legal actions are the knight moves to cells not visited yet, so at most 8 of the 25
actions are legal, and usually only 2 to 4. Each newly visited cell pays +1; the episode
ends (terminates) when the knight has no legal move left, or has visited every cell.
Visiting all 25 cells (a full tour, possible only from the 13 cells coloured like the
corners) scores 24; from the other 12 cells at most 23 can be reached.

Observation: a ``Dict`` of ``"visited"`` (``MultiBinary((size, size))``, 1 where the
knight has been, the current cell included) and ``"position"`` (``Discrete(size * size)``,
the current cell, ``row * size + col``).

Two registered ids with the same game, for comparing learning with and without masks:

* ``KnightTour-v0`` exposes the mask both ways: the method ``action_masks()`` (the
  sb3-contrib convention) and ``info["action_mask"]`` in every ``reset`` and ``step``,
  a bool array of shape ``(size * size,)``. At a terminal state the mask is all False.
* ``KnightTourNoMask-v0`` has no mask at all (no ``action_masks`` attribute, no info key).

On ``KnightTour-v0`` an illegal action is a bug of the player and raises ``ValueError``
(ppo-envkit's training, evaluation, replay, checker and bench never send one). On
``KnightTourNoMask-v0`` (or with ``illegal="penalize"``) it costs -1, the knight stays
put, and the 10th illegal action of an episode ends it (terminates), so every episode
ends within 24 + 10 steps.

Measured over 1000 episodes (5 x 5): a uniformly random legal move scores 13.6 on
average; Warnsdorff's heuristic (hop to the legal cell with the fewest onward moves, ties
broken at random) scores 19.2 (half its episodes reach the longest possible tour, a sixth
get stuck, scoring 7), which is what a good policy approaches; the longest tour from
each start averages 23.5, the ceiling. Without masks, a uniformly random choice among
all 25 cells (``KnightTourNoMask-v0``) scores -8.4: it hits the limit of 10 illegal
actions after about 1.5 new cells. The threshold of 18 (both ids) is near Warnsdorff, far above random
legal play; without masks the learner must first learn which moves are legal.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

KNIGHT_MOVES = ((-2, -1), (-2, 1), (-1, -2), (-1, 2), (1, -2), (1, 2), (2, -1), (2, 1))
ILLEGAL_PENALTY = 1.0
MAX_ILLEGAL = 10
ILLEGAL_MODES = ("raise", "penalize")
SIZE = 5  # the registered default; action names (chess style, "a5" top left) fit this size
CELL_NAMES = [f"{'abcdefgh'[col]}{SIZE - row}" for row in range(SIZE) for col in range(SIZE)]


def knight_neighbours(size: int) -> list[np.ndarray]:
    """For each cell ``row * size + col``, the cells one knight move away (ascending)."""
    neighbours = []
    for cell in range(size * size):
        row, col = divmod(cell, size)
        targets = [
            (row + dr) * size + (col + dc)
            for dr, dc in KNIGHT_MOVES
            if 0 <= row + dr < size and 0 <= col + dc < size
        ]
        neighbours.append(np.array(sorted(targets), dtype=np.int64))
    return neighbours


class _KnightTourBase(gym.Env):
    """The game without a mask: illegal moves are penalised (or raise, where a mask is exposed)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    expose_mask = False

    def __init__(self, size: int = SIZE, illegal: str | None = None, render_mode: str | None = None):
        # With a mask, an illegal action is a bug of the player: it raises (ppo-envkit never sends one)
        illegal = illegal or ("raise" if self.expose_mask else "penalize")
        if not isinstance(size, int) or size < 3:
            raise ValueError(f"size must be an int of at least 3, got {size!r}")
        if illegal not in ILLEGAL_MODES:
            raise ValueError(f"illegal must be one of {ILLEGAL_MODES}, got {illegal!r}")
        if illegal == "raise" and not self.expose_mask:
            raise ValueError(
                "illegal='raise' needs a mask to avoid illegal moves: use KnightTour-v0, "
                "or illegal='penalize' here"
            )
        self.size = size
        self.illegal = illegal
        self.render_mode = render_mode
        self.observation_space = spaces.Dict(
            {"visited": spaces.MultiBinary((size, size)), "position": spaces.Discrete(size * size)}
        )
        self.action_space = spaces.Discrete(size * size)
        self._neighbours = knight_neighbours(size)
        self._visited = np.zeros((size, size), dtype=np.int8)
        self._position = 0
        self._illegal_count = 0

    def _legal(self) -> np.ndarray:
        mask = np.zeros(self.size * self.size, dtype=bool)
        targets = self._neighbours[self._position]
        mask[targets] = self._visited.reshape(-1)[targets] == 0
        return mask

    def _obs(self) -> dict:
        return {"visited": self._visited.copy(), "position": int(self._position)}

    def _info(self) -> dict:
        info: dict = {"visited_cells": int(self._visited.sum()), "illegal_moves": self._illegal_count}
        if self.expose_mask:
            info["action_mask"] = self._legal()
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._visited[:] = 0
        self._position = int(self.np_random.integers(self.size * self.size))
        self._visited.flat[self._position] = 1
        self._illegal_count = 0
        return self._obs(), self._info()

    def step(self, action):
        target = int(action)
        if not 0 <= target < self.size * self.size:
            raise ValueError(f"action {action!r} is outside Discrete({self.size * self.size})")
        if self._legal()[target]:
            self._position = target
            self._visited.flat[target] = 1
            reward = 1.0
        elif self.illegal == "raise":
            row, col = divmod(self._position, self.size)
            raise ValueError(
                f"illegal action {target} (cell {divmod(target, self.size)}): the knight on "
                f"({row}, {col}) can move to {np.flatnonzero(self._legal()).tolist()}"
            )
        else:
            self._illegal_count += 1
            reward = -ILLEGAL_PENALTY
        terminated = not self._legal().any() or self._illegal_count >= MAX_ILLEGAL
        return self._obs(), reward, terminated, False, self._info()

    def render(self):
        """The board: visited cells shaded, the knight a red disc, its legal targets dotted."""
        if self.render_mode != "rgb_array":
            return None
        cell = 32
        n = self.size
        rows, cols = np.indices((n, n))
        light = (rows + cols) % 2 == 0
        board = np.where(light[..., None], [235, 220, 190], [180, 140, 100]).astype(np.uint8)
        board[self._visited == 1] = np.where(light[..., None], [150, 170, 200], [100, 120, 160])[
            self._visited == 1
        ]
        frame = np.repeat(np.repeat(board, cell, axis=0), cell, axis=1)
        yy, xx = np.mgrid[0:cell, 0:cell] - (cell - 1) / 2
        disc = yy**2 + xx**2 <= (cell * 0.35) ** 2
        dot = yy**2 + xx**2 <= (cell * 0.1) ** 2
        for target in np.flatnonzero(self._legal()):
            r, c = divmod(int(target), n)
            frame[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][dot] = (60, 160, 60)
        r, c = divmod(self._position, n)
        frame[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell][disc] = (200, 40, 40)
        return frame


@register_env(
    "KnightTourNoMask-v0",
    max_episode_steps=100,
    reward_threshold=18.0,
    action_names=CELL_NAMES,
    preset="knight-tour",
)
class KnightTourNoMask(_KnightTourBase):
    """The knight's tour without masks."""


@register_env(
    "KnightTour-v0",
    max_episode_steps=100,
    reward_threshold=18.0,
    action_names=CELL_NAMES,
    preset="knight-tour",
)
class KnightTour(_KnightTourBase):
    """The knight's tour with action masks (``action_masks()`` and ``info["action_mask"]``)."""

    expose_mask = True

    def action_masks(self) -> np.ndarray:
        """The legal actions: knight moves to unvisited cells (bool, shape ``(size * size,)``)."""
        return self._legal()
