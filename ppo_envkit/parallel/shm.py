"""Training processes on one machine, exchanging tensors through shared memory.

``run.processes: 2`` trains with two processes that split the environment copies
and every minibatch, like two ``torchrun`` ranks (see :mod:`ppo_envkit.parallel.torchrun`).
What differs is the transport: gloo costs about half a millisecond per collective
on a small VM, and data-parallel PPO needs two collectives per environment step
(normalization statistics) and two per gradient step. Here a collective is a copy
into a shared-memory slot and a spin on a shared counter: a few microseconds.

Rank 0 is the calling process; the other ranks are forked from it at the start of
training (Linux only: fork keeps the user's registered environments and loaded
modules without re-importing anything); :mod:`ppo_envkit.parallel.ranks` manages
their lifetime. A rank that fails puts its traceback in shared memory, and the other
ranks raise it instead of waiting; a rank that dies is noticed by the others'
liveness checks.

:class:`LocalGroup` is the transport (numpy arrays in shared memory);
:class:`SharedMemoryCollectives` puts the :class:`~ppo_envkit.parallel.collectives.Collectives`
interface on it.
"""

from __future__ import annotations

import mmap
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import RankFailed
from .collectives import Collectives, RankState, ReduceOp
from .lifeline import describe_exit, die_with_parent, ignore_terminal_signals, parent_alive
from .mailbox import Mailboxes

_MESSAGE_BYTES = 16384
# Waiting for another rank: spin briefly (ranks in step arrive within microseconds), then
# yield the core at every check (the other rank may need it: more processes than cores),
# then sleep between checks (it is busy for longer: logging, saving, evaluating), and
# after a second or so doze (ranks waiting between two training calls of rank 0).
_SPINS = 30
_YIELDS = 2000
_NAPS = 20000
_NAP_S, _DOZE_S = 50e-6, 2e-3
_CHECK_EVERY = 1000  # waits between failure and liveness checks (every wait when dozing)


class LocalGroup:
    """``size`` processes, forked by :meth:`spawn`, doing collectives through shared memory.

    Every collective is :meth:`exchange`: each rank writes its array into its slot,
    then waits until every rank has written. Slots alternate between two banks, so a
    rank that runs ahead into the next collective never overwrites data another rank
    may still be reading, and one barrier per collective suffices. Reductions add the
    slots in rank order, so that every rank computes bit-identical results.
    """

    def __init__(self, size: int, capacity_bytes: int = 1 << 20):
        if size < 1:
            raise ValueError("a process group needs at least one process")
        if size > 1 and not hasattr(os, "fork"):
            raise RuntimeError("run.processes > 1 needs os.fork (Linux, macOS); use torchrun instead")
        self.size, self.rank = size, 0
        self.capacity = int(capacity_bytes)
        ctrl_bytes = 8 * (5 * size + 4)
        self._mm = mmap.mmap(-1, ctrl_bytes + _MESSAGE_BYTES + 2 * size * self.capacity)
        buf = memoryview(self._mm)
        self._arrive = np.frombuffer(buf, np.int64, size, 0)
        # [0]: failed flag, [1]: failed rank, [2]: message length
        self._failure = np.frombuffer(buf, np.int64, 3, 8 * size)
        # what each rank's collective carries, (bytes, dtype code) per bank, checked to match
        self._shape = np.frombuffer(buf, np.int64, 4 * size, 8 * (size + 3)).reshape(2, size, 2)
        self._message = np.frombuffer(buf, np.uint8, _MESSAGE_BYTES, ctrl_bytes)
        self._slots = np.frombuffer(buf, np.uint8, 2 * size * self.capacity, ctrl_bytes + _MESSAGE_BYTES)
        self._slots = self._slots.reshape(2, size, self.capacity)
        self._calls = 0
        self._children: dict[int, int] = {}  # rank -> pid
        self._parent = os.getpid()
        self.mailboxes = Mailboxes(size) if size > 1 else None  # each rank's state, for checkpoints

    # ------------------------------------------------------------------ processes

    def spawn(self, target: Callable[[int], None]) -> None:
        """Fork ranks 1..size-1; each runs ``target(rank)`` and exits (never returns here)."""
        sys.stdout.flush()
        sys.stderr.flush()
        for rank in range(1, self.size):
            pid = os.fork()
            if pid == 0:
                self._run_child(rank, target)
            self._children[rank] = pid

    def _run_child(self, rank: int, target: Callable[[int], None]) -> None:
        die_with_parent(self._parent)  # even while it steps its environments for a long time
        self.rank = rank
        self._children = {}
        ignore_terminal_signals()  # Ctrl-C, SIGTERM, SIGHUP are rank 0's to handle
        code = 0
        try:
            target(rank)
        except RankFailed:
            code = 1  # another rank failed first; its message is already posted
        except BaseException as exc:  # everything must reach rank 0
            self.fail(type(exc).__name__, str(exc), traceback.format_exc())
            code = 1
        finally:
            os._exit(code)  # no atexit handlers or destructors of the parent's objects

    @property
    def owned_here(self) -> bool:
        """Whether this is rank 0's process (not a copy of the group in a forked process)."""
        return self.rank == 0 and os.getpid() == self._parent

    @property
    def running(self) -> bool:
        """Whether any forked rank has not been reaped yet (rank 0)."""
        return bool(self._children)

    @property
    def alive(self) -> bool:
        """Whether every forked rank is still running and no rank has failed (rank 0)."""
        self._reap()
        return not self._failure[0] and len(self._children) == self.size - 1

    def _reap(self) -> dict[int, int]:
        """Reap the forked ranks that have ended: ``{rank: wait status}`` (rank 0)."""
        ended = {}
        for rank, pid in list(self._children.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ended[rank] = status
                del self._children[rank]
        return ended

    def peak_rss_mb(self) -> float:
        """Sum of the forked ranks' peak resident memory so far (Linux; 0 elsewhere)."""
        total = 0.0
        for pid in self._children.values():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
        return total

    def fail(self, kind: str, text: str, trace: str = "") -> None:
        """Tell every rank that this one failed (the first failure is the one reported)."""
        if self._failure[0]:
            return
        data = f"{kind}\n{text}\0{trace}".encode(errors="replace")[:_MESSAGE_BYTES]
        self._message[: len(data)] = np.frombuffer(data, np.uint8)
        self._failure[1:] = (self.rank, len(data))
        self._failure[0] = 1

    def _raise_failure(self) -> None:
        n = int(self._failure[2])
        kind, _, rest = self._message[:n].tobytes().decode(errors="replace").partition("\n")
        text, _, trace = rest.partition("\0")
        raise RankFailed(int(self._failure[1]), kind, text, trace)

    def _check_alive(self) -> None:
        if self.rank == 0:
            for rank, status in self._reap().items():
                if not self._failure[0]:
                    raise RankFailed(rank, "exit", f"died ({_describe_status(status)})")
        elif not parent_alive():
            os._exit(1)  # rank 0 is gone

    def __enter__(self) -> LocalGroup:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        """Wait for the other ranks (stop them at once when the block raised)."""
        self.close(timeout=0.0 if exc_type is not None else 10.0)

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the other ranks to end (rank 0); stop them if training ended early."""
        if self.rank != 0:
            return
        if self._children and not self._failure[0]:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._reap()
                if not self._children:
                    break
                time.sleep(0.001)
        if self._children:
            self.fail("stop", "rank 0 stopped training")
            for pid in self._children.values():
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            self._children = {}

    # ------------------------------------------------------------------ collectives

    def _barrier(self) -> None:
        self._calls += 1
        calls = self._calls
        arrive = self._arrive
        arrive[self.rank] = calls
        waits = 0
        while arrive.min() < calls:
            waits += 1
            if waits > _SPINS:
                if waits < _YIELDS:
                    os.sched_yield()  # time.sleep(0) is no yield: it sleeps ~75 us (timer slack)
                else:
                    time.sleep(_NAP_S if waits < _NAPS else _DOZE_S)
                if waits % _CHECK_EVERY == 0 or waits > _NAPS:
                    if self._failure[0]:
                        self._raise_failure()
                    self._check_alive()
        if self._failure[0]:
            self._raise_failure()

    def exchange(self, array: np.ndarray) -> list[np.ndarray]:
        """Every rank's ``array`` (same shape and dtype on all ranks), in rank order.

        The returned arrays are views into shared memory, valid until the collective
        after next: use them (or copy them) before that.
        """
        array = np.ascontiguousarray(array)
        raw = array.reshape(-1).view(np.uint8)
        if raw.nbytes > self.capacity:
            raise ValueError(f"{raw.nbytes} bytes exceed the group's slot of {self.capacity} bytes")
        bank = self._slots[self._calls & 1]
        shape = self._shape[self._calls & 1]
        bank[self.rank, : raw.nbytes] = raw
        shape[self.rank] = (raw.nbytes, ord(array.dtype.char))
        self._barrier()
        if (shape != shape[self.rank]).any():
            # A rank called a different collective: fail loudly rather than mix up data.
            self.fail("RuntimeError", f"collectives out of step across ranks: {shape.tolist()}")
            self._raise_failure()
        return [bank[r, : raw.nbytes].view(array.dtype).reshape(array.shape) for r in range(self.size)]

    def reduce(self, array: np.ndarray, op: str = "sum", out: np.ndarray | None = None) -> np.ndarray:
        """Element-wise ``sum``, ``min`` or ``max`` over ranks, identical on every rank: a new
        array, or ``out`` (contiguous; it may be ``array`` itself: each piece is sent first)."""
        array = np.ascontiguousarray(array)
        flat = array.reshape(-1)
        out = np.empty_like(flat) if out is None else out.reshape(-1)
        step = max(1, self.capacity // max(1, flat.itemsize))
        combine = {"sum": np.add, "min": np.minimum, "max": np.maximum}[op]
        for start in range(0, max(1, flat.size), step):
            parts = self.exchange(flat[start : start + step])
            chunk = out[start : start + step]
            chunk[...] = parts[0]
            for part in parts[1:]:
                combine(chunk, part, out=chunk)
        return out.reshape(array.shape)

    def gather_rows(self, array: np.ndarray) -> np.ndarray:
        """Every rank's ``[n, ...]`` rows concatenated in rank order."""
        return np.concatenate(self.exchange(array), axis=0)

    def broadcast(self, array: np.ndarray, src: int = 0) -> np.ndarray:
        """Rank ``src``'s ``array`` (a new array)."""
        flat = np.ascontiguousarray(array).reshape(-1)
        out = np.empty_like(flat)
        step = max(1, self.capacity // max(1, flat.itemsize))
        for start in range(0, max(1, flat.size), step):
            out[start : start + step] = self.exchange(flat[start : start + step])[src]
        return out.reshape(np.shape(array))


class SharedMemoryCollectives(Collectives):
    """:class:`Collectives` of one rank of a :class:`LocalGroup` (through shared memory)."""

    def __init__(self, group: LocalGroup):
        self.group = group
        self.size = group.size

    @property
    def rank(self) -> int:  # type: ignore[override]
        return self.group.rank  # set in each forked process

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        if tensor.device.type == "cpu" and tensor.is_contiguous():  # in place, no copies
            array = tensor.detach().numpy()
            self.group.reduce(array, op, out=array)
            return tensor
        with torch.no_grad():
            return tensor.copy_(_as_tensor(self.group.reduce(_as_numpy(tensor), op), tensor))

    def broadcast(self, tensor: torch.Tensor) -> None:
        with torch.no_grad():
            tensor.copy_(_as_tensor(self.group.broadcast(_as_numpy(tensor)), tensor))

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        return _as_tensor(self.group.gather_rows(_as_numpy(tensor)), tensor)

    def post_state(self, boundary: int, state: Callable[[], RankState]) -> None:
        mailboxes = self.group.mailboxes
        if mailboxes is not None and self.rank != 0:
            meta, tensors = state()
            mailboxes.post(self.rank, boundary, meta, tensors)

    def other_states(self, boundary: int) -> dict[int, RankState]:
        """Each forked rank's state at ``boundary``, from its mailbox (even if the rank has died
        since); a rank whose state never came is left out."""
        mailboxes, group, found = self.group.mailboxes, self.group, {}
        if mailboxes is None or self.rank != 0:
            return found
        for rank in range(1, self.size):
            state = mailboxes.read(rank, boundary, lambda: group.alive)
            if state is not None:
                found[rank] = state
        return found


def _as_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _as_tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    array = np.asarray(array)  # (np.ascontiguousarray would make a 0-d array 1-d)
    return torch.from_numpy(array if array.flags.c_contiguous else array.copy()).to(like.device)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return describe_exit(-os.WTERMSIG(status))
    return describe_exit(os.WEXITSTATUS(status))
