"""Small environments for tests, registered through the public API as a user would."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env


class ReachTarget(gym.Env):
    """Continuous: move a point on a line onto a target. Return near 0 is solved.

    obs = [position, target]; action in [-1, 1] moves the point by 0.25 * action.
    reward = -|position - target| per step, 20 steps. A random policy scores about -14.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.render_mode = render_mode
        self._pos = 0.0
        self._target = 0.0

    def _obs(self) -> np.ndarray:
        return np.array([self._pos, self._target], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._pos = float(self.np_random.uniform(-1, 1))
        self._target = float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def step(self, action):
        move = float(np.clip(np.asarray(action).reshape(-1)[0], -1, 1))
        self._pos = float(np.clip(self._pos + 0.25 * move, -2, 2))
        reward = -abs(self._pos - self._target)
        return self._obs(), reward, False, False, {}

    def render(self):
        frame = np.zeros((32, 64, 3), np.uint8)
        frame[:, int((self._target + 2) * 15.9), 1] = 255
        frame[:, int((self._pos + 2) * 15.9), 0] = 255
        return frame


class Countdown(gym.Env):
    """Deterministic bookkeeping env for GAE tests.

    Each episode draws ``terminate_at`` in [2, 9]; the episode terminates when the
    step counter reaches it. A TimeLimit of 6 truncates the others. The observation
    is ``[step / 10, episode_id_fraction]`` and the reward ``1 + step / 10``.
    """

    def __init__(self):
        self.observation_space = spaces.Box(0.0, 10.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._t = 0
        self._terminate_at = 0
        self._tag = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        self._terminate_at = int(self.np_random.integers(2, 10))
        self._tag = float(self.np_random.uniform(0, 1))
        return np.array([0.0, self._tag], np.float32), {}

    def step(self, action):
        self._t += 1
        reward = 1.0 + self._t / 10 + 0.5 * int(action)
        terminated = self._t >= self._terminate_at
        return np.array([self._t / 10, self._tag], np.float32), reward, terminated, False, {}


class NaNReward(gym.Env):
    """Returns a NaN reward on the 200th step of its life (for the non-finite guard).

    Late enough that the quick pre-training check (64 steps) does not see it.
    """

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._steps = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}

    def step(self, action):
        self._steps += 1
        reward = float("nan") if self._steps == 200 else 0.0
        return np.zeros(3, np.float32), reward, self._steps % 10 == 0, False, {}


class DictObs(gym.Env):
    """Dict observations of every supported kind, MultiDiscrete actions; reward for copying."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {
                "pos": spaces.Box(-1.0, 1.0, (2, 2), np.float32),
                "mode": spaces.Discrete(3),
                "flags": spaces.MultiBinary(2),
                "pair": spaces.Tuple((spaces.Discrete(2, start=1), spaces.MultiDiscrete([2, 3]))),
            }
        )
        self.action_space = spaces.MultiDiscrete([3, 2])
        self._state = None

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(int(self.np_random.integers(1 << 30)))
        self._state = self.observation_space.sample()
        return self._state, {}

    def step(self, action):
        reward = float(action[0] == self._state["mode"])
        self._state = self.observation_space.sample()
        return self._state, reward, False, False, {}


def register_all() -> dict[str, str]:
    ids = {
        "reach": "test/ReachTarget-v0",
        "countdown": "test/Countdown-v0",
        "nan": "test/NaNReward-v0",
        "dict": "test/DictObs-v0",
    }
    register_env(ids["reach"], ReachTarget, max_episode_steps=20, overwrite=True)
    register_env(ids["countdown"], Countdown, max_episode_steps=6, overwrite=True)
    register_env(ids["nan"], NaNReward, max_episode_steps=100, overwrite=True)
    register_env(ids["dict"], DictObs, max_episode_steps=16, overwrite=True)
    return ids
