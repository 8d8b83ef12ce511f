"""The hot path behind one interface: acting during collection, and one minibatch's gradient.

A :class:`Backend` does the two things training repeats thousands of times per rollout:

* :meth:`Backend.act`: sample the actions of a batch of observations, with their
  log-probabilities and values (the collector, once per environment step);
* :meth:`Backend.gradients`: gather a minibatch from the rollout, compute its PPO loss and
  leave the loss's gradient in the optimizer's flat buffer (the learner, once per minibatch).

Two implementations: :class:`AutogradBackend` (the policy's modules and autograd, optionally
through ``torch.compile``; serves every policy) and
:class:`~ppo_envkit.algo.fastpath.NumpyBackend` (the MLP and the PPO gradient written out in
numpy, for the policies it covers, on the CPU). Both take the same random draws and return
the same :class:`~ppo_envkit.algo.losses.LossStats`; the collector and the learner never ask
which one they hold. :meth:`~ppo_envkit.algo.context.RankContext.backend` decides.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .losses import LossSettings, LossStats, LossTerms, ppo_losses
from .policy import ActorCritic
from .recurrent import Memory
from .rollout import RolloutBuffer

if TYPE_CHECKING:
    from ..parallel.collectives import Collectives
    from .optim import FlatAdam

LossFunction = Callable[..., LossTerms]


class Backend(ABC):
    """How one policy acts and computes the PPO gradient."""

    @abstractmethod
    def act(
        self,
        obs: torch.Tensor,
        generator: torch.Generator | None = None,
        masks: torch.Tensor | None = None,
        memory: Memory | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stored action, log-probability, value) of each row of ``obs`` (normalized), sampled
        with ``generator`` under the action ``masks``; a recurrent ``memory`` moves on by this step."""

    @abstractmethod
    def gradients(
        self,
        rollout: RolloutBuffer,
        rows: torch.Tensor,
        settings: LossSettings,
        collectives: Collectives,
        generator: torch.Generator,
        optimizer: FlatAdam,
    ) -> LossStats:
        """The PPO loss of the ``rows`` of ``rollout`` (advantages normalized as ``collectives``
        does); its gradient is left in ``optimizer.grad`` (not yet averaged over ranks)."""


class AutogradBackend(Backend):
    """The policy's own modules; the gradient by autograd, of ``losses`` (:func:`ppo_losses`, or
    its ``torch.compile``-d form)."""

    def __init__(self, policy: ActorCritic, losses: LossFunction = ppo_losses):
        self.policy, self.losses = policy, losses

    def act(self, obs, generator=None, masks=None, memory=None):
        action, logp, value, _ = self.policy.act(obs, generator=generator, mask=masks, memory=memory)
        return action, logp, value

    def gradients(self, rollout, rows, settings, collectives, generator, optimizer):
        batch = rollout.minibatch(rows)
        terms = self.losses(self.policy, batch, settings, collectives.normalize_advantages, generator)
        optimizer.set_grads(torch.autograd.grad(terms.loss, optimizer.params, allow_unused=True))
        return LossStats(*(v.item() for v in terms))


__all__ = ["AutogradBackend", "Backend", "LossFunction"]
