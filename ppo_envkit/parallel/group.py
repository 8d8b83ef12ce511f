"""Which ranks an agent trains with, under its current settings.

One process (:class:`~.collectives.SingleProcess`), the ranks of a ``torchrun`` launch
(:class:`~.torchrun.TorchDistributed`), or ``run.processes`` ranks forked on this machine
(:class:`~.ranks.ForkedRanks`). This is the one place that decides; the training code
receives the resulting :class:`~.collectives.Collectives`.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ..config import TrainConfig
from . import copies_per_rank, launched_by_torchrun
from .collectives import Collectives, SingleProcess
from .ranks import ForkedRanks, share_training_state, slot_bytes

if TYPE_CHECKING:
    from ..algo.policy import ActorCritic
    from ..algo.trainer import Trainer


class TrainingGroup:
    """The ranks of one agent; forked ranks end with :meth:`end` or with ``owner``."""

    def __init__(self, owner: object):
        self._owner = weakref.ref(owner)  # not a strong reference: the owner holds this group
        self.forked: ForkedRanks | None = None

    def collectives(
        self, config: TrainConfig, policy: ActorCritic, current: Collectives | None
    ) -> Collectives:
        """The collectives for ``config``: ``current`` when it still fits, else new ones (forked
        ranks whose settings changed, or that died, are ended first)."""
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
        device = policy.device
        if device.type != "cpu":
            raise ValueError(
                f"run.processes={processes} trains on the CPU: forked processes cannot share "
                f"a {device.type} context; set run.processes=1, or use torchrun for GPUs"
            )
        settings: dict[str, Any] = config.model_dump()
        if self.forked is None or not self.forked.usable_for(settings):
            self.end()
            n_params = sum(p.numel() for p in policy.parameters())
            rows = copies_per_rank(config) * max(policy.flattener.flat_dim, 1)
            self.forked = ForkedRanks(self._owner(), processes, slot_bytes(n_params, rows), settings)
        return self.forked.collectives

    def begin_call(self, trainer: Trainer) -> None:
        """Before a training call: fork the other ranks (the first call), or wake them with rank
        0's counters, weights, statistics and optimizer state (later calls)."""
        from ..algo.trainer import serve_as_rank

        forked = self.forked
        if forked is None:
            return
        agent, learner = trainer.agent, trainer.learner
        if not forked.started:
            trainer.attach(forked.collectives)  # every rank starts from the statistics as they are now
            # Rank 0's optimizer as forked (None before the first update: each rank then creates
            # the same fresh one after its first rollout, in parallel, off the start-up path).
            optimizer = learner.created_optimizer
            states, trainer.rank_states = trainer.rank_states, {}  # a resumed run's other ranks
            forked.start(lambda collectives: serve_as_rank(agent, collectives, optimizer, states))
        else:
            share_training_state(forked.collectives, agent, learner.optimizer)

    def end(self, failed: bool = False) -> None:
        """End the forked ranks, if any (at once when training failed)."""
        forked, self.forked = self.forked, None
        if forked is not None:
            forked.end(failed)

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the forked ranks while they run (0 without them)."""
        return self.forked.peak_rss_mb() if self.forked is not None else 0.0


__all__ = ["TrainingGroup"]
