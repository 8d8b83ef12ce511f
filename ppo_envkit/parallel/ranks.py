"""The lifetime of ``run.processes`` ranks: forked by the first training call, waiting between calls.

Rank 0 is the calling process. The first training call forks ranks ``1..size-1``;
each builds its own environment copies and trains in step with rank 0 through
shared-memory collectives (:mod:`.shm`). Between training calls they wait (dozing,
about 1% of a core) for rank 0's next command, so that a run trained in pieces
(several ``learn()`` calls, evaluations in between) goes on exactly as one call
would: their environments keep their episodes and random streams. At each later
call rank 0 sends its counters, weights, statistics and optimizer state, which keeps
the ranks in step if the user changed anything in between.

The ranks end with :meth:`ForkedRanks.end`, when the owning agent is garbage
collected or the program exits (``weakref.finalize``), when rank 0 dies (they notice
within milliseconds), or at once when training raises.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from .collectives import Collectives
from .shm import LocalGroup, RankFailed, SharedMemoryCollectives

#: Rank 0's commands to ranks waiting between training calls.
TRAIN, EXIT = 1, 0
#: Smallest shared-memory slot; slots also fit every gradient and a rollout's statistics rows.
_MIN_SLOT_BYTES = 1 << 16
#: Seconds rank 0 waits for the ranks to exit after EXIT, before it stops them.
_EXIT_TIMEOUT_S = 10.0


def slot_bytes(n_params: int, stats_rows: int) -> int:
    """Shared-memory slot size: room for every gradient (float32, plus a few scalars) and
    the observation-statistics rows, with a factor of two to spare."""
    return max(_MIN_SLOT_BYTES, 8 * (n_params + 64), 8 * stats_rows) * 2


class ForkedRanks:
    """Ranks ``1..size-1`` of one training configuration, forked from this process."""

    def __init__(self, owner: object, size: int, capacity_bytes: int, settings: dict[str, Any]):
        self.group = LocalGroup(size, capacity_bytes)
        self.collectives = SharedMemoryCollectives(self.group)
        self.settings = settings
        self.started = False
        # End the ranks with the owner (or at exit) unless ended explicitly first.
        self._finalizer = weakref.finalize(owner, _end_ranks, self.group)

    def usable_for(self, settings: dict[str, Any]) -> bool:
        """Whether these ranks can train with ``settings`` (the same, and all alive)."""
        return settings == self.settings and (not self.started or self.group.alive)

    def start(self, rank_main: Callable[[SharedMemoryCollectives], None]) -> None:
        """Fork the other ranks; each runs ``rank_main(its collectives)`` and exits."""
        self.started = True
        self.group.spawn(lambda _rank: rank_main(self.collectives))

    def end(self, failed: bool = False) -> None:
        """Tell the waiting ranks to exit (stop them at once when training failed)."""
        self._finalizer.detach()
        _end_ranks(self.group, failed)

    def peak_rss_mb(self) -> float:
        return self.group.peak_rss_mb()


class RankTrainer(Protocol):
    """What a forked rank needs of the trainer it runs (the trainer owns its state; this
    module only moves it between processes)."""

    collectives: Collectives

    def train(self) -> None: ...

    def close(self) -> None: ...

    def counters(self) -> dict[str, int]: ...

    def set_counters(self, num_timesteps: int, iteration: int, target_timesteps: int) -> None: ...

    def shared_tensors(self) -> list[torch.Tensor]: ...


def serve_as_rank(trainer: RankTrainer) -> None:
    """The body of a forked ``run.processes`` rank (in its own process): train in step with
    rank 0 with environment copies of its own, then wait for rank 0's next training call,
    until rank 0 ends the ranks."""
    try:
        trainer.train()
        while share_training_state(trainer):
            trainer.train()
    finally:
        trainer.close()


def share_training_state(trainer: RankTrainer, command: int = TRAIN) -> bool:
    """Rank 0's ``command`` and, to train, its counters, weights, statistics and optimizer
    state, on every rank (every rank calls it; what the other ranks pass is ignored).
    Returns whether to train."""
    collectives = trainer.collectives
    assert isinstance(collectives, SharedMemoryCollectives)
    counters = trainer.counters()
    command, num_timesteps, iteration, target_timesteps = _broadcast_command(
        collectives.group,
        command,
        counters["num_timesteps"],
        counters["iteration"],
        counters["target_timesteps"],
    )
    if command == TRAIN:
        trainer.set_counters(num_timesteps, iteration, target_timesteps)
        collectives.broadcast_all(trainer.shared_tensors())
    return command == TRAIN


def _broadcast_command(
    group: LocalGroup, command: int, num_timesteps: int = 0, iteration: int = 0, target_timesteps: int = 0
) -> list[int]:
    """Rank 0's command and counters on every rank (one collective, the same layout for all)."""
    values = np.array([command, num_timesteps, iteration, target_timesteps], np.int64)
    return [int(v) for v in group.broadcast(values)]


def _end_ranks(group: LocalGroup, failed: bool = False) -> None:
    """Tell the ranks waiting in :func:`share_training_state` to exit and reap them; stop them
    at once when training failed (they are not waiting then) or they do not answer."""
    if not group.owned_here:
        return  # a copy of the group in some forked process: the ranks are not its to end
    if not group.running:
        return  # never forked, or already gone
    if not failed:
        try:
            _broadcast_command(group, EXIT)
        except RankFailed:
            failed = True
    group.close(timeout=0.0 if failed else _EXIT_TIMEOUT_S)


__all__ = [
    "EXIT",
    "TRAIN",
    "ForkedRanks",
    "RankTrainer",
    "serve_as_rank",
    "share_training_state",
    "slot_bytes",
]
