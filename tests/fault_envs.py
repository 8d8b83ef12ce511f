"""Environments that fail on purpose, for the fault-injection tests.

Each takes ``fail_at`` (the step, counted over the copy's lifetime, at which it fails) and
is registered at import, so that forked and spawned workers know them too (they import
this module by name).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MAIN_PID = os.getpid()


class _Counting(gym.Env):
    """A 4-value observation, two actions, 20-step episodes; counts its steps."""

    observation_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, fail_at: int = 50):
        self.fail_at = fail_at
        self.steps = 0
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.uniform(-1, 1, 4).astype(np.float32), {}

    def step(self, action):
        self.steps += 1
        self.t += 1
        if self.steps >= self.fail_at:
            self.fail()
        obs = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        return obs, float(action), self.t >= 20, False, {}

    def fail(self) -> None:
        raise NotImplementedError


class StepRaises(_Counting):
    def fail(self) -> None:
        value = 100
        raise ValueError(f"the valve is at {value}% (injected fault)")  # a '%' in the failing line


class ShapeChanges(_Counting):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.steps >= self.fail_at:
            obs = np.zeros(5, np.float32)
        return obs, reward, terminated, truncated, info

    def fail(self) -> None:
        pass


class RewardNaN(_Counting):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, (float("nan") if self.steps >= self.fail_at else reward), terminated, truncated, info

    def fail(self) -> None:
        pass


class KillsItsWorker(_Counting):
    """Dies by SIGKILL at ``fail_at``, in a worker process only (the trainer's copies go on)."""

    def fail(self) -> None:
        if os.getpid() != MAIN_PID:
            os.kill(os.getpid(), signal.SIGKILL)


class Hangs(_Counting):
    def fail(self) -> None:
        time.sleep(3600)


class BadReward(_Counting):
    """From ``fail_at`` on, returns the reward ``kind`` says: ``none``, ``array``, ``string``."""

    def __init__(self, fail_at: int = 50, kind: str = "none"):
        super().__init__(fail_at)
        self.kind = kind

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.steps >= self.fail_at:
            reward = {"none": None, "array": np.array([reward, 1.0]), "string": "1.0"}[self.kind]
        return obs, reward, terminated, truncated, info

    def fail(self) -> None:
        pass


class DiesOnce(_Counting):
    """SIGKILLs its own process at ``fail_at`` (as the OOM killer would), the first time only:
    ``marker`` (a file path) records that it happened."""

    def __init__(self, fail_at: int = 50, marker: str = ""):
        super().__init__(fail_at)
        self.marker = marker

    def fail(self) -> None:
        if self.marker and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


class UserBaseException(BaseException):
    """A user's own exception class that is not an Exception."""


def _exit(how: str) -> None:
    if how == "sys.exit":
        sys.exit(4)
    if how == "GeneratorExit":
        raise GeneratorExit("the generator is closed")
    raise UserBaseException("the user's own BaseException")


class Exits(_Counting):
    """Ends the process the way ``how`` says (``sys.exit``, ``GeneratorExit``, a user's own
    ``BaseException``) from ``call`` (``init``, ``reset``, ``step``, ``render``, ``close``); in
    ``step`` at ``fail_at``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, fail_at: int = 50, how: str = "sys.exit", call: str = "step", render_mode=None):
        super().__init__(fail_at)
        self.how, self.call, self.render_mode = how, call, render_mode
        if call == "init":
            _exit(how)

    def reset(self, *, seed=None, options=None):
        if self.call == "reset":
            _exit(self.how)
        return super().reset(seed=seed, options=options)

    def fail(self) -> None:
        if self.call == "step":
            _exit(self.how)

    def render(self):
        if self.call == "render":
            _exit(self.how)
        return np.zeros((8, 8, 3), np.uint8)

    def close(self):
        if self.call == "close":
            _exit(self.how)


IDS = {
    "raises": "faults/StepRaises-v0",
    "shape": "faults/ShapeChanges-v0",
    "nan": "faults/RewardNaN-v0",
    "kill": "faults/KillsItsWorker-v0",
    "hang": "faults/Hangs-v0",
    "exits": "faults/Exits-v0",
    "reward": "faults/BadReward-v0",
    "dies_once": "faults/DiesOnce-v0",
}
_CLASSES = {
    "raises": StepRaises,
    "shape": ShapeChanges,
    "nan": RewardNaN,
    "kill": KillsItsWorker,
    "hang": Hangs,
    "exits": Exits,
    "reward": BadReward,
    "dies_once": DiesOnce,
}


def register_all() -> dict[str, str]:
    """Register the faulty environments (idempotent); the ``fault_env_ids`` fixture removes them
    again, so that no other test (``envs check`` of every environment, say) meets them."""
    for key, cls in _CLASSES.items():
        if IDS[key] not in gym.registry:
            gym.register(IDS[key], entry_point=cls)
    return IDS


register_all()  # at import too: forked and spawned workers import this module by name
