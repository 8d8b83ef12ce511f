"""Register your own environment and train it: ``python examples/custom_env.py``.

Check it first with ``ppo-envkit envs check --env-module examples/custom_env.py``; train it
from the command line with ``ppo-envkit train examples/Thermostat-v0 --env-module
examples/custom_env.py --action-space continuous``.
"""

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, evaluate, register_env


@register_env("examples/Thermostat-v0", max_episode_steps=50, reward_threshold=-1.5, variants="continuous")
class Thermostat(gym.Env):
    """Hold a room at its set point: heat or cool it (3 settings, or a power in [-1, 1])."""

    def __init__(self, continuous: bool = False):
        self.continuous = continuous
        self.observation_space = spaces.Box(-10.0, 10.0, (1,), np.float32)  # degrees off the set point
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.temp = self.np_random.uniform(-5.0, 5.0)
        return np.array([self.temp], np.float32), {}

    def step(self, action):
        power = float(np.clip(action[0], -1, 1)) if self.continuous else float(action) - 1.0
        drift = -0.1 * self.temp + self.np_random.normal(0.0, 0.1)  # the room loses heat, noisily
        self.temp = float(np.clip(self.temp + power + drift, -10.0, 10.0))
        return np.array([self.temp], np.float32), -abs(self.temp) / 10, False, False, {}


if __name__ == "__main__":
    config = TrainConfig().with_overrides(
        {"env.id": "examples/Thermostat-v0", "env.kwargs": {"continuous": True}, "ppo.learning_rate": 1e-3}
    )
    agent = PPO(config=config).learn(30_000)
    agent.close()
    solved_at = gym.spec("examples/Thermostat-v0").reward_threshold
    print(f"mean return {evaluate(agent, episodes=20).mean_return:.2f} (solved at {solved_at})")
