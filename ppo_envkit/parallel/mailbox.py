"""Each forked rank's resumable state, kept where rank 0 can read it at any moment.

A checkpoint must hold every rank's episodes (the actions of each copy's current episode,
reward-scaling returns) and random stream, or a resumed ``run.processes`` run is not the
unbroken one. Rank 0 writes checkpoints on its own schedule, and also when training fails
(a NaN, Ctrl-C, a dead rank), when no collective can be trusted. So every other rank
posts its state at each iteration boundary into its mailbox in shared memory, and rank 0
reads the boundary it saves, without a collective, even from a rank that has died since.

Two slots per rank, by the parity of the boundary: the state at boundary ``i`` stays
readable while the rank writes boundary ``i + 1`` (rank 0 saves boundary ``i`` when
iteration ``i`` fails, and the rank may be done with ``i`` by then).
"""

from __future__ import annotations

import json
import mmap
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

#: Bytes of one slot (virtual memory: pages are backed only when written).
SLOT_BYTES = 32 << 20
_HEADER = 2  # int64: boundary (-1 while writing), payload bytes (-1: the state did not fit)


class Mailboxes:
    """Slots for ranks ``1..size-1``, created by rank 0 before it forks them."""

    def __init__(self, size: int, slot_bytes: int = SLOT_BYTES):
        self.size, self.slot_bytes = size, slot_bytes
        self._mm = mmap.mmap(-1, max(1, (size - 1) * 2 * slot_bytes))
        for rank in range(1, size):
            for boundary in (0, 1):
                self._slot(rank, boundary)[0][0] = -1  # empty

    def _slot(self, rank: int, boundary: int) -> tuple[np.ndarray, memoryview]:
        offset = ((rank - 1) * 2 + boundary % 2) * self.slot_bytes
        view = memoryview(self._mm)[offset : offset + self.slot_bytes]
        return np.frombuffer(view, np.int64, _HEADER), view[8 * _HEADER :]

    def post(self, rank: int, boundary: int, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> bool:
        """Rank ``rank``'s state at iteration boundary ``boundary``; False if it does not fit."""
        meta_bytes = json.dumps(meta).encode()
        payload = len(meta_bytes).to_bytes(8, "little") + meta_bytes + save_tensors(tensors)
        header, body = self._slot(rank, boundary)
        header[0] = -1  # being written: a reader never sees half a state
        fits = len(payload) <= len(body)
        if fits:
            body[: len(payload)] = payload
        header[1] = len(payload) if fits else -1  # posted either way: no reader waits for it
        header[0] = boundary
        return fits

    def read(
        self, rank: int, boundary: int, alive: Callable[[], bool], timeout_s: float = 30.0
    ) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """Rank ``rank``'s state at ``boundary``, waiting for it while the rank is ``alive()``;
        None if it never comes (the rank died first, or its state did not fit)."""
        header, body = self._slot(rank, boundary)
        deadline = time.monotonic() + timeout_s
        while header[0] != boundary:
            if not alive() or time.monotonic() > deadline:
                return None
            time.sleep(0.0005)
        if header[1] < 0:
            return None
        payload = bytes(body[: int(header[1])])
        n = int.from_bytes(payload[:8], "little")
        return json.loads(payload[8 : 8 + n]), load_tensors(payload[8 + n :])


__all__ = ["SLOT_BYTES", "Mailboxes"]
