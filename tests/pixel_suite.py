"""Pixel games for choosing and checking the defaults of image observations.

Each is an 8 x 8 grid drawn as an RGB picture of ``size`` x ``size`` pixels (16 to 84; each
cell ``size // 8`` pixels, the grid centred), channel-last uint8, with a hand-written rule
(``rule(env)``: the action a good player takes, reading the environment's state) to score
against. With ``PixelChase-v0`` (envs/pixels.py: walk to a target) they make the suite:

* ``PixelCatch-v0``: 10 balls fall one after another from random columns, one row per step;
  the paddle on the bottom row moves left, stays or moves right. Catching pays +1, missing
  -1. Random play: -7.6 (200 episodes); the rule (move under the ball): 10.
* ``PixelAvoid-v0``: rocks fall (a new one in a random column every other step); the
  player on the bottom row moves left, stays or moves right, and each step survived pays
  0.02; being hit costs 1 and ends the episode (truncated at 200 steps). Random play:
  -0.56; the rule (move to the column whose next rock lands latest): 4.0 (it survives).

    register_suite()                      # registers PixelCatch-v0 and PixelAvoid-v0
    make_env("PixelCatch-v0", size=32)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GRID = 8
BACKGROUND, FIELD = (20, 20, 30), (45, 45, 60)
PLAYER, OBJECT = (60, 140, 255), (255, 200, 40)


class _GridGame(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, size: int = 16, render_mode: str | None = None):
        if not isinstance(size, int) or not 16 <= size <= 84:
            raise ValueError(f"size must be an int from 16 to 84, got {size!r}")
        self.size, self.render_mode = size, render_mode
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(3)  # left, stay, right
        self._cell = size // GRID
        self._offset = (size - GRID * self._cell) // 2
        frame = np.full((size, size, 3), BACKGROUND, np.uint8)
        lo, hi = self._offset, self._offset + GRID * self._cell
        frame[lo:hi, lo:hi] = FIELD
        self._background = frame
        self.player = GRID // 2

    def _draw(self, cells: list[tuple[int, int, tuple[int, int, int]]]) -> np.ndarray:
        frame = self._background.copy()
        margin = 1 if self._cell >= 4 else 0
        for row, col, colour in cells:
            top = self._offset + row * self._cell + margin
            left = self._offset + col * self._cell + margin
            frame[top : top + self._cell - margin, left : left + self._cell - margin] = colour
        return frame

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        scale = max(1, 256 // self.size)
        return np.repeat(np.repeat(self._obs(), scale, axis=0), scale, axis=1)

    def _obs(self) -> np.ndarray:
        raise NotImplementedError


class PixelCatch(_GridGame):
    """Catch 10 falling balls with a paddle."""

    BALLS = 10

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.player, self.left = GRID // 2, self.BALLS
        self._new_ball()
        return self._obs(), {}

    def _new_ball(self) -> None:
        self.ball = [0, int(self.np_random.integers(GRID))]

    def _obs(self) -> np.ndarray:
        return self._draw([(self.ball[0], self.ball[1], OBJECT), (GRID - 1, self.player, PLAYER)])

    def step(self, action):
        self.player = int(np.clip(self.player + int(action) - 1, 0, GRID - 1))
        self.ball[0] += 1
        reward = 0.0
        if self.ball[0] == GRID - 1:
            reward = 1.0 if self.ball[1] == self.player else -1.0
            self.left -= 1
            self._new_ball()
        return self._obs(), reward, self.left == 0, False, {}

    def rule(self) -> int:
        return int(np.sign(self.ball[1] - self.player)) + 1


class PixelAvoid(_GridGame):
    """Dodge falling rocks for as long as possible."""

    SURVIVE, HIT = 0.02, -1.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.player, self.t = GRID // 2, 0
        self.rocks: list[list[int]] = []
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return self._draw([*((r, c, OBJECT) for r, c in self.rocks), (GRID - 1, self.player, PLAYER)])

    def step(self, action):
        self.player = int(np.clip(self.player + int(action) - 1, 0, GRID - 1))
        self.t += 1
        for rock in self.rocks:
            rock[0] += 1
        hit = any(r == GRID - 1 and c == self.player for r, c in self.rocks)
        self.rocks = [rock for rock in self.rocks if rock[0] < GRID - 1]
        if self.t % 2 == 0:
            self.rocks.append([0, int(self.np_random.integers(GRID))])
        return self._obs(), self.HIT if hit else self.SURVIVE, hit, False, {}

    def rule(self) -> int:
        """Of left, stay and right, the move to the column whose next rock lands latest (stay on a
        tie, then the move towards the middle)."""

        def landing(col: int) -> int:  # steps until a rock lands in col
            return min((GRID - 1 - r for r, c in self.rocks if c == col), default=GRID)

        moves = []
        for a in range(3):
            col = int(np.clip(self.player + a - 1, 0, GRID - 1))
            moves.append((landing(col), a == 1, -abs(col - 3.5), a))
        return max(moves)[3]


def register_suite() -> None:
    from ppo_envkit import register_env

    register_env("PixelCatch-v0", PixelCatch, max_episode_steps=200, action_names=["left", "stay", "right"])
    register_env("PixelAvoid-v0", PixelAvoid, max_episode_steps=200, action_names=["left", "stay", "right"])


def score(env_cls, size: int, policy: str, episodes: int = 200, seed: int = 0) -> float:
    """Mean return of ``policy`` (``rule`` or ``random``) over ``episodes`` episodes."""
    env = gym.wrappers.TimeLimit(env_cls(size), 200)
    rng = np.random.default_rng(seed)
    total = 0.0
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        done = False
        while not done:
            action = env.unwrapped.rule() if policy == "rule" else int(rng.integers(3))
            _, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
    return total / episodes


if __name__ == "__main__":
    for cls in (PixelCatch, PixelAvoid):
        print(cls.__name__, {p: round(score(cls, 16, p), 2) for p in ("random", "rule")})
