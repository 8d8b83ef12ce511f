"""One readable line for an exception that came out of a user's environment.

The line names the environment, what it was doing (building, resetting, stepping at a
training step), the exception, and the innermost line of the user's own code that the
traceback passes through (never a line of Python, Gymnasium or ppo-envkit), e.g.::

    environment Hover2D-v0: raised ZeroDivisionError: division by zero in step() at
    training step 4,096 (envs/hover.py:63 in step)

An exception from a worker process arrives as text (:class:`EnvWorkerError`'s ``trace``);
its frames are parsed from it.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import EnvironmentFailed, EnvWorkerError, RewardError, UserCodeExit, brief, contained, foreign
from .checks import reward_problems
from .discovery import user_location


class _Anything:
    def __contains__(self, _item: object) -> bool:
        return True


_ANYTHING = _Anything()

#: Reward types that need no look (checked by identity of the type: a set lookup per step).
_NUMBERS = frozenset({float, int, np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8})

_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)', re.MULTILINE)


def location(exc: BaseException) -> str | None:
    """Where in the user's code ``exc`` was raised (``file:line in function``), if anywhere."""
    if isinstance(exc, EnvWorkerError) and exc.trace:
        frames = [traceback.FrameSummary(f, int(n), name) for f, n, name in _FRAME.findall(exc.trace)]
        return user_location(frames)
    return user_location(exc.__traceback__)


def describe(exc: BaseException, env_id: str, doing: str) -> str:
    """``environment ENV: raised TYPE: MESSAGE DOING (file:line in function)``, one line."""
    if isinstance(exc, EnvWorkerError):
        what = str(exc)
    elif isinstance(exc, UserCodeExit):  # sys.exit() and the like: named as the user wrote them
        what = f"raised {exc}"
    elif isinstance(exc, RewardError):  # not raised by the environment: returned by it
        what = str(exc)
    else:
        message = str(exc).strip().splitlines()
        what = f"raised {type(exc).__name__}" + (f": {message[0]}" if message else "")
    where = location(exc)
    return f"environment {env_id}: {what} {doing}" + (f" ({where})" if where else "")


def check_reward(reward: Any) -> None:
    """Raise :class:`RewardError` where the pre-check would find an error in the reward's type or
    shape (None, an array, a string such as ``"1.0"``): the same rule late in training as
    before it. Non-finite rewards are left to the collector, which names the copies."""
    for problem in reward_problems(reward):
        if problem.severity == "error" and problem.code == "reward-type":
            raise RewardError(f"{brief(problem.what)} ({problem.fix})")


class ContainExits(gym.Wrapper):
    """The boundary around every call into the user's environment.

    Turns what would end the process from inside it (``sys.exit()``, ``GeneratorExit``, a
    user's own ``BaseException``) into :class:`UserCodeExit`, an ``Exception`` that the callers
    report like any error of the environment (in one line, the last good checkpoint saved);
    Ctrl-C passes through. And it checks the type of each reward ``step()`` returns as strictly
    as the pre-check does (:func:`check_reward`), before the vector environment turns a None
    into NaN and a string into a number. In the hot loop this costs one call and a set lookup:
    a ``try`` costs nothing until something is raised. ``check_rewards=False`` leaves rewards
    to the caller (the environment checker, which reports them as findings)."""

    def __init__(self, env: gym.Env, check_rewards: bool = True):
        super().__init__(env)
        self._numbers = _NUMBERS if check_rewards else _ANYTHING

    def step(self, action: Any) -> Any:
        try:
            result = self.env.step(action)
        except BaseException as exc:
            if foreign(exc):
                raise contained(exc) from exc
            raise
        if result[1].__class__ not in self._numbers:
            check_reward(result[1])
        return result

    def reset(self, **kwargs: Any) -> Any:
        try:
            return self.env.reset(**kwargs)
        except BaseException as exc:
            if foreign(exc):
                raise contained(exc) from exc
            raise

    def render(self) -> Any:
        try:
            return self.env.render()
        except BaseException as exc:
            if foreign(exc):  # no caller describes render() and close(): the line is made here
                raise EnvironmentFailed(describe(contained(exc), self._env_id(), "in render()")) from exc
            raise

    def close(self) -> None:
        try:
            self.env.close()
        except BaseException as exc:
            if foreign(exc):
                raise EnvironmentFailed(describe(contained(exc), self._env_id(), "in close()")) from exc
            raise

    def _env_id(self) -> str:
        spec = self.env.spec
        return spec.id if spec is not None else type(self.env.unwrapped).__name__


__all__ = ["ContainExits", "check_reward", "describe", "location"]
