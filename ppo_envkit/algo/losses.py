"""The PPO loss of one minibatch, as a pure function with typed results.

``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss``: the clipped
surrogate objective on ``ratio = exp(logp_new - logp_old)``, an entropy *bonus*,
and an optionally clipped value loss. :mod:`ppo_envkit.algo.fastpath` computes the
same values (and their gradient) in numpy; tests hold the two together.

:func:`ppo_losses` returns the terms as tensors (:class:`LossTerms`, the autograd graph on
``loss``); what a gradient step reports, whichever backend took it, is :class:`LossStats`
(numbers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..config import PPOConfig
from .policy import ActorCritic
from .rollout import Minibatch

Normalizer = Callable[[torch.Tensor], torch.Tensor]


class LossTerms(NamedTuple):
    """The terms of one minibatch's loss, as 0-d tensors (``loss`` carries the autograd graph)."""

    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor
    loss: torch.Tensor


class LossStats(NamedTuple):
    """What one gradient step reports (the terms of :class:`LossTerms`, as numbers); every
    backend returns these, with the gradient left in the optimizer's buffer."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    loss: float


@dataclass(frozen=True)
class LossSettings:
    """The coefficients of the loss (from :class:`~ppo_envkit.config.PPOConfig`)."""

    clip: float
    vclip: float | None  # None: the value loss is not clipped
    ent_coef: float
    vf_coef: float
    norm_adv: bool

    @classmethod
    def from_config(cls, cfg: PPOConfig) -> LossSettings:
        vclip = cfg.vf_clip_coef or cfg.clip_coef
        return cls(cfg.clip_coef, vclip if cfg.clip_vloss else None, cfg.ent_coef, cfg.vf_coef, cfg.norm_adv)


def loss_advantages(advantages: torch.Tensor, norm_adv: bool, normalize: Normalizer) -> torch.Tensor:
    """A minibatch's advantages as the loss uses them: ``normalize``-d when ``norm_adv``
    (by the minibatch's own moments, or by every rank's: see ``Collectives.normalize_advantages``)."""
    return normalize(advantages) if norm_adv else advantages


def ppo_losses(
    policy: ActorCritic,
    batch: Minibatch,
    settings: LossSettings,
    normalize: Normalizer,
    generator: torch.Generator | None = None,
) -> LossTerms:
    """The PPO loss of ``batch`` under the current parameters (autograd graph attached)."""
    new_logp, entropy, values = policy.evaluate(
        batch.obs, batch.actions, generator, batch.masks, batch.states, batch.starts
    )
    log_ratio = new_logp - batch.old_logprobs
    ratio = log_ratio.exp()
    clip = settings.clip
    advantages = loss_advantages(batch.advantages, settings.norm_adv, normalize)
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()
    returns, old_values = batch.returns, batch.old_values
    if settings.vclip is None:
        value_loss = 0.5 * (values - returns).square().mean()
    else:
        clipped = old_values + (values - old_values).clamp(-settings.vclip, settings.vclip)
        value_loss = 0.5 * torch.max((values - returns).square(), (clipped - returns).square()).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - settings.ent_coef * entropy_mean + settings.vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).to(torch.float32).mean()
    return LossTerms(policy_loss, value_loss, entropy_mean, approx_kl, clip_fraction, loss)


__all__ = ["LossSettings", "LossStats", "LossTerms", "Normalizer", "loss_advantages", "ppo_losses"]
