"""``Learner``: the PPO update of one rollout (epochs of shuffled minibatches).

Each gradient step has the rank's backend (:mod:`ppo_envkit.algo.backend`: the numpy
fast path or autograd, whichever serves the policy) gather a minibatch and compute its loss
and gradient; the learner averages the gradients over the ranks,
refuses a non-finite loss, stops the epochs early when approx-KL exceeds
``ppo.target_kl`` (that step is not taken, as in SB3), clips the global gradient
norm and steps Adam.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..config import PPOConfig
from ..errors import NonFiniteError
from .context import RankContext
from .losses import LossSettings, LossStats
from .optim import FlatAdam, load_optimizer_state, optimizer_state
from .policy import ActorCritic
from .rollout import RolloutBuffer


@dataclass
class UpdateStats:
    """What one update did: losses averaged over its gradient steps, and diagnostics."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float  # the (r - 1) - log r estimator
    clip_fraction: float
    loss: float
    explained_variance: float
    learning_rate: float
    gradient_steps: int
    stopped_early: float  # 1.0 when target_kl ended the epochs early
    action_std: float | None = None  # Gaussian heads

    def metrics(self) -> dict[str, float]:
        """As logged (``progress.csv``, TensorBoard); ``action_std`` only for Gaussian heads."""
        return {k: v for k, v in asdict(self).items() if v is not None}


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = target.var()
    return float("nan") if var == 0 else float(1.0 - (target - pred).var() / var)


def make_optimizer(policy: ActorCritic, cfg: PPOConfig) -> FlatAdam:
    return FlatAdam(policy, lr=cfg.learning_rate, eps=cfg.adam_eps)


def valid_minibatches(
    valid: torch.Tensor, units: int, per_batch: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """One epoch's minibatches of the ``valid`` sample indices, shuffled: as many minibatches as
    a rollout of ``units`` samples all valid would have (``ceil(units / per_batch)``), so that
    every rank takes the same number of gradient steps (they average gradients together,
    whatever their valid counts), of nearly equal sizes. With fewer valid samples than
    minibatches, samples repeat rather than leave a minibatch empty."""
    count = -(-units // per_batch)
    perm = valid[torch.randperm(len(valid), generator=generator, device=valid.device)]
    if len(perm) < count:
        if len(perm) == 0:
            raise NonFiniteError("no agent was live at any step of the rollout: nothing to learn from")
        perm = perm.repeat(-(-count // len(perm)))[:count]
    return list(torch.tensor_split(perm, count))


def _valid_explained_variance(rollout: RolloutBuffer, valid: torch.Tensor | None) -> float:
    values, returns = rollout.values.reshape(-1), rollout.returns.reshape(-1)
    if valid is not None:
        values, returns = values[valid], returns[valid]
    return explained_variance(values, returns)


class Learner:
    """Updates the policy from rollouts; owns the optimizer (:class:`FlatAdam`, created at the
    first update: it makes the policy's parameters views of one buffer)."""

    def __init__(self, context: RankContext, optimizer: FlatAdam | None = None):
        self.context = context
        self.policy = context.policy
        self._optimizer = optimizer

    @property
    def created_optimizer(self) -> FlatAdam | None:
        """The optimizer if it exists already (before the first update it need not)."""
        return self._optimizer

    @property
    def optimizer(self) -> FlatAdam:
        if self._optimizer is None:
            self._optimizer = make_optimizer(self.policy, self.context.config.ppo)
        return self._optimizer

    def optimizer_state(self) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
        """(JSON-ready part, tensors) of the optimizer; (None, {}) before the first update."""
        if self._optimizer is None:
            return None, {}
        meta, tensors = optimizer_state(self._optimizer)
        return meta, {k: v.detach().clone() for k, v in tensors.items()}

    def load_optimizer_state(self, meta: dict[str, Any] | None, tensors: dict[str, torch.Tensor]) -> None:
        if meta is None:  # saved before the first update: start afresh
            self._optimizer = None
            return
        device = self.policy.device
        load_optimizer_state(self.optimizer, meta, {k: v.to(device) for k, v in tensors.items()})

    def update(self, rollout: RolloutBuffer, progress: float, where: str) -> UpdateStats:
        """``ppo.n_epochs`` passes of shuffled minibatches over ``rollout`` (advantages computed).

        The learning rate is ``ppo.learning_rate`` of the current settings (so a new one reaches
        an existing optimizer), annealed by ``progress`` (steps done / planned) when
        ``ppo.anneal_lr``; ``where`` names this update in errors ("in update 3 (after 4096 steps)").
        """
        with self.policy.training_precision():  # the image encoder's training dtype
            return self._update(rollout, progress, where)

    def _update(self, rollout: RolloutBuffer, progress: float, where: str) -> UpdateStats:
        context = self.context
        cfg = context.config.ppo
        optimizer, policy, gen, collectives = (
            self.optimizer,
            self.policy,
            context.generator,
            context.collectives,
        )
        lr = max(0.0, 1.0 - progress) * cfg.learning_rate if cfg.anneal_lr else cfg.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        settings = LossSettings.from_config(cfg)
        batch_size = rollout.size
        mb_size = context.config.minibatch_size // collectives.size  # this rank's share
        backend = context.backend()  # after the optimizer exists: its buffer holds the parameters
        history: list[list[float]] = []
        stopped_early = False
        # Shuffled units: single steps, or whole sequences of one copy for a recurrent policy
        units, per_batch = batch_size, mb_size
        if policy.recurrent:
            units, per_batch = rollout.num_sequences, max(1, mb_size // rollout.sequence_length)
        valid = rollout.valid_rows()  # several agents: padding rows never reach the loss
        for _epoch in range(cfg.n_epochs):
            if valid is None:
                perm = torch.randperm(units, generator=gen, device=policy.device)
                chunks = [perm[start : start + per_batch] for start in range(0, units, per_batch)]
            else:
                chunks = valid_minibatches(valid, units, per_batch, gen)
            for chosen in chunks:
                rows = rollout.sequence_rows(chosen) if policy.recurrent else chosen
                stats = backend.gradients(rollout, rows, settings, collectives, gen, optimizer)
                loss, kl = collectives.average_gradients(
                    optimizer.grad_and_extras, (stats.loss, stats.approx_kl)
                )
                stats = stats._replace(loss=loss, approx_kl=kl)
                if not math.isfinite(stats.loss):
                    values = ", ".join(f"{k}={v:.4g}" for k, v in stats._asdict().items())
                    raise NonFiniteError(f"non-finite loss {where}: {values}")
                if cfg.target_kl is not None and stats.approx_kl > cfg.target_kl:
                    stopped_early = True  # SB3's rule: this minibatch's step is not taken
                    break
                optimizer.clip_grad_norm(cfg.max_grad_norm)
                optimizer.step()
                history.append(list(stats))
            if stopped_early:
                break
        means = np.mean(history, axis=0).tolist() if history else [float("nan")] * len(LossStats._fields)
        head = policy.head
        return UpdateStats(
            *means,
            explained_variance=_valid_explained_variance(rollout, valid),
            learning_rate=optimizer.param_groups[0]["lr"],
            gradient_steps=len(history),
            stopped_early=float(stopped_early),
            action_std=float(head.log_std.detach().exp().mean()) if hasattr(head, "log_std") else None,
        )


__all__ = ["Learner", "UpdateStats", "explained_variance", "make_optimizer", "valid_minibatches"]
