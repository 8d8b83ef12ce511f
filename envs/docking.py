"""Docking: bring a drifting spacecraft to rest at a docking port, with thrusters.

An example of one environment with two action variants (the LunarLander pattern): a
``continuous`` constructor argument chooses between three discrete actions (left
thruster, coast, right thruster) and a continuous thrust in [-1, 1]. With
``variants="continuous"``, ``ppo-envkit train Docking-v0 --action-space continuous``
sets that argument and picks the matching preset.

The craft moves on a line: position x in [-1, 1] (the port is at 0), velocity v.
Each step, thrust u changes v by ``ACCEL * u``, then x by v. Docking needs
``|x| < 0.05`` and ``|v| < 0.015``: arriving fast means overshooting, so the craft has
to brake in time.

Reward: progress towards the port (``|x_before| - |x_after|``), minus a little fuel
(``0.01 * |u|``); +1 for docking (ends the episode), -1 for leaving the [-1, 1] corridor
(ends it too). Episodes last at most 200 steps. A random policy scores about -1.3, one
that only approaches the port about 0.5, and docking from the average start about 1.45:
the threshold of 1.3 means docking in nearly every episode.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

ACCEL = 0.01  # velocity change per step at full thrust
MAX_SPEED = 0.1
DOCK_DISTANCE = 0.05
DOCK_SPEED = 0.015
FUEL_COST = 0.01


@register_env(
    "Docking-v0",
    max_episode_steps=200,
    reward_threshold=1.3,
    variants="continuous",
    preset={"discrete": "docking", "continuous": "docking-continuous"},
    action_names=["left thruster", "coast", "right thruster"],
)
class Docking(gym.Env):
    """Dock a spacecraft on a line; discrete (3 actions) or continuous thrust."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, continuous: bool = False, render_mode: str | None = None):
        self.continuous = continuous
        self.render_mode = render_mode
        # position in [-1, 1], velocity scaled to [-1, 1]
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(3)
        self._x = 0.0
        self._v = 0.0
        self._thrust = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self._x, self._v / MAX_SPEED], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        side = self.np_random.choice([-1.0, 1.0])
        self._x = float(side * self.np_random.uniform(0.3, 0.9))
        self._v = float(self.np_random.uniform(-0.02, 0.02))
        self._thrust = 0.0
        return self._obs(), {}

    def step(self, action):
        if self.continuous:
            thrust = float(np.clip(np.asarray(action, dtype=np.float32).reshape(-1)[0], -1.0, 1.0))
        else:
            thrust = float(int(action) - 1)  # 0: left (-1), 1: coast, 2: right (+1)
        self._thrust = thrust
        before = abs(self._x)
        self._v = float(np.clip(self._v + ACCEL * thrust, -MAX_SPEED, MAX_SPEED))
        self._x += self._v
        reward = before - abs(self._x) - FUEL_COST * abs(thrust)
        docked = abs(self._x) < DOCK_DISTANCE and abs(self._v) < DOCK_SPEED
        lost = abs(self._x) > 1.0
        if docked:
            reward += 1.0
        elif lost:
            reward -= 1.0
            self._x = float(np.clip(self._x, -1.0, 1.0))
        return self._obs(), reward, docked or lost, False, {"docked": docked}

    def render(self):
        """The corridor seen from above: the port (grey), the craft (blue), its thrust (orange)."""
        if self.render_mode != "rgb_array":
            return None
        height, width = 80, 320
        frame = np.full((height, width, 3), (12, 14, 30), dtype=np.uint8)
        mid = height // 2

        def col(x: float) -> int:
            return round((x + 1) / 2 * (width - 1))

        frame[mid - 1 : mid + 1, :] = (40, 44, 70)  # the corridor's axis
        port = col(0.0)
        dock_half = max(1, int(DOCK_DISTANCE / 2 * width))
        frame[mid - 18 : mid + 18, port - dock_half : port + dock_half] = (140, 140, 150)
        craft = col(self._x)
        frame[mid - 8 : mid + 8, max(0, craft - 6) : craft + 6] = (70, 150, 255)
        if self._thrust:
            # the flame points away from the direction of thrust
            length = int(4 + 10 * abs(self._thrust))
            if self._thrust > 0:
                frame[mid - 3 : mid + 3, max(0, craft - 6 - length) : max(0, craft - 6)] = (255, 150, 40)
            else:
                frame[mid - 3 : mid + 3, craft + 6 : craft + 6 + length] = (255, 150, 40)
        return frame
