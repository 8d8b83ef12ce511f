"""Which ranks an agent trains with, under its current settings.

One process (:class:`~.collectives.SingleProcess`), the ranks of a ``torchrun`` launch
(:class:`~.torchrun.TorchDistributed`), or ``run.processes`` ranks forked on this machine
(:class:`~.ranks.ForkedRanks`). This is the one place that decides; the training code
receives the resulting :class:`~.collectives.Collectives`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch

from ..config import TrainConfig
from . import copies_per_rank, launched_by_torchrun
from .collectives import Collectives, SingleProcess
from .ranks import ForkedRanks, RankTrainer, serve_as_rank, share_training_state, slot_bytes


class GroupTrainer(RankTrainer, Protocol):
    """Rank 0's trainer, as the group sees it."""

    def attach(self, collectives: Collectives) -> None: ...

    def rank_trainers(self) -> Callable[[Collectives], RankTrainer]:
        """A factory of the trainers of the other ranks (called in each forked process), with
        what they inherit from this one taken now, before the fork."""
        ...


class TrainingGroup:
    """The ranks of one agent; forked ranks end with :meth:`end` or with ``owner``."""

    def __init__(self, owner: object):
        self._owner = weakref.ref(owner)  # not a strong reference: the owner holds this group
        self.forked: ForkedRanks | None = None

    def collectives(
        self, config: TrainConfig, policy: torch.nn.Module, obs_width: int, current: Collectives | None
    ) -> Collectives:
        """The collectives for ``config``: ``current`` when it still fits, else new ones (forked
        ranks whose settings changed, or that died, are ended first). ``policy`` is the module
        the ranks train (rank 0's weights are the start), ``obs_width`` its flat observation
        size (statistics rows travel through the shared slots too)."""
        if launched_by_torchrun():
            from .torchrun import TorchDistributed

            if isinstance(current, TorchDistributed):
                return current
            joined = TorchDistributed()
            joined.broadcast_all(policy.state_dict().values())  # the same start weights everywhere
            return joined
        processes = config.run.processes
        if processes == 1:
            self.end()
            return current if isinstance(current, SingleProcess) else SingleProcess()
        device = next(policy.parameters()).device
        if device.type != "cpu":
            raise ValueError(
                f"run.processes={processes} trains on the CPU: forked processes cannot share "
                f"a {device.type} context; set run.processes=1, or use torchrun for GPUs"
            )
        settings: dict[str, Any] = config.model_dump()
        if self.forked is None or not self.forked.usable_for(settings):
            self.end()
            n_params = sum(p.numel() for p in policy.parameters())
            rows = copies_per_rank(config) * max(obs_width, 1)
            self.forked = ForkedRanks(self._owner(), processes, slot_bytes(n_params, rows), settings)
        return self.forked.collectives

    def begin_call(self, trainer: GroupTrainer) -> None:
        """Before a training call: fork the other ranks (the first call), or wake them with rank
        0's counters, weights, statistics and optimizer state (later calls)."""
        forked = self.forked
        if forked is None:
            return
        if not forked.started:
            trainer.attach(forked.collectives)  # every rank starts from the statistics as they are now
            make_trainer = trainer.rank_trainers()
            forked.start(lambda collectives: serve_as_rank(make_trainer(collectives)))
        else:
            share_training_state(trainer)

    def end(self, failed: bool = False) -> None:
        """End the forked ranks, if any (at once when training failed)."""
        forked, self.forked = self.forked, None
        if forked is not None:
            forked.end(failed)

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the forked ranks while they run (0 without them)."""
        return self.forked.peak_rss_mb() if self.forked is not None else 0.0


__all__ = ["TrainingGroup"]
