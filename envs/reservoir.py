"""Reservoir: keep a reservoir's level near its target through uneven inflow, in money.

Rewards in the units a user's own model might have: thousands per step. A learner that
does not scale rewards sees value targets in the hundreds of thousands; ppo-envkit's
defaults scale them (``env.normalize_reward``).

Each step water flows in (a daily cycle plus noise) and the continuous action sets the
outflow valve in [-1, 1] (mapped to 0..100% open). Observation: level, last inflow,
time of day (as sine and cosine). Reward: ``2000 - 20000 * (level - 0.5)**2`` (the
revenue of a well-kept level), minus the cost of opening the valve; an overflow or an
empty reservoir ends the episode with -100,000. Episodes last at most 250 steps. A
random valve scores about 50,000 (+- 150,000: it often empties or floods the tank);
following the inflow, about 490,000 (ppo-envkit's defaults reach 492,600 in 100,000
steps).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

CAPACITY_OUT = 0.06  # level drained per step by a fully open valve
REVENUE = 2000.0
LEVEL_PENALTY = 20000.0
VALVE_COST = 50.0
FAILURE_PENALTY = 100_000.0
DAY = 50  # steps per inflow cycle


@register_env("Reservoir-v0", max_episode_steps=250)
class Reservoir(gym.Env):
    """Keep the level near 0.5 with an outflow valve."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-2.0, 2.0, shape=(4,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._level = 0.5
        self._inflow = 0.0
        self._t = 0
        self._valve = 0.0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._level = float(self.np_random.uniform(0.3, 0.7))
        self._t = int(self.np_random.integers(0, DAY))
        self._inflow = self._next_inflow()
        return self._obs(), {}

    def _next_inflow(self) -> float:
        cycle = 0.03 * (1.0 + math.sin(2 * math.pi * self._t / DAY))
        return max(0.0, cycle + float(self.np_random.normal(0.0, 0.004)))

    def _obs(self) -> np.ndarray:
        phase = 2 * math.pi * self._t / DAY
        return np.array(
            [2 * self._level - 1, self._inflow / 0.03 - 1, math.sin(phase), math.cos(phase)], np.float32
        )

    def step(self, action):
        valve = (float(np.clip(np.asarray(action).reshape(-1)[0], -1.0, 1.0)) + 1.0) / 2.0
        self._valve = valve
        self._level += self._inflow - CAPACITY_OUT * valve
        self._t += 1
        self._inflow = self._next_inflow()
        failed = not 0.0 <= self._level <= 1.0
        reward = REVENUE - LEVEL_PENALTY * (self._level - 0.5) ** 2 - VALVE_COST * valve
        if failed:
            reward -= FAILURE_PENALTY
            self._level = float(np.clip(self._level, 0.0, 1.0))
        return self._obs(), reward, failed, False, {}

    def render(self):
        """A tank (water blue, target level a green line) and the valve opening as a red bar."""
        height, width = 96, 64
        frame = np.full((height, width, 3), 25, np.uint8)
        frame[4:92, 8:40] = 60  # tank walls
        water_top = 92 - round(self._level * 86)
        frame[water_top:91, 10:38] = (50, 110, 220)
        frame[92 - 43, 6:42] = (60, 200, 90)  # the target level, 0.5
        bar = round(self._valve * 86)
        frame[92 - bar : 92, 48:58] = (220, 70, 60)
        return frame
