"""Errors that training raises and the command line reports in one line.

A leaf module (no torch, no gymnasium), so that the CLI can name these classes
without importing the training code.
"""

from __future__ import annotations

import shlex
from pathlib import Path

#: Control characters (from a user's input echoed in a message) written as escapes.
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(32), 127)}


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped: always one line."""
    return text.translate(_ESCAPES)


def brief(exc: BaseException | str, limit: int | None = 200) -> str:
    """A (often multi-line) message, its whitespace collapsed, cut at ``limit`` characters."""
    return " ".join(str(exc).split())[:limit]


def quoted(path: str | Path) -> str:
    """``path`` as a shell would need it typed (``'dir with spaces ü'``): every message that names
    a path, and every command a message suggests, can be copied into a shell as it is."""
    return shlex.quote(str(path))


class ConfigError(ValueError):
    """A setting is invalid; the message is one readable line (whatever the input echoed)."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class NonFiniteError(RuntimeError):
    """An observation, reward or loss was NaN or infinite."""


class AgentFileError(ValueError):
    """An agent directory that is missing, corrupt, unsafe or incompatible; one line."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class EnvWorkerError(RuntimeError):
    """An environment worker process raised or died. The message is one line; ``trace`` holds
    the worker's traceback, when there is one."""

    def __init__(self, message: str, trace: str | None = None):
        super().__init__(message)
        self.trace = trace


class EnvironmentFailed(RuntimeError):
    """The environment raised (or its worker died) during training. ``checkpoint`` is the last
    good state, saved before this was raised (None without a run directory)."""

    def __init__(self, message: str, checkpoint: Path | None = None):
        super().__init__(message)
        self.checkpoint = checkpoint


class UserCodeExit(RuntimeError):
    """User code (an environment, an ``--env-module`` file) raised a ``BaseException`` that is
    neither an ``Exception`` nor Ctrl-C: ``SystemExit`` (``sys.exit()``), ``GeneratorExit``, its
    own ``BaseException`` subclass. Raised in its place, with its traceback, so that the paths
    that report an environment's errors (one line, last good checkpoint saved) report it too.
    The message is ``TYPE: MESSAGE`` of the original (``SystemExit: 4``)."""

    def __init__(self, original: BaseException | str):
        if isinstance(original, str):  # unpickled in the parent of a worker process
            message = original
        else:
            text = brief(original)
            message = f"{type(original).__name__}: {text}" if text else type(original).__name__
        super().__init__(message)


def foreign(exc: BaseException) -> bool:
    """Whether ``exc`` would end the process past every ``except Exception`` without being our
    own way out (Ctrl-C and the signals that stop training raise ``KeyboardInterrupt``)."""
    return not isinstance(exc, (Exception, KeyboardInterrupt))


def contained(exc: BaseException) -> BaseException:
    """``exc``, or for a :func:`foreign` one a :class:`UserCodeExit` carrying its traceback."""
    if not foreign(exc):
        return exc
    error = UserCodeExit(exc).with_traceback(exc.__traceback__)
    error.__cause__ = exc
    return error


class RewardError(ValueError):
    """An environment's ``step()`` returned a reward that is not one number (None, an array, a
    string); the message is the pre-check's finding (``the reward is str '1.0', not a number``)."""


class ObservationError(ValueError):
    """An observation that does not fit the environment's declared observation space."""


class ActionMaskError(ValueError):
    """An action mask of the wrong size or dtype, or one that allows no action; one line."""

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


class RankFailed(RuntimeError):
    """Another training process raised; ``kind`` is its exception's class name."""

    def __init__(self, rank: int, kind: str, text: str, trace: str = ""):
        # One line; the other process's traceback is in ``trace`` (the CLI shows it with --debug).
        what = text if kind == "exit" else f"failed with {kind}: {text}"
        super().__init__(f"training process {rank} {what}")
        self.rank, self.kind, self.text, self.trace = rank, kind, text, trace


class ViewerError(RuntimeError):
    """A replay or a game against the agent that cannot start; the message says what to do
    instead. (Here rather than in the viewer, so that the command line reports it in one line
    without importing pygame.)"""


class RunDirError(RuntimeError):
    """A run directory that is in use by another run, or that holds another run."""


class StorageError(OSError):
    """Writing or reading a file failed (disk full, read-only, permissions); one line."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; a checkpoint was saved first (``checkpoint`` attribute)."""

    def __init__(self, checkpoint: Path | None):
        saved = quoted(checkpoint) if checkpoint else None
        super().__init__(f"training interrupted; checkpoint saved to {saved}")
        self.checkpoint = checkpoint


__all__ = [
    "ActionMaskError",
    "AgentFileError",
    "ConfigError",
    "EnvWorkerError",
    "EnvironmentFailed",
    "NonFiniteError",
    "ObservationError",
    "RankFailed",
    "RewardError",
    "RunDirError",
    "StorageError",
    "TrainingInterrupted",
    "UserCodeExit",
    "contained",
    "foreign",
    "quoted",
]
