"""Child processes end with their parent: none is left behind when the trainer is killed.

A worker that waits on a pipe sees no end-of-file when its parent dies if some process
(a sibling forked later, or the worker itself) still holds the parent's end. So every
worker this package starts calls :func:`die_with_parent` first: on Linux the kernel
sends it SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); elsewhere, and as a second
line, :func:`parent_alive` lets its wait loop notice that it was re-parented.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1
_parent_pid: int | None = None


def die_with_parent(parent_pid: int | None = None) -> None:
    """Ask the kernel to kill this process when its parent (``parent_pid``, by default the
    current one) dies; exit at once if the parent is already gone."""
    global _parent_pid
    _parent_pid = os.getppid() if parent_pid is None else parent_pid
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # parent_alive() still catches it
    if not parent_alive():  # the parent died before the request took effect
        os._exit(1)


#: The signals with which a terminal, a session or a scheduler ends a job. Sent to a whole
#: process group (Ctrl-C, Ctrl-\\, a closed terminal), they reach every worker too.
TERMINAL_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)


def ignore_terminal_signals() -> None:
    """For a worker process: ignore Ctrl-C, SIGTERM, SIGHUP and SIGQUIT, and leave shutdown to
    the parent (which saves, prints one line, and ends its workers with SIGKILL). A worker
    that handled them itself would print its own traceback after the parent's line."""
    for signum in TERMINAL_SIGNALS:
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (OSError, ValueError):  # not the main thread, or not a signal here
            pass


def parent_alive() -> bool:
    """Whether the parent recorded by :func:`die_with_parent` is still this process's parent."""
    return _parent_pid is None or os.getppid() == _parent_pid


def describe_exit(exitcode: int | None) -> str:
    """``killed by signal 9 (SIGKILL)`` or ``exit code 3``, for a process's exit code."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-exitcode} ({name})"
    return f"exit code {exitcode}"


__all__ = ["TERMINAL_SIGNALS", "describe_exit", "die_with_parent", "ignore_terminal_signals", "parent_alive"]
