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

from ..errors import EnvWorkerError
from .discovery import user_location

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
    else:
        message = str(exc).strip().splitlines()
        what = f"raised {type(exc).__name__}" + (f": {message[0]}" if message else "")
    where = location(exc)
    return f"environment {env_id}: {what} {doing}" + (f" ({where})" if where else "")


__all__ = ["describe", "location"]
