"""Action heads: the one place that maps an action space to a distribution.

Every head stores actions as a float32 matrix ``[batch, storage_dim]`` so that the
rollout buffer is the same for every space. What is stored is what the
log-probability is computed from: the *unclipped* Gaussian sample, or the
pre-tanh sample of a squashed Gaussian. Conversion to what the environment
accepts (clipping, squashing, integer casting, reshaping) happens only in
:meth:`ActionHead.to_env`.

The log-probabilities and entropies are written out by hand (faster than
``torch.distributions`` for small batches) and tested against it. Heads hold torch
code only; the numpy fast path registers its own formulas per head in
:mod:`ppo_envkit.algo.fastpath`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from ..environments.masks import MASKABLE_ACTION_SPACES, mask_size
from ..errors import ActionMaskError, ConfigError
from ..spaces import (
    COMPOSITE_ACTION_SPACE_TYPES,
    SUPPORTED_ACTION_SPACES,
    UnsupportedSpaceError,
    action_leaves,
    check_action_space,
)

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

#: The logit of an illegal action. Finite, so that ``0 * logit`` is 0 in the entropy (an
#: infinite one gives NaN), and low enough that ``exp`` of it is exactly 0 in float32:
#: an illegal action has probability 0 and contributes nothing to the entropy.
MASKED_LOGIT = -1e8


def init_layer(layer: nn.Linear, gain: float, enabled: bool = True) -> nn.Linear:
    """Orthogonal weights with ``gain`` and zero bias (when ``enabled``)."""
    if enabled:
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


class ActionHead(nn.Module):
    """Base class: a linear output layer and the distribution it parameterizes."""

    storage_dim: int

    def __init__(self, space: spaces.Space, in_features: int, out_features: int, ortho_init: bool):
        super().__init__()
        self.space = space
        self.out = init_layer(nn.Linear(in_features, out_features), 0.01, ortho_init)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(features)

    @property
    def mask_size(self) -> int | None:
        """Values of an action mask for this head (None: its actions cannot be masked)."""
        return mask_size(self.space)

    def apply_mask(self, params: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The parameters of the distribution restricted to the actions ``mask`` allows
        (``[batch, mask_size]`` booleans): sampling, the mode, log-probabilities and the
        entropy of the result are those of the legal set, renormalised."""
        raise ActionMaskError(
            f"actions of {self.space} cannot be masked; masks work for {MASKABLE_ACTION_SPACES} actions"
        )

    def mask_keeps(self, mask: torch.Tensor) -> torch.Tensor:
        """Which parameters :meth:`apply_mask` passes through (the others get no gradient)."""
        return mask

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The most likely action (deterministic policy)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def entropy(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """Stored actions ``[batch, storage_dim]`` -> a batch the environment accepts."""
        raise NotImplementedError

    def describe(self, params: torch.Tensor) -> dict[str, np.ndarray]:
        """What the policy 'thinks' (for the viewer): probabilities, means, stds."""
        raise NotImplementedError

    def row(self, env_actions: Any, i: int) -> Any:
        """Row ``i`` of a batch that :meth:`to_env` returned: one environment's action."""
        return env_actions[i]

    def history_rows(self, env_actions: Any) -> np.ndarray:
        """A batch of environment actions as one array ``[batch, ...]`` (what episode histories
        store; :func:`ppo_envkit.environments.episodes.ReplayableEpisodes` turns a row back)."""
        return env_actions


class CategoricalHead(ActionHead):
    """``Discrete(n)``: softmax over n logits."""

    storage_dim = 1

    def __init__(self, space: spaces.Discrete, in_features: int, ortho_init: bool = True):
        super().__init__(space, in_features, int(space.n), ortho_init)
        self.start = int(space.start)

    def sample(self, params, generator=None):
        # Gumbel-max written as argmax(p / E) with E ~ Exp(1); uses the given generator.
        noise = torch.empty_like(params).exponential_(generator=generator)
        return (params - noise.log()).argmax(-1, keepdim=True).to(torch.float32)

    def mode(self, params):
        return params.argmax(-1, keepdim=True).to(torch.float32)

    def log_prob(self, params, actions):
        return params.log_softmax(-1).gather(-1, actions.long()).squeeze(-1)

    def entropy(self, params, generator=None):
        logp = params.log_softmax(-1)
        return -(logp.exp() * logp).sum(-1)

    def apply_mask(self, params, mask):
        return torch.where(mask, params, MASKED_LOGIT)

    def to_env(self, actions):
        return actions[:, 0].to(torch.int64).detach().cpu().numpy() + self.start

    def describe(self, params):
        return {"probs": params.softmax(-1).detach().cpu().numpy()}


class MultiCategoricalHead(ActionHead):
    """``MultiDiscrete(nvec)``: one independent categorical per entry."""

    def __init__(self, space: spaces.MultiDiscrete, in_features: int, ortho_init: bool = True):
        self.nvec = [int(n) for n in np.asarray(space.nvec).reshape(-1)]
        super().__init__(space, in_features, sum(self.nvec), ortho_init)
        self.storage_dim = len(self.nvec)
        self.register_buffer(
            "start", torch.as_tensor(np.asarray(space.start).reshape(-1), dtype=torch.int64), persistent=False
        )

    def _split(self, params):
        return params.split(self.nvec, dim=-1)

    def sample(self, params, generator=None):
        noise = torch.empty_like(params).exponential_(generator=generator)
        scores = self._split(params - noise.log())
        return torch.stack([s.argmax(-1) for s in scores], -1).to(torch.float32)

    def mode(self, params):
        return torch.stack([p.argmax(-1) for p in self._split(params)], -1).to(torch.float32)

    def log_prob(self, params, actions):
        idx = actions.long()
        return sum(
            p.log_softmax(-1).gather(-1, idx[:, i : i + 1]).squeeze(-1)
            for i, p in enumerate(self._split(params))
        )

    def entropy(self, params, generator=None):
        total = 0
        for p in self._split(params):
            logp = p.log_softmax(-1)
            total = total - (logp.exp() * logp).sum(-1)
        return total

    def apply_mask(self, params, mask):
        return torch.where(mask, params, MASKED_LOGIT)

    def to_env(self, actions):
        out = (actions.to(torch.int64) + self.start).detach().cpu().numpy()
        return out.reshape(-1, *self.space.shape).astype(self.space.dtype, copy=False)

    def describe(self, params):
        return {f"probs_{i}": p.softmax(-1).detach().cpu().numpy() for i, p in enumerate(self._split(params))}


class BernoulliHead(ActionHead):
    """``MultiBinary(n)``: one independent Bernoulli per entry."""

    def __init__(self, space: spaces.MultiBinary, in_features: int, ortho_init: bool = True):
        self.storage_dim = int(np.prod(space.shape))
        super().__init__(space, in_features, self.storage_dim, ortho_init)

    def sample(self, params, generator=None):
        u = torch.rand(params.shape, generator=generator, device=params.device)
        return (u < params.sigmoid()).to(torch.float32)

    def mode(self, params):
        return (params > 0).to(torch.float32)

    def log_prob(self, params, actions):
        # log p = -softplus(-l), log(1 - p) = -softplus(l)
        return -(actions * F.softplus(-params) + (1 - actions) * F.softplus(params)).sum(-1)

    def entropy(self, params, generator=None):
        p = params.sigmoid()
        return (p * F.softplus(-params) + (1 - p) * F.softplus(params)).sum(-1)

    def apply_mask(self, params, mask):
        """An entry with one legal value gets a logit that makes it certain (probability 1,
        log-probability 0, entropy 0); an entry with both keeps its logit."""
        pairs = mask.reshape(*mask.shape[:-1], -1, 2)
        zero_ok, one_ok = pairs[..., 0], pairs[..., 1]
        forced = torch.where(one_ok, -MASKED_LOGIT, MASKED_LOGIT)
        return torch.where(zero_ok & one_ok, params, forced)

    def mask_keeps(self, mask):
        return mask.reshape(*mask.shape[:-1], -1, 2).all(-1)

    def to_env(self, actions):
        return actions.detach().cpu().numpy().astype(np.int8).reshape(-1, *self.space.shape)

    def describe(self, params):
        return {"probs": params.sigmoid().detach().cpu().numpy()}


#: Bounds of a state-dependent log-std (``state_std``): a standard deviation between
#: 0.0067 and 7.4. The network's output is clamped, so that one outlying state can neither
#: make a log-probability infinite nor spread an action over far more than any Box.
STATE_LOG_STD_MIN, STATE_LOG_STD_MAX = -5.0, 2.0


def box_centre_half_width(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and half-width of each dimension of a box; 0 and 1 where a bound is infinite (or
    the box has no width), so that the normalized coordinates of such a dimension are its own."""
    finite = np.isfinite(low) & np.isfinite(high) & (high > low)
    lo, hi = np.where(finite, low, 0.0), np.where(finite, high, 0.0)  # no inf - inf below
    return (lo + hi) / 2, np.where(finite, (hi - lo) / 2, 1.0)


class GaussianHead(ActionHead):
    """``Box``: diagonal Gaussian.

    The log-std is one learned number per dimension, the same in every state (the default);
    with ``state_std`` (the parameter parts of a composite head, ``policy.composite_std=state``)
    it is an output of the network as the mean is: the parameters are then
    ``[mean, log_std]`` (twice the action's size), and the log-std starts at ``log_std_init``
    in every state (its bias; its weights start as small as the mean's).

    With ``normalized`` (the Box parts of a composite head, ``policy.box_coords``), every
    dimension with finite bounds is parametrized in the box's own coordinates: mean 0 is the
    centre of the box and a standard deviation of 1 its half-width, so that the Gaussian starts
    centred on the box (a box ``[0, 1]`` would otherwise start with half its draws clipped to 0)
    and the spread is relative to the box, whatever its units. The stored action is then the
    normalized sample ``u``; :meth:`to_env` maps it affinely, ``centre + half_width * u``, and
    clips. The log-probability and the entropy are those of the action in the environment's
    units (before clipping): the affine map adds the constant ``-sum(log half_width)`` to every
    log-probability (it cancels in the PPO ratio) and ``+sum(log half_width)`` to the entropy
    (no gradient). A box of half-width 1 centred on 0 (``[-1, 1]``) trains bit for bit as
    without it. Unbounded dimensions keep centre 0 and half-width 1. Without ``normalized`` the
    stored action is the raw sample in the environment's units; :meth:`to_env` clips it.
    """

    def __init__(
        self,
        space: spaces.Box,
        in_features: int,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        state_std: bool = False,
        normalized: bool = False,
    ):
        self.storage_dim = int(np.prod(space.shape))
        self.state_std = state_std
        super().__init__(space, in_features, self.storage_dim * (2 if state_std else 1), ortho_init)
        if state_std:
            with torch.no_grad():
                self.out.bias[self.storage_dim :] = float(log_std_init)
        else:
            self.log_std = nn.Parameter(torch.full((self.storage_dim,), float(log_std_init)))
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32), persistent=False)
        self.normalized = normalized
        if normalized:
            centre, half_width = box_centre_half_width(low, high)
            as_tensor = torch.as_tensor
            self.register_buffer("centre", as_tensor(centre, dtype=torch.float32), persistent=False)
            self.register_buffer("half_width", as_tensor(half_width, dtype=torch.float32), persistent=False)
            #: log |det| of the map from stored to environment units (0 for boxes [-1, 1])
            self.log_det = float(np.log(half_width).sum())

    def to_env_units(self, actions: torch.Tensor) -> torch.Tensor:
        """Stored (possibly normalized) actions -> the environment's units, before clipping."""
        if not self.normalized:
            return actions
        return self.centre + self.half_width * actions

    def env_mean_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``[batch, d]`` in the environment's units."""
        mean, log_std = self.mean_log_std(params)
        std = log_std.exp().expand_as(mean)
        if not self.normalized:
            return mean, std
        return self.to_env_units(mean), self.half_width * std

    def mean_log_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(means ``[batch, d]``, log-stds: ``[d]`` shared by every state, or ``[batch, d]``)."""
        if not self.state_std:
            return params, self.log_std
        d = self.storage_dim
        return params[..., :d], params[..., d:].clamp(STATE_LOG_STD_MIN, STATE_LOG_STD_MAX)

    def sample(self, params, generator=None):
        mean, log_std = self.mean_log_std(params)
        noise = torch.randn(mean.shape, generator=generator, device=params.device)
        return mean + log_std.exp() * noise

    def mode(self, params):
        return self.mean_log_std(params)[0]

    def log_prob(self, params, actions):
        mean, log_std = self.mean_log_std(params)
        z = (actions - mean) * torch.exp(-log_std)
        logp = (-0.5 * z.square() - log_std - _LOG_SQRT_2PI).sum(-1)
        return logp - self.log_det if self.normalized else logp

    def entropy(self, params, generator=None):
        log_std = self.mean_log_std(params)[1]
        if self.state_std:
            ent = (0.5 + _LOG_SQRT_2PI + log_std).sum(-1)
        else:
            ent = (0.5 + _LOG_SQRT_2PI + log_std).sum().expand(params.shape[0])
        return ent + self.log_det if self.normalized else ent

    def to_env(self, actions):
        clipped = torch.maximum(torch.minimum(self.to_env_units(actions), self.high), self.low)
        # len(actions) rather than -1: a Box of no values (a choice without parameters) has 0 columns
        out = clipped.detach().cpu().numpy().reshape(len(actions), *self.space.shape)
        return out.astype(self.space.dtype, copy=False)

    def describe(self, params):
        mean, std = self.env_mean_std(params)
        return {"mean": mean.detach().cpu().numpy(), "std": std.detach().cpu().numpy()}


#: Where a censored Gaussian puts an unbounded side, in stored coordinates: beyond any draw, and
#: finite, so that the branch torch.where does not take has a finite value and gradient.
_CENSOR_UNBOUNDED = 1e4


class CensoredGaussianHead(GaussianHead):
    """``Box``: a Gaussian clipped to the box, whose log-probability knows the clipping
    (``policy.box_distribution=gaussian-censored``; Fujita and Maeda, *Clipped Action Policy
    Gradient*, 2018).

    The environment receives ``clip(x, low, high)`` for a Gaussian draw ``x``, so the action it
    sees has probability ``P(x <= low)`` at the lower bound and ``P(x >= high)`` at the upper
    one. The plain :class:`GaussianHead` scores a clipped draw by the density at ``x`` instead, as
    if the environment had seen ``x``: moving the mean beyond a bound then makes such draws
    less likely, and a policy that wants the bound learns it by widening its spread (a greedy
    action, the mean, far from what it plays). Here a clipped draw's log-probability is that of
    the whole tail, ``log Phi((low - mean) / std)`` or ``log Phi((mean - high) / std)``, which
    rises as the mean moves beyond the bound: the mean can go where the policy plays. Draws
    inside the box keep the density. The entropy is the Gaussian's (an upper bound)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        low, high = self.low, self.high
        if self.normalized:  # the bounds in the stored (box's own) coordinates
            low, high = (low - self.centre) / self.half_width, (high - self.centre) / self.half_width
        big = _CENSOR_UNBOUNDED
        self.register_buffer(
            "stored_low", torch.nan_to_num(low, neginf=-big).clamp(min=-big), persistent=False
        )
        self.register_buffer(
            "stored_high", torch.nan_to_num(high, posinf=big).clamp(max=big), persistent=False
        )

    def log_prob(self, params, actions):
        mean, log_std = self.mean_log_std(params)
        inv_std = torch.exp(-log_std)
        z = (actions - mean) * inv_std
        density = -0.5 * z.square() - log_std - _LOG_SQRT_2PI
        below = torch.special.log_ndtr((self.stored_low - mean) * inv_std)
        above = torch.special.log_ndtr((mean - self.stored_high) * inv_std)
        logp = torch.where(
            actions <= self.stored_low, below, torch.where(actions >= self.stored_high, above, density)
        )
        return logp.sum(-1) - self.log_det if self.normalized else logp.sum(-1)


class SquashedGaussianHead(GaussianHead):
    """``Box`` with finite bounds: ``a = low + (tanh(u) + 1) / 2 * (high - low)``, u Gaussian.

    The stored action is ``u``; the log-probability is that of ``a``, including the
    log-determinant of the tanh and the affine rescaling. Its entropy has no closed
    form, so :meth:`entropy` returns the single-sample reparameterized estimate
    ``-log p(a)``, which is unbiased and carries the right gradient.
    """

    def __init__(
        self,
        space: spaces.Box,
        in_features: int,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        state_std: bool = False,
    ):
        super().__init__(space, in_features, ortho_init, log_std_init, state_std)
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise UnsupportedSpaceError(
                f"policy.squash needs finite Box bounds, but the action space is {space}; "
                "turn squash off or give the environment finite bounds"
            )
        self.register_buffer("log_half_range", ((self.high - self.low) / 2).log(), persistent=False)

    def log_prob(self, params, actions):
        gaussian = super().log_prob(params, actions)
        # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), stable for large |u|
        log_det = 2.0 * (math.log(2.0) - actions - F.softplus(-2.0 * actions))
        return gaussian - (log_det + self.log_half_range).sum(-1)

    def entropy(self, params, generator=None):
        mean, log_std = self.mean_log_std(params)
        noise = torch.randn(mean.shape, generator=generator, device=params.device)
        u = mean + log_std.exp() * noise
        return -self.log_prob(params, u)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def to_env(self, actions):
        # Clamp guards against tanh rounding to exactly +-1 and floating error at the bounds.
        squashed = torch.maximum(torch.minimum(self.squash(actions), self.high), self.low)
        out = squashed.detach().cpu().numpy().reshape(len(actions), *self.space.shape)
        return out.astype(self.space.dtype, copy=False)

    def describe(self, params):
        out = super().describe(params)
        out["mean"] = self.squash(self.mode(params)).detach().cpu().numpy()
        return out


#: A Beta sample is kept this far inside (0, 1): float32 rounds draws near a bound onto it, where
#: a concentration above 1 gives the stored action a log-probability of -inf.
BETA_EPS = 1e-6
#: Bounds of the log-concentration ``log(alpha + beta - 2)`` of the ``mode`` parametrization: from
#: about uniform to a standard deviation of about 0.3 % of the box (a Gaussian's state log-std
#: bounds give 0.34 % at the narrowest).
BETA_LOG_CONCENTRATION_MIN, BETA_LOG_CONCENTRATION_MAX = -10.0, 10.0


class BetaHead(ActionHead):
    """``Box`` with finite bounds: a Beta distribution per dimension, on the box itself (Chou,
    Maturana and Scherer, 2017), ``policy.box_distribution=beta``.

    The parameters are two outputs of the network per dimension (twice the action's size), so
    the spread is per state, and both concentrations stay at least 1: every dimension is
    unimodal (or uniform), so the most likely action is a value the policy plays, never a bound
    it only reaches by clipping. Two parametrizations of ``(alpha, beta)`` by the outputs
    ``(o1, o2)``:

    * ``mode`` (``box_distribution=beta``): the mode ``m = sigmoid(o1)`` and the concentration
      ``k = alpha + beta - 2 = exp(o2)`` (``o2`` clamped to [-10, 10]), ``alpha = 1 + m k``,
      ``beta = 1 + (1 - m) k``. The spread moves in log space, as a Gaussian's log-std does:
      a narrow Beta (a precise parameter) is a few units of output away.
    * ``softplus`` (``box_distribution=beta-softplus``, the paper's): ``alpha = 1 + softplus(o1)``,
      ``beta = 1 + softplus(o2)``. A standard deviation of 1 % of the box needs concentrations
      of about 1,250 each, so outputs over a thousand; on Golf it learnt far slower than
      ``mode`` (docs/composite-actions.md).

    The output layer starts at 0.01 of the usual scale, so every state starts centred on the box
    with a standard deviation of about a quarter of its width (``alpha = beta = 1.5`` with
    ``mode``, 1.69 with ``softplus``). The stored action is the draw ``x`` in (0, 1);
    :meth:`to_env` maps it to ``low + (high - low) * x`` (no clipping needed). The
    log-probability and the entropy are those of the action in the environment's units: the affine
    map adds the constant ``-sum(log(high - low))`` to every log-probability (it cancels in the PPO
    ratio) and ``+sum(log(high - low))`` to the entropy (no gradient).

    :meth:`mode` is the greedy action: the mode ``(alpha - 1) / (alpha + beta - 2)`` (by default)
    or the mean ``alpha / (alpha + beta)`` (``greedy = "mean"``; docs/composite-actions.md
    measures both). The mode is computed as ``(alpha - 1) / ((alpha - 1) + (beta - 1))`` from the
    excesses over 1, so that it has no cancellation near ``alpha = beta = 1``.
    """

    #: What :meth:`mode` returns: ``"mode"`` or ``"mean"`` of the Beta.
    greedy = "mode"

    def __init__(
        self, space: spaces.Box, in_features: int, ortho_init: bool = True, parametrization: str = "mode"
    ):
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise UnsupportedSpaceError(
                f"policy.box_distribution=beta needs finite Box bounds, but the space is {space}; "
                "use box_distribution=gaussian (or auto) or give it finite bounds"
            )
        self.storage_dim = int(np.prod(space.shape))
        super().__init__(space, in_features, 2 * self.storage_dim, ortho_init)
        self.parametrization = parametrization
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        width = np.asarray(space.high, dtype=np.float64).reshape(-1) - low
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("width", torch.as_tensor(width, dtype=torch.float32), persistent=False)
        high = torch.as_tensor(np.asarray(space.high, dtype=np.float32).reshape(-1))
        self.register_buffer("high", high, persistent=False)
        #: log |det| of the map from (0, 1) to the environment's units
        self.log_det = float(np.log(np.where(width > 0, width, 1.0)).sum())

    def excess(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha - 1, beta - 1)``, each ``[batch, d]``."""
        d = self.storage_dim
        if self.parametrization == "softplus":
            return F.softplus(params[..., :d]), F.softplus(params[..., d:])
        mode = torch.sigmoid(params[..., :d])
        concentration = params[..., d:].clamp(BETA_LOG_CONCENTRATION_MIN, BETA_LOG_CONCENTRATION_MAX).exp()
        return mode * concentration, (1.0 - mode) * concentration

    def concentrations(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha, beta)``, each ``[batch, d]``."""
        sa, sb = self.excess(params)
        return 1.0 + sa, 1.0 + sb

    def sample(self, params, generator=None):
        alpha, beta = self.concentrations(params)
        x = torch._sample_dirichlet(torch.stack([alpha, beta], -1), generator=generator)[..., 0]
        return x.clamp(BETA_EPS, 1.0 - BETA_EPS)

    def mode(self, params):
        sa, sb = self.excess(params)
        if self.greedy == "mean":
            return (1.0 + sa) / (2.0 + sa + sb)
        total = sa + sb
        # alpha = beta = 1 in float32 (both outputs far below 0): uniform, its centre
        return torch.where(total > 0, sa / total.clamp_min(1e-30), 0.5)

    def log_prob(self, params, actions):
        alpha, beta = self.concentrations(params)
        log_norm = torch.lgamma(alpha) + torch.lgamma(beta) - torch.lgamma(alpha + beta)
        logp = (alpha - 1.0) * torch.log(actions) + (beta - 1.0) * torch.log1p(-actions) - log_norm
        return logp.sum(-1) - self.log_det

    def entropy(self, params, generator=None):
        alpha, beta = self.concentrations(params)
        total = alpha + beta
        ent = (
            torch.lgamma(alpha)
            + torch.lgamma(beta)
            - torch.lgamma(total)
            - (alpha - 1.0) * torch.digamma(alpha)
            - (beta - 1.0) * torch.digamma(beta)
            + (total - 2.0) * torch.digamma(total)
        )
        return ent.sum(-1) + self.log_det

    def to_env_units(self, actions: torch.Tensor) -> torch.Tensor:
        """Stored actions in (0, 1) -> the environment's units."""
        return self.low + self.width * actions

    def to_env(self, actions):
        mapped = torch.maximum(torch.minimum(self.to_env_units(actions), self.high), self.low)
        out = mapped.detach().cpu().numpy().reshape(len(actions), *self.space.shape)
        return out.astype(self.space.dtype, copy=False)

    def env_mean_std(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``[batch, d]`` of the action in the environment's units."""
        alpha, beta = self.concentrations(params)
        total = alpha + beta
        mean = alpha / total
        std = (alpha * beta / (total.square() * (total + 1.0))).sqrt()
        return self.to_env_units(mean), self.width * std

    def describe(self, params):
        alpha, beta = self.concentrations(params)
        mean, std = self.env_mean_std(params)
        greedy = self.to_env_units(self.mode(params))
        numpy = {"mean": mean, "std": std, "greedy": greedy, "alpha": alpha, "beta": beta}
        return {key: value.detach().cpu().numpy() for key, value in numpy.items()}


#: A parametrized choice's starting probabilities differ by at most 2 ** this (16 : 1).
MAX_PRIOR_DIMS = 4


class CompositeHead(ActionHead):
    """``Tuple`` / ``Dict`` of the simple spaces (nested too): one head per leaf.

    The distribution parameters are the leaves' parameters concatenated, the stored action the
    leaves' stored actions concatenated (in the space's own order: Tuple positions, Dict keys),
    so the rollout keeps its one float row per action. Log-probabilities and entropies are sums
    over the parts, and :meth:`to_env` rebuilds the structure the space declares (a batch: a
    tuple / dict of arrays, as Gymnasium's vector environments take it).

    The *choice* is the first ``Discrete`` leaf. With ``conditional``, every ``Box`` leaf has one
    mean per choice (a linear layer of the features and the one-hot choice): the mean used is
    that of the sampled / taken choice, and the entropy of such a part is its expectation under
    the choice's probabilities. With ``chosen_params`` the space must be *parametrized*: a
    top-level ``Tuple``/``Dict`` entry with exactly ``k`` Box entries, the i-th holding the
    parameters of choice i of the ``Discrete(k)`` choice; only the chosen choice's parameters
    count in the log-probability, and the entropy is ``H(choice) + sum_c p_c H(params_c)``.
    :func:`make_head` turns ``chosen_params`` on by default for a space with that layout
    (``composite_params=auto``): the parameters of a choice not taken had no effect on the
    return, so their log-probabilities would only add noise to the gradient and to the ratio.
    """

    def __init__(
        self,
        space: spaces.Space,
        in_features: int,
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        squash: bool = False,
        conditional: bool = False,
        chosen_params: bool = False,
        state_std: bool = False,
        normalized: bool = False,
        box_distribution: str = "gaussian",
    ):
        nn.Module.__init__(self)
        self.space = space
        leaves = action_leaves(space)
        self.paths = [path for path, _ in leaves]
        #: Each part's name: its keys / positions joined by "/" (for viewers and exports).
        self.names = ["/".join(map(str, path)) for path in self.paths]
        self.parts = nn.ModuleList(
            make_head(
                leaf,
                in_features,
                ortho_init=ortho_init,
                log_std_init=log_std_init,
                squash=squash,
                state_std=state_std,
                box_coords="normalized" if normalized else "env",
                box_distribution=box_distribution,
            )
            for _, leaf in leaves
        )
        #: Each part's parameters for one choice (a conditioned part has this many per choice).
        self.choice_param_sizes = [part.out.out_features for part in self.parts]
        discrete = [i for i, (_, leaf) in enumerate(leaves) if isinstance(leaf, spaces.Discrete)]
        self.choice: int | None = discrete[0] if discrete else None
        self.conditional = conditional
        self.chosen_params = chosen_params
        if (conditional or chosen_params) and self.choice is None:
            setting = "composite=conditional" if conditional else "composite_params=chosen"
            raise ConfigError(
                f"policy.{setting} needs a Discrete part (the choice) in the action space {space}"
            )
        self.choices = 0 if self.choice is None else int(leaves[self.choice][1].n)
        #: Which parts have one mean per choice (conditional Box parts).
        self.conditioned = [conditional and isinstance(leaf, spaces.Box) for _, leaf in leaves]
        for part, cond in zip(self.parts, self.conditioned, strict=True):
            if cond:
                size = part.out.out_features
                part.out = init_layer(nn.Linear(in_features, self.choices * size), 0.01, ortho_init)
                if isinstance(part, GaussianHead) and part.state_std:
                    with torch.no_grad():
                        part.out.bias.view(self.choices, size)[:, part.storage_dim :] = float(log_std_init)
        #: The parts holding the parameters of choice 0, 1, ... (chosen_params), else empty.
        self.group: list[int] = self._parameter_group(space, leaves) if chosen_params else []
        if self.group and ortho_init:
            self._uniform_over_the_action_set()
        self.param_sizes = [part.out.out_features for part in self.parts]
        self.storage_sizes = [part.storage_dim for part in self.parts]
        self.mask_sizes = [part.mask_size or 0 for part in self.parts]
        self.storage_dim = sum(self.storage_sizes)

    def _parameter_group(self, space: spaces.Space, leaves: list[tuple[tuple[Any, ...], spaces.Space]]):
        key = parameter_entry(space)
        if key is None:
            k = self.choices
            raise ConfigError(
                f"policy.composite_params=chosen needs a parametrized action space: a Discrete({k}) "
                f"choice and one Tuple/Dict entry of {k} Box spaces, the i-th holding the parameters "
                f"of choice i (e.g. Tuple((Discrete(3), Tuple((Box, Box, Box))))), not {space}"
            )
        return [i for i, (path, _) in enumerate(leaves) if path[:1] == (key,)]

    def _uniform_over_the_action_set(self) -> None:
        """Start the choice's probabilities in proportion to ``2 ** d`` for a choice with ``d``
        parameters, so that the first draws (choice, parameters) are about uniform over the
        whole action set as the policy first explores it (each parameter's initial Gaussian
        covers about the same width, whatever the box's units), as a uniform categorical over a
        grid of it is. Equal logits would give a choice with more parameters (a 2-d move beside
        1-d shots) the same share as one with fewer, so its larger set is explored that much
        less. Counted in dimensions, never in the boxes' own units (a power in [0, 100] beside
        an angle in [-1, 1] would otherwise start 50 : 1); at most :data:`MAX_PRIOR_DIMS`
        dimensions apart (16 : 1), so that no choice starts out of reach. Equal dimensions keep
        equal logits (the logits are centred)."""
        dims = [int(np.prod(self.parts[i].space.shape)) for i in self.group]
        low = min(dims)
        logits = torch.tensor([min(d - low, MAX_PRIOR_DIMS) * math.log(2.0) for d in dims])
        with torch.no_grad():
            self.parts[self.choice].out.bias.copy_(logits - logits.mean())

    @property
    def mask_size(self) -> int | None:
        total = sum(self.mask_sizes)
        return total or None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([part.out(features) for part in self.parts], -1)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return params.split(self.param_sizes, dim=-1)

    def _split_actions(self, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return actions.split(self.storage_sizes, dim=-1)

    def _per_choice(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """A conditioned part's parameters as ``[batch, choices, storage]``."""
        return p.reshape(p.shape[0], self.choices, self.choice_param_sizes[i])

    def _select(self, i: int, p: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
        """Part ``i``'s parameters for the given choice (``[batch, 1]`` floats) when it is conditioned."""
        if not self.conditioned[i]:
            return p
        index = choice.long().reshape(-1, 1, 1).expand(-1, 1, self.choice_param_sizes[i])
        return self._per_choice(i, p).gather(1, index).squeeze(1)

    def _order(self) -> list[int]:
        """The choice first (the others may depend on it), then the parts in the space's order."""
        rest = [i for i in range(len(self.parts)) if i != self.choice]
        return rest if self.choice is None else [self.choice, *rest]

    def _draw(self, params: torch.Tensor, pick) -> torch.Tensor:
        ps = self._split(params)
        out: list[torch.Tensor | None] = [None] * len(self.parts)
        for i in self._order():
            p = ps[i] if self.choice is None else self._select(i, ps[i], out[self.choice])
            out[i] = pick(self.parts[i], p)
        return torch.cat(out, -1)

    def sample(self, params, generator=None):
        return self._draw(params, lambda part, p: part.sample(p, generator))

    def mode(self, params):
        return self._draw(params, lambda part, p: part.mode(p))

    def log_prob(self, params, actions):
        ps, acts = self._split(params), self._split_actions(actions)
        choice = None if self.choice is None else acts[self.choice]
        logps = [
            part.log_prob(p if choice is None else self._select(i, p, choice), a)
            for i, (part, p, a) in enumerate(zip(self.parts, ps, acts, strict=True))
        ]
        total = sum(lp for i, lp in enumerate(logps) if i not in self.group)
        if self.group:
            stacked = torch.stack([logps[i] for i in self.group], -1)
            total = total + stacked.gather(-1, choice.long()).squeeze(-1)
        return total

    def _expected_entropy(self, i, p, probs, generator):
        """Entropy of a conditioned part: its expectation under the choice's probabilities."""
        per_choice = self._per_choice(i, p)
        flat = per_choice.reshape(-1, self.choice_param_sizes[i])
        ent = self.parts[i].entropy(flat, generator).reshape(p.shape[0], self.choices)
        return (probs * ent).sum(-1)

    def entropy(self, params, generator=None):
        ps = self._split(params)
        probs = None if self.choice is None else ps[self.choice].softmax(-1)
        total = 0
        group_ent = []
        for i, (part, p) in enumerate(zip(self.parts, ps, strict=True)):
            if self.group and i in self.group:
                c = self.group.index(i)
                mean = self._per_choice(i, p)[:, c] if self.conditioned[i] else p
                group_ent.append(part.entropy(mean, generator))
            elif self.conditioned[i]:
                total = total + self._expected_entropy(i, p, probs, generator)
            else:
                total = total + part.entropy(p, generator)
        if group_ent:
            total = total + (probs * torch.stack(group_ent, -1)).sum(-1)
        return total

    def _split_mask(self, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return mask.split(self.mask_sizes, dim=-1)

    def apply_mask(self, params, mask):
        if self.mask_size is None:
            return super().apply_mask(params, mask)
        out = [
            part.apply_mask(p, m) if n else p
            for part, p, m, n in zip(
                self.parts, self._split(params), self._split_mask(mask), self.mask_sizes, strict=True
            )
        ]
        return torch.cat(out, -1)

    def mask_keeps(self, mask):
        rows = mask.shape[:-1]
        out = [
            part.mask_keeps(m) if n else torch.ones((*rows, size), dtype=torch.bool, device=mask.device)
            for part, m, n, size in zip(
                self.parts, self._split_mask(mask), self.mask_sizes, self.param_sizes, strict=True
            )
        ]
        return torch.cat(out, -1)

    def _assemble(self, space: spaces.Space, values: dict[tuple[Any, ...], Any], path: tuple[Any, ...] = ()):
        if isinstance(space, spaces.Dict):
            return {key: self._assemble(sub, values, (*path, key)) for key, sub in space.spaces.items()}
        if isinstance(space, spaces.Tuple):
            return tuple(self._assemble(sub, values, (*path, i)) for i, sub in enumerate(space.spaces))
        return values[path]

    def to_env(self, actions):
        parts = [part.to_env(a) for part, a in zip(self.parts, self._split_actions(actions), strict=True)]
        return self._assemble(self.space, dict(zip(self.paths, parts, strict=True)))

    def leaves_of(self, env_actions: Any) -> list[Any]:
        """The leaves of a structured action (or batch), in the space's order."""
        out = []
        for path in self.paths:
            value = env_actions
            for key in path:
                value = value[key]
            out.append(value)
        return out

    def row(self, env_actions, i):
        rows = [np.asarray(leaf)[i] for leaf in self.leaves_of(env_actions)]
        return self._assemble(self.space, dict(zip(self.paths, rows, strict=True)))

    def history_rows(self, env_actions):
        batch = len(np.asarray(self.leaves_of(env_actions)[0]))
        return np.stack([spaces.flatten(self.space, self.row(env_actions, i)) for i in range(batch)])

    def describe(self, params):
        """Each part's description, keyed ``name.key`` (``move.probs``, ``power.mean``); a
        conditioned part's is for the most likely choice."""
        ps = self._split(params)
        choice = None if self.choice is None else self.parts[self.choice].mode(ps[self.choice])
        out: dict[str, np.ndarray] = {}
        for i, (part, name, p) in enumerate(zip(self.parts, self.names, ps, strict=True)):
            p = p if choice is None else self._select(i, p, choice)
            out.update({f"{name}.{key}": value for key, value in part.describe(p).items()})
        return out


def parameter_entry(space: spaces.Space) -> Any | None:
    """The key (Dict) or position (Tuple) of the entry of a *parametrized* action space that holds
    the parameters of each choice, or None when ``space`` does not have that layout.

    The layout (that of Platform and Goal): a top-level Tuple/Dict whose first ``Discrete(k)``
    leaf is the choice, and one top-level Tuple/Dict entry of exactly ``k`` Box spaces, the
    i-th holding the parameters of choice i. Declaring the space that way is how a user says
    which parameters belong to which choice."""
    if not isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return None
    choices = [leaf for _, leaf in action_leaves(space) if isinstance(leaf, spaces.Discrete)]
    if not choices:
        return None
    k = int(choices[0].n)
    entries = space.spaces.items() if isinstance(space, spaces.Dict) else enumerate(space.spaces)
    for key, entry in entries:
        if isinstance(entry, COMPOSITE_ACTION_SPACE_TYPES) and len(entry.spaces) == k:
            members = entry.spaces.values() if isinstance(entry, spaces.Dict) else entry.spaces
            if all(isinstance(m, spaces.Box) for m in members):
                return key
    return None


#: ``policy.box_distribution`` -> the parametrization of :class:`BetaHead`
BETA_PARAMETRIZATIONS = {"beta": "mode", "beta-softplus": "softplus"}


def composite_box_distribution(setting: str, squash: bool) -> str:
    """The distribution (``gaussian``, ``beta`` or ``beta-softplus``) of the Box parts of a
    Tuple/Dict action space for the setting ``policy.box_distribution``. ``auto`` is the Gaussian
    (measured against the Beta in docs/composite-actions.md), and the Gaussian with ``squash``
    (which names it)."""
    if setting == "auto" or squash:
        return "gaussian"
    return setting


def make_head(
    space: spaces.Space,
    in_features: int,
    *,
    ortho_init: bool = True,
    log_std_init: float = 0.0,
    squash: bool = False,
    composite: str = "independent",
    composite_params: str = "auto",
    composite_std: str = "auto",
    box_coords: str = "auto",
    box_distribution: str = "auto",
    state_std: bool = False,
) -> ActionHead:
    """The head for an action space. The only place that dispatches on the space type.

    ``composite`` (``independent`` / ``conditional``) and ``composite_params`` (``all`` /
    ``chosen`` / ``auto``: chosen when the space is parametrized, see :func:`parameter_entry`)
    shape the head of a Tuple/Dict space (:class:`CompositeHead`), and ``composite_std``
    (``fixed`` / ``state`` / ``auto``: state when only the chosen parameters count) the log-std of
    its Box parts (``state_std`` of :class:`GaussianHead`); a Box action space on its own always
    has the fixed one. ``box_coords`` (``env`` / ``normalized`` / ``auto``: normalized for the
    Box parts of a Tuple/Dict space, env for a Box action space) says in which coordinates a (not
    squashed) Gaussian's mean and std live (``normalized`` of :class:`GaussianHead`).
    ``box_distribution`` (``gaussian`` / ``beta`` / ``beta-softplus`` / ``auto``: see
    :func:`composite_box_distribution` for a Tuple/Dict space's Box parts, gaussian for a Box
    action space) picks the distribution of a Box: :class:`BetaHead` lives on the box, so
    ``squash``, ``box_coords`` and ``composite_std`` do not apply to it."""
    if (box_distribution in BETA_PARAMETRIZATIONS or box_distribution == "gaussian-censored") and squash:
        raise ConfigError(
            f"policy.box_distribution={box_distribution} and policy.squash=true both say how a Box "
            "action stays in its bounds; squash is for the Gaussian: set one of them"
        )
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        check_action_space(space)
        chosen = composite_params == "chosen" or (
            composite_params == "auto" and parameter_entry(space) is not None
        )
        return CompositeHead(
            space,
            in_features,
            ortho_init,
            log_std_init,
            squash,
            conditional=composite == "conditional",
            chosen_params=chosen,
            state_std=composite_std == "state" or (composite_std == "auto" and chosen),
            normalized=box_coords in ("auto", "normalized"),
            box_distribution=composite_box_distribution(box_distribution, squash),
        )
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(space, in_features, ortho_init)
    if isinstance(space, spaces.Box):
        if box_distribution in BETA_PARAMETRIZATIONS:
            return BetaHead(space, in_features, ortho_init, BETA_PARAMETRIZATIONS[box_distribution])
        if squash:  # tanh-squashed heads are already centred and scaled to the box
            return SquashedGaussianHead(space, in_features, ortho_init, log_std_init, state_std)
        normalized = box_coords == "normalized"
        gaussian = CensoredGaussianHead if box_distribution == "gaussian-censored" else GaussianHead
        return gaussian(space, in_features, ortho_init, log_std_init, state_std, normalized)
    if isinstance(space, spaces.MultiDiscrete):
        return MultiCategoricalHead(space, in_features, ortho_init)
    if isinstance(space, spaces.MultiBinary):
        return BernoulliHead(space, in_features, ortho_init)
    raise UnsupportedSpaceError(
        f"action space {space} is not supported; supported: {SUPPORTED_ACTION_SPACES}"
    )


__all__ = [
    "MASKED_LOGIT",
    "SUPPORTED_ACTION_SPACES",
    "ActionHead",
    "BernoulliHead",
    "BetaHead",
    "CategoricalHead",
    "CompositeHead",
    "GaussianHead",
    "MultiCategoricalHead",
    "SquashedGaussianHead",
    "check_action_space",
    "make_head",
    "parameter_entry",
]
