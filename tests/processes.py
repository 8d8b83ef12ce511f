"""Processes as the fault and multi-process tests see them (Linux ``/proc``)."""

from __future__ import annotations

import time
from pathlib import Path


def children(pid: int | str = "self") -> set[int]:
    """Process ids of ``pid``'s children (every thread's), running or not yet reaped."""
    found: set[int] = set()
    try:
        paths = list(Path(f"/proc/{pid}/task").glob("*/children"))
    except OSError:  # the process ended (and was reaped) before we looked
        return found
    for path in paths:
        try:
            found.update(int(child) for child in path.read_text().split())
        except OSError:  # the process or thread ended meanwhile
            continue
    return found


def descendants(pid: int) -> set[int]:
    """``pid``'s children, their children, and so on."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        kids = children(todo.pop()) - found
        todo.extend(kids)
        found |= kids
    return found


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pids: list[int] | set[int], timeout: float = 5.0) -> list[int]:
    """Wait up to ``timeout`` seconds for ``pids`` to end; those still running."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(p for p in pids if alive(p))
