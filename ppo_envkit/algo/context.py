"""``RankContext``: what the collector and the learner of one rank share, and which backend
serves their hot path."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import RunConfig, TrainConfig
from ..parallel.collectives import Collectives
from .backend import AutogradBackend, Backend
from .fastpath import NumpyBackend
from .losses import ppo_losses
from .policy import ActorCritic


class Backends:
    """The one place that decides which :class:`~ppo_envkit.algo.backend.Backend` serves a policy.

    The numpy one when ``run.analytic_gradients`` is on and the policy is one it covers
    (:meth:`NumpyBackend.supports`: an MLP with a registered head, float32 on the CPU; no
    image encoder, no recurrent core); else autograd, through ``torch.compile`` when
    ``run.compile`` asks for it. Each backend is built once and kept (the numpy one is
    rebuilt when the parameters' memory has moved, e.g. into the optimizer's flat buffer).
    """

    def __init__(self, policy: ActorCritic):
        self.policy = policy
        self._numpy: NumpyBackend | None = None
        self._autograd = AutogradBackend(policy)
        self._compiled: AutogradBackend | None = None

    def select(self, run: RunConfig) -> Backend:
        """The backend for ``run``'s settings; call it before a batch of calls (a rollout, an
        update), since it checks that the policy (still) qualifies."""
        if run.analytic_gradients and NumpyBackend.supports(self.policy):
            if self._numpy is None or not self._numpy.is_current():
                self._numpy = NumpyBackend(self.policy)
            return self._numpy
        if not run.compile:
            return self._autograd
        if self._compiled is None:
            self._compiled = AutogradBackend(self.policy, torch.compile(ppo_losses))
        return self._compiled


@dataclass
class RankContext:
    """The policy, settings, random stream and collectives one rank trains with.

    The trainer swaps ``config`` (settings may change between training calls) and
    ``collectives`` (the ranks may change) in one place for both of its parts. The one
    generator serves sampling during collection and shuffling during updates, in that
    order, which is what makes a run reproducible from its seed.
    """

    policy: ActorCritic
    config: TrainConfig
    generator: torch.Generator
    collectives: Collectives
    backends: Backends = field(init=False)

    def __post_init__(self) -> None:
        self.backends = Backends(self.policy)

    def backend(self) -> Backend:
        """The hot path's backend under the current settings (:class:`Backends` decides)."""
        return self.backends.select(self.config.run)


__all__ = ["Backends", "RankContext"]
