"""Hover: fly a point mass to a target and hold it there, against gravity.

A small control task of the kind people write for themselves, registered with plain
``gymnasium.register`` as many users do. Its constructor takes a boolean ``continuous``
argument, so ppo-envkit finds its discrete and continuous variants by convention
(``--action-space continuous``) without any declaration.

The craft moves in a 2-D box (x in [-1, 1], height y in [0, 2]) under gravity, with
drag. Each episode a target appears at a random place. Discrete actions: coast, main
engine (up), left, right; continuous: a horizontal and a vertical thrust in [-1, 1].
Observation: position, velocity, and the offset to the target. Reward each step:
``1 - distance`` (at most 1 near the target, negative far from it), minus a little fuel;
touching the ground ends the episode with -10. Episodes last at most 300 steps. A
random policy scores about -11 (it soon falls); ppo-envkit's defaults reach about 280 in
100,000 steps (README, "The defaults").
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GRAVITY = 0.004  # velocity change per step
THRUST = 0.009  # main engine at full power (vertical)
SIDE_THRUST = 0.005
DRAG = 0.97  # velocity kept per step
FUEL_COST = 0.02
CRASH_PENALTY = 10.0
MAX_STEPS = 300


class Hover(gym.Env):
    """Fly to the target and hover; discrete (4 engines) or continuous (2 thrusts)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, continuous: bool = False, render_mode: str | None = None):
        self.continuous = continuous
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-3.0, 3.0, shape=(6,), dtype=np.float32)
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(4)
        self._pos = np.zeros(2)
        self._vel = np.zeros(2)
        self._target = np.zeros(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos = np.array([self.np_random.uniform(-0.5, 0.5), 0.5])
        self._vel = np.zeros(2)
        self._target = np.array([self.np_random.uniform(-0.8, 0.8), self.np_random.uniform(0.8, 1.6)])
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        offset = self._target - self._pos
        return np.concatenate([self._pos, self._vel * 20.0, offset]).astype(np.float32)

    def step(self, action):
        if self.continuous:
            side, up = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
            up = max(up, 0.0)
        else:
            side, up = {0: (0.0, 0.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (1.0, 0.0)}[int(action)]
        self._vel = DRAG * self._vel + np.array([SIDE_THRUST * side, THRUST * up - GRAVITY])
        self._pos = self._pos + self._vel
        self._pos[0] = float(np.clip(self._pos[0], -1.0, 1.0))
        self._pos[1] = min(self._pos[1], 2.0)
        distance = float(np.linalg.norm(self._target - self._pos))
        reward = 1.0 - distance - FUEL_COST * (abs(side) + up)
        crashed = self._pos[1] <= 0.0
        if crashed:
            reward -= CRASH_PENALTY
        return self._obs(), reward, crashed, False, {}

    def render(self):
        size = 96
        frame = np.full((size, size, 3), 20, np.uint8)

        def pixel(point: np.ndarray) -> tuple[int, int]:
            col = int((point[0] + 1.0) / 2.0 * (size - 1))
            row = int((1.0 - point[1] / 2.0) * (size - 1))
            return int(np.clip(row, 0, size - 1)), int(np.clip(col, 0, size - 1))

        r, c = pixel(self._target)
        frame[max(r - 2, 0) : r + 3, max(c - 2, 0) : c + 3] = (60, 200, 90)
        r, c = pixel(self._pos)
        frame[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = (240, 240, 240)
        return frame


gym.register("Hover2D-v0", entry_point=Hover, max_episode_steps=MAX_STEPS)
