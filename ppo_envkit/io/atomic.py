"""Directories written and deleted so that a kill at any moment leaves a whole version.

:func:`atomic_write_dir` writes every file into a temporary sibling directory, fsyncs it,
and swaps it with the target in one step (Linux: ``renameat2(RENAME_EXCHANGE)``; elsewhere
two renames, and :func:`~ppo_envkit.io.rundir.recover` restores the previous version if a
kill falls between them). :func:`discard_dir` renames a directory away before deleting
it. A failure to write (disk full, read-only) is one line: :class:`StorageError`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from ..errors import StorageError, brief, quoted


def _to_saveable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def atomic_write_dir(
    target: Path, files: dict[str, bytes | tuple[dict[str, torch.Tensor], dict[str, str]]]
) -> Path:
    """Write ``files`` into ``target`` atomically (temporary sibling, then one exchange).

    Values are raw bytes, or ``(tensors, metadata)`` for a safetensors file. A failure to
    write (disk full, read-only, permissions) raises :class:`StorageError`, one line.
    """
    target = Path(target)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        for name, content in files.items():
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                tensors, meta = content
                save_file(_to_saveable(tensors), str(tmp / name), metadata=meta)
            with open(tmp / name, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists() and _exchange(tmp, target):
            discard_dir(tmp)  # now the previous version
            return target
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise StorageError(_errno(exc), f"could not save {quoted(target)}: {_reason(exc)}") from None
        raise
    return target


def discard_dir(path: Path) -> None:
    """Delete a directory so that no kill leaves part of it under its name: rename (to
    ``.NAME.del-*``, which :func:`~ppo_envkit.io.rundir.recover` removes), then delete."""
    doomed = path.parent / f".{path.name}.del-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux ``renameat2``); False where that is unavailable."""
    global _renameat2
    if not sys.platform.startswith("linux"):
        return False
    if _renameat2 is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _renameat2 = libc.renameat2
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    result = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # kernel or file system without it: two renames instead
    raise OSError(code, os.strerror(code), str(b))


def _errno(exc: BaseException) -> int:
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    text = str(exc)
    if "StorageFull" in text or "No space left" in text:
        return errno.ENOSPC
    if "FileTooLarge" in text or "File too large" in text:
        return errno.EFBIG
    if "ReadOnly" in text or "Read-only" in text:
        return errno.EROFS
    if "PermissionDenied" in text:
        return errno.EACCES
    return errno.EIO


def _reason(exc: BaseException) -> str:
    """``No space left on device`` rather than safetensors' 34-line ``IoError(Os { ... })``."""
    code = _errno(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return os.strerror(code) if code != errno.EIO else brief(exc)


__all__ = ["atomic_write_dir", "discard_dir"]
