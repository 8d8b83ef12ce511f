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

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from ..environments.masks import MASKABLE_ACTION_SPACES, mask_size
from ..errors import ActionMaskError
from ..spaces import SUPPORTED_ACTION_SPACES, UnsupportedSpaceError, check_action_space

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


class GaussianHead(ActionHead):
    """``Box``: diagonal Gaussian with a state-independent learned log-std.

    The stored action is the raw sample; :meth:`to_env` clips it to the bounds.
    """

    def __init__(
        self, space: spaces.Box, in_features: int, ortho_init: bool = True, log_std_init: float = 0.0
    ):
        self.storage_dim = int(np.prod(space.shape))
        super().__init__(space, in_features, self.storage_dim, ortho_init)
        self.log_std = nn.Parameter(torch.full((self.storage_dim,), float(log_std_init)))
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32), persistent=False)

    def sample(self, params, generator=None):
        noise = torch.randn(params.shape, generator=generator, device=params.device)
        return params + self.log_std.exp() * noise

    def mode(self, params):
        return params

    def log_prob(self, params, actions):
        z = (actions - params) * torch.exp(-self.log_std)
        return (-0.5 * z.square() - self.log_std - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, params, generator=None):
        return (0.5 + _LOG_SQRT_2PI + self.log_std).sum().expand(params.shape[0])

    def to_env(self, actions):
        clipped = torch.maximum(torch.minimum(actions, self.high), self.low)
        out = clipped.detach().cpu().numpy().reshape(-1, *self.space.shape)
        return out.astype(self.space.dtype, copy=False)

    def describe(self, params):
        std = self.log_std.exp().expand_as(params)
        return {"mean": params.detach().cpu().numpy(), "std": std.detach().cpu().numpy()}


class SquashedGaussianHead(GaussianHead):
    """``Box`` with finite bounds: ``a = low + (tanh(u) + 1) / 2 * (high - low)``, u Gaussian.

    The stored action is ``u``; the log-probability is that of ``a``, including the
    log-determinant of the tanh and the affine rescaling. Its entropy has no closed
    form, so :meth:`entropy` returns the single-sample reparameterized estimate
    ``-log p(a)``, which is unbiased and carries the right gradient.
    """

    def __init__(
        self, space: spaces.Box, in_features: int, ortho_init: bool = True, log_std_init: float = 0.0
    ):
        super().__init__(space, in_features, ortho_init, log_std_init)
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
        noise = torch.randn(params.shape, generator=generator, device=params.device)
        u = params + self.log_std.exp() * noise
        return -self.log_prob(params, u)

    def squash(self, u: torch.Tensor) -> torch.Tensor:
        return self.low + (torch.tanh(u) + 1.0) * 0.5 * (self.high - self.low)

    def to_env(self, actions):
        # Clamp guards against tanh rounding to exactly +-1 and floating error at the bounds.
        squashed = torch.maximum(torch.minimum(self.squash(actions), self.high), self.low)
        out = squashed.detach().cpu().numpy().reshape(-1, *self.space.shape)
        return out.astype(self.space.dtype, copy=False)

    def describe(self, params):
        out = super().describe(params)
        out["mean"] = self.squash(params).detach().cpu().numpy()
        return out


def make_head(
    space: spaces.Space,
    in_features: int,
    *,
    ortho_init: bool = True,
    log_std_init: float = 0.0,
    squash: bool = False,
) -> ActionHead:
    """The head for an action space. The only place that dispatches on the space type."""
    if isinstance(space, spaces.Discrete):
        return CategoricalHead(space, in_features, ortho_init)
    if isinstance(space, spaces.Box):
        cls = SquashedGaussianHead if squash else GaussianHead
        return cls(space, in_features, ortho_init, log_std_init)
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
    "CategoricalHead",
    "GaussianHead",
    "MultiCategoricalHead",
    "SquashedGaussianHead",
    "check_action_space",
    "make_head",
]
