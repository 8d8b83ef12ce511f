"""Environments whose observations hold text, registered through the public API as a user would.

``MissionLike`` is a plain ``Space`` of strings whose repr shows a function, as MiniGrid's
``MissionSpace`` is (it is not a ``gymnasium.spaces.Text``).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env
from ppo_envkit.environments.registry import unregister_env

COLORS = ("red", "green", "blue", "yellow")


def _press(color: str) -> str:
    return f"press the {color} button"


class MissionLike(spaces.Space):
    """Strings made by a function (MiniGrid's MissionSpace declares no more than that)."""

    def __init__(self, make=None):
        make = make or _press
        self.make = make
        super().__init__(dtype=str)

    def sample(self, mask=None, probability=None) -> str:
        return self.make(COLORS[int(self.np_random.integers(len(COLORS)))])

    def contains(self, x) -> bool:
        return isinstance(x, str)

    def __eq__(self, other) -> bool:  # as MissionSpace's (vector environments compare spaces)
        return isinstance(other, MissionLike) and other.make is self.make

    __hash__ = spaces.Space.__hash__

    def __repr__(self) -> str:
        return f"MissionLike({self.make})"  # '<function <lambda> at 0x...>' inside, as MiniGrid's


class PressButton(gym.Env):
    """One step: the mission names one of four buttons; pressing it pays 1, any other 0.

    Without reading the text a policy scores 0.25; reading it, 1.0."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {"noise": spaces.Box(-1.0, 1.0, (2,), np.float32), "mission": MissionLike()}
        )
        self.action_space = spaces.Discrete(len(COLORS))
        self._color = 0

    def _obs(self):
        noise = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"noise": noise, "mission": f"press the {COLORS[self._color]} button"}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._color = int(self.np_random.integers(len(COLORS)))
        return self._obs(), {}

    def step(self, action):
        return self._obs(), float(int(action) == self._color), True, False, {}


class PlainText(gym.Env):
    """A gymnasium Text observation at the top level (actions: the length parity)."""

    def __init__(self):
        self.observation_space = spaces.Text(8, min_length=1, charset="abc ")
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "ab ca", {}

    def step(self, action):
        return "abc b", 0.0, True, False, {}


class UnusableEntry(gym.Env):
    """A Dict with an entry no encoder reads (a Sequence)."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {"pos": spaces.Box(-1.0, 1.0, (2,), np.float32), "trail": spaces.Sequence(spaces.Discrete(3))}
        )
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"pos": np.zeros(2, np.float32), "trail": (1, 2)}, {}

    def step(self, action):
        return {"pos": np.zeros(2, np.float32), "trail": (1,)}, 0.0, True, False, {}


class PressBoth(gym.Env):
    """A constant observation; the episode ends (return 1) once both actions were taken.

    A deterministic policy takes one action forever (0 at the time limit); a sampling one
    ends nearly every episode: stochastic play is clearly better."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._seen: set[int] = set()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._seen = set()
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self._seen.add(int(action))
        done = len(self._seen) == 2
        return np.zeros(1, np.float32), float(done), done, False, {}


IDS = {
    "press": "text/PressButton-v0",
    "plain": "text/PlainText-v0",
    "unusable": "text/UnusableEntry-v0",
    "both": "text/PressBoth-v0",
}


def register_all() -> dict[str, str]:
    register_env(IDS["press"], PressButton, max_episode_steps=1, overwrite=True)
    register_env(IDS["plain"], PlainText, max_episode_steps=1, overwrite=True)
    register_env(IDS["unusable"], UnusableEntry, max_episode_steps=1, overwrite=True)
    register_env(IDS["both"], PressBoth, max_episode_steps=12, overwrite=True)
    return dict(IDS)


def unregister_all() -> None:
    for env_id in IDS.values():
        unregister_env(env_id)
