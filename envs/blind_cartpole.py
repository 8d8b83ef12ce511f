"""BlindCartPole: Gymnasium's CartPole with the velocities removed from the observation.

The observation is only the cart's position and the pole's angle; the velocities, which
a balancing policy needs, must be inferred from how these change. A feed-forward policy
sees a single frame and balances poorly; a recurrent policy (``policy.recurrent=lstm``)
or frame stacking (``env.frame_stack=2``) can recover the velocities. Same rewards,
termination and 500-step limit as ``CartPole-v1``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from ppo_envkit import register_env

#: Position and angle, of CartPole's (position, velocity, angle, angular velocity).
KEPT = [0, 2]


@register_env(
    "BlindCartPole-v0", max_episode_steps=500, reward_threshold=475.0, action_names=["left", "right"]
)
class BlindCartPole(gym.Env):
    """CartPole observed without its velocities."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, render_mode: str | None = None):
        self._env = CartPoleEnv(render_mode=render_mode)
        self.render_mode = render_mode
        full = self._env.observation_space
        self.observation_space = spaces.Box(full.low[KEPT], full.high[KEPT], dtype=np.float32)
        self.action_space = self._env.action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed, options=options)
        return obs[KEPT].astype(np.float32), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self._env.step(action)
        return obs[KEPT].astype(np.float32), reward, terminated, truncated, info

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()
