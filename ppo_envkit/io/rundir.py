"""One run per run directory: an advisory lock, a refusal to mix runs, and clean-up after kills.

* :class:`RunDirLock` holds ``RUN_DIR/.lock`` (``fcntl.flock``) for as long as a run
  writes there, with the owner's PID in the file. The kernel drops the lock when its
  process dies, so a lock file left by a killed run is simply taken over (with a
  message); a live owner makes the second run stop with :class:`RunDirError`.
* :func:`existing_run` says what a directory already holds, so that a new run does not
  write its checkpoints between an older run's (and a later ``--resume`` does not
  silently continue the old one).
* :func:`recover` finishes what a kill interrupted: an agent directory caught between
  the two renames of a replacement (where ``renameat2`` is missing) comes back from its
  complete ``.old-*`` copy, and the ``.tmp-*`` (half-written), ``.del-*`` (half-deleted)
  and other ``.old-*`` directories that kills leave behind are removed. It runs under
  the lock, when no other process can be writing there.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from pathlib import Path

from ..errors import RunDirError, StorageError, quoted
from .checkpoint import (
    BEST_AGENT_DIR,
    CHECKPOINTS_DIR,
    FINAL_AGENT_DIR,
    META_FILE,
    MODEL_FILE,
    checkpoint_dirs,
)

LOCK_FILE = ".lock"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|old|del)-[0-9a-f]{8}$")


class RunDirLock:
    """An exclusive advisory lock on a run directory (released by :meth:`release` or at exit)."""

    def __init__(
        self,
        run_dir: str | Path,
        what: str = "run directory",
        holder: str = "training run",
        other: str = "--run-dir",
    ):
        """``what``, ``holder`` and ``other`` name the directory, who holds it and the option that
        picks another in the messages (a tuning study's directory is locked by the same rules)."""
        self.path = Path(run_dir) / LOCK_FILE
        self.previous_owner: int | None = None
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            message = f"cannot lock the {what} {quoted(run_dir)}: {exc.strerror}"
            raise StorageError(exc.errno, message) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(self._fd)
            os.close(self._fd)
            who = f"process {owner}" if owner else "another process"
            raise RunDirError(
                f"{what} {quoted(run_dir)} is in use by another {holder} ({who}); wait for it to "
                f"end, or choose another {other}"
            ) from None
        self.previous_owner = _read_pid(self._fd)
        if self.previous_owner == os.getpid():
            self.previous_owner = None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Unlock. The PID is cleared first: only a run that was killed leaves its PID behind."""
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock (forked copies of the fd keep it)
            self._fd = -1

    def __del__(self) -> None:
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def existing_run(run_dir: str | Path) -> str | None:
    """What ``run_dir`` holds of an earlier run (checkpoints, an agent, progress), or None."""
    run_dir = Path(run_dir)
    held: list[str] = []
    checkpoints = checkpoint_dirs(run_dir)
    if checkpoints:
        plural = "s" * (len(checkpoints) > 1)
        held.append(f"{len(checkpoints)} checkpoint{plural} up to {checkpoints[-1].name}")
    for name in (FINAL_AGENT_DIR, BEST_AGENT_DIR):
        if (run_dir / name).is_dir():
            held.append(f"{name}/")
    if (run_dir / "progress.csv").is_file() and (run_dir / "progress.csv").stat().st_size > 0:
        held.append("progress.csv")
    return ", ".join(held) if held else None


def recover(run_dir: str | Path) -> list[str]:
    """Restore agent directories a kill left between two renames, then remove leftovers of
    interrupted writes; returns what was done, for a message. Call it holding the lock."""
    done: list[str] = []
    for folder in (Path(run_dir), Path(run_dir) / CHECKPOINTS_DIR):
        if not folder.is_dir():
            continue
        leftovers = sorted(p for p in folder.iterdir() if _LEFTOVER.match(p.name))
        for path in leftovers:
            match = _LEFTOVER.match(path.name)
            assert match is not None
            target = folder / match["name"]
            if match["kind"] == "old" and not target.exists() and _complete(path):
                os.rename(path, target)  # the previous version, complete: the new one never arrived
                done.append(f"restored {target} from an interrupted replacement")
                continue
            _remove(path)
            done.append(f"removed {path.name}, left by an interrupted write")
    return done


def _complete(path: Path) -> bool:
    """Whether ``path`` is a whole agent directory (the previous version of one being replaced)."""
    return path.is_dir() and (path / META_FILE).is_file() and (path / MODEL_FILE).is_file()


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise


__all__ = ["LOCK_FILE", "RunDirLock", "existing_run", "recover"]
