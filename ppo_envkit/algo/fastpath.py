"""The policy's forward pass and the PPO gradient written out in numpy, for MLP policies on the CPU.

On a CPU, a gradient step of a 64x64 MLP on a few hundred samples is mostly per-operation
overhead: autograd records ~45 forward operations and replays ~35 backward nodes, at several
microseconds each, and torch's elementwise kernels on such small tensors are slower than
numpy's (tanh of 256x64: ~45 us against ~6 us here). The MLP and the PPO loss have short
closed-form gradients, so this module computes the forward pass and the gradient of

``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss``

(exactly :func:`ppo_envkit.algo.losses.ppo_losses`, including how ``max`` and ``clamp``
pass gradients at ties and bounds) in numpy, on views of the parameters' memory, and
writes it into each parameter's ``.grad`` (the optimizer's flat gradient buffer).

It serves trunks of Linear layers with tanh or ReLU, and the heads registered below with
:func:`head_gradient` (categorical, multi-categorical, Bernoulli and plain Gaussian), on the
CPU. Anything else
(:meth:`NumpyBackend.supports` is False) trains through autograd: a new head or encoder
needs nothing here. :class:`NumpyBackend` is one of the two implementations of
:class:`~ppo_envkit.algo.backend.Backend`; it gathers its minibatches in numpy and hands back
torch tensors and :class:`~ppo_envkit.algo.losses.LossStats` like the other.
``tests/unit/test_fastpath.py`` checks that both give the same losses and gradients; the
docs/performance.md measures what it earns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..parallel.collectives import ADVANTAGE_EPS
from .backend import Backend
from .heads import ActionHead, BernoulliHead, CategoricalHead, GaussianHead, MultiCategoricalHead
from .losses import LossSettings, LossStats
from .policy import ActorCritic
from .recurrent import Memory
from .rollout import RolloutBuffer

if TYPE_CHECKING:
    from ..parallel.collectives import Collectives
    from .optim import FlatAdam

Layers = list[tuple[nn.Linear, type[nn.Module]]]
#: ``backward(grad wrt each row's log-prob, grad wrt each row's entropy)`` ->
#: ``(grad wrt the head's input params, {name of a head parameter: its gradient})``
Backward = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
HeadGradient = Callable[[Any, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, Backward]]

#: Products up to this many multiply-adds stay in numpy (below BLAS's threading threshold).
_NUMPY_MATMUL_LIMIT = 65536

_FORWARD: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda x: np.tanh(x, out=x),
    nn.ReLU: lambda x: np.maximum(x, 0.0, out=x),
}
_DERIVATIVES: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda y: 1.0 - y * y,  # in terms of the output y = tanh(x)
    nn.ReLU: lambda y: (y > 0).astype(y.dtype),
}

# ----------------------------------------------------------------------------- heads

_HEAD_GRADIENTS: dict[type[ActionHead], HeadGradient] = {}


def head_gradient(head_type: type[ActionHead]) -> Callable[[HeadGradient], HeadGradient]:
    """Register ``fn(head, params, actions) -> (log_prob, entropy, backward)`` for exactly
    ``head_type`` (subclasses change the distribution, so they are not covered)."""

    def register(fn: HeadGradient) -> HeadGradient:
        _HEAD_GRADIENTS[head_type] = fn
        return fn

    return register


@head_gradient(CategoricalHead)
def _categorical(head: CategoricalHead, params: np.ndarray, actions: np.ndarray):
    shifted = params - params.max(-1, keepdims=True)
    logp_all = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    probs = np.exp(logp_all)
    rows = np.arange(len(params))
    idx = actions[:, 0].astype(np.int64)
    logp = logp_all[rows, idx]
    entropy = -(probs * logp_all).sum(-1)

    def backward(g_logp, g_ent):
        # d logp / d z_j = 1[j = a] - p_j;  d H / d z_j = -p_j (log p_j + H)
        grad = probs * -(g_logp[:, None] + g_ent[:, None] * (logp_all + entropy[:, None]))
        grad[rows, idx] += g_logp
        return grad, {}

    return logp, entropy, backward


@head_gradient(MultiCategoricalHead)
def _multi_categorical(head: MultiCategoricalHead, params: np.ndarray, actions: np.ndarray):
    """Independent categoricals, one per segment of the logits: log-probabilities and
    entropies add up over the segments, and each segment's gradient is the categorical one."""
    bounds = np.cumsum([0, *head.nvec])
    parts = [
        _categorical(head, params[:, lo:hi], actions[:, i : i + 1])
        for i, (lo, hi) in enumerate(itertools.pairwise(bounds))
    ]
    logp = sum(part[0] for part in parts)
    entropy = sum(part[1] for part in parts)

    def backward(g_logp, g_ent):
        return np.concatenate([part[2](g_logp, g_ent)[0] for part in parts], axis=1), {}

    return logp, entropy, backward


@head_gradient(BernoulliHead)
def _bernoulli(head: BernoulliHead, params: np.ndarray, actions: np.ndarray):
    """Independent Bernoullis with logits ``l``: ``log p(a) = a l - softplus(l)``, summed."""
    with np.errstate(over="ignore"):  # a masked entry's logit of -1e8: exp overflows, prob is 0
        prob = 1.0 / (1.0 + np.exp(-params))
    softplus = np.logaddexp(0.0, params)
    logp = (actions * params - softplus).sum(-1)
    entropy = (softplus - params * prob).sum(-1)

    def backward(g_logp, g_ent):
        # d logp / d l = a - p;  d H / d l = -l p (1 - p)
        return g_logp[:, None] * (actions - prob) - g_ent[:, None] * params * prob * (1.0 - prob), {}

    return logp, entropy, backward


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


@head_gradient(GaussianHead)
def _gaussian(head: GaussianHead, params: np.ndarray, actions: np.ndarray):
    log_std = head.log_std.detach().numpy()
    inv_std = np.exp(-log_std)
    z = (actions - params) * inv_std
    logp = (-0.5 * z * z - log_std - np.float32(_LOG_SQRT_2PI)).sum(-1)
    entropy = np.full(len(params), (0.5 + _LOG_SQRT_2PI + log_std).sum(), dtype=params.dtype)
    if head.normalized:  # the affine map to the box: a constant, as in GaussianHead.log_prob
        logp = logp - np.float32(head.log_det)
        entropy = entropy + np.float32(head.log_det)

    def backward(g_logp, g_ent):
        # d logp / d mean = z / std;  d logp / d log_std = z^2 - 1;  d H / d log_std = 1
        g = g_logp[:, None]
        grad_log_std = (g * (z * z - 1.0)).sum(0) + g_ent.sum()
        return g * z * inv_std, {"log_std": grad_log_std}

    return logp, entropy, backward


# ----------------------------------------------------------------------------- layers


def _layers(trunk: nn.Sequential | None) -> Layers | None:
    """``[(linear, activation class)]`` for a trunk of Linear + supported activations, else None."""
    if trunk is None:
        return []
    modules = list(trunk)
    if len(modules) % 2:
        return None
    pairs = []
    for linear, act in zip(modules[::2], modules[1::2], strict=True):
        if type(linear) is not nn.Linear or type(act) not in _DERIVATIVES:
            return None
        pairs.append((linear, type(act)))
    return pairs


def _matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (into ``out`` when given). Large products go through torch: numpy's BLAS would
    start threads of its own, which fight the other training process for the cores (torch keeps
    to ``run.torch_threads``); small ones (a row per environment copy) stay below BLAS's
    threading threshold and skip torch's call overhead."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= _NUMPY_MATMUL_LIMIT:
        return np.matmul(a, b, out=out)
    target = None if out is None else torch.from_numpy(out)
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b), out=target).numpy()


def _grad_view(param: torch.Tensor) -> np.ndarray | None:
    """The parameter's gradient buffer as numpy (the optimizer's flat buffer), if it has one."""
    return param.grad.detach().numpy() if param.grad is not None else None


def _set_grad(param: torch.Tensor, grad: np.ndarray, view: np.ndarray | None = None) -> None:
    if view is not None:
        view[...] = grad.reshape(view.shape)
    else:
        param.grad = torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float32).reshape(param.shape))


class _Dense:
    """A Linear layer's weight and bias, and their gradients, as numpy views of their memory."""

    __slots__ = ("act", "bias", "bias_grad", "linear", "weight", "weight_grad")

    def __init__(self, linear: nn.Linear, act: type[nn.Module] | None = None):
        self.linear, self.act = linear, act
        self.weight = linear.weight.detach().numpy()
        self.bias = linear.bias.detach().numpy()
        self.weight_grad, self.bias_grad = _grad_view(linear.weight), _grad_view(linear.bias)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = _matmul(x, self.weight.T)
        out += self.bias
        return out if self.act is None else _FORWARD[self.act](out)

    def backward(self, inputs: np.ndarray, grad_out: np.ndarray, need_input: bool = True) -> Any:
        """Set the layer's gradients; return the gradient with respect to its input."""
        if self.weight_grad is not None and self.bias_grad is not None:  # straight into the buffer
            _matmul(grad_out.T, inputs, out=self.weight_grad)
            np.sum(grad_out, axis=0, out=self.bias_grad)
        else:
            _set_grad(self.linear.weight, _matmul(grad_out.T, inputs))
            _set_grad(self.linear.bias, grad_out.sum(0))
        return _matmul(grad_out, self.weight) if need_input else None


def _forward(layers: list[_Dense], x: np.ndarray) -> list[np.ndarray]:
    """Inputs of every layer plus the trunk's output: ``[x, h1, ..., hL]``."""
    outs = [x]
    for layer in layers:
        outs.append(layer(outs[-1]))
    return outs


def _trunk_backward(layers: list[_Dense], outs: list[np.ndarray], grad: np.ndarray) -> None:
    for i in range(len(layers) - 1, -1, -1):
        layer = layers[i]
        grad = layer.backward(outs[i], grad * _DERIVATIVES[layer.act](outs[i + 1]), need_input=i > 0)


def _mean(x: np.ndarray, dtype: Any = None) -> Any:
    """``x.mean()``, the same number, without ``np.mean``'s ~5 us of bookkeeping: the
    pairwise sum divided by the count (as ``np.mean`` does in the array's own precision)."""
    return x.sum(dtype=dtype) / x.size


def _max_weights(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How ``torch.max(a, b)`` splits its gradient: all to the larger, half each on a tie."""
    tie = np.where(a == b, 0.5, 0.0).astype(a.dtype)
    return (a > b).astype(a.dtype) + tie, (b > a).astype(a.dtype) + tie


def _local_normalize(advantages: np.ndarray) -> np.ndarray:
    """The minibatch's own mean and (unbiased) std, as ``SingleProcess.normalize_advantages``."""
    if advantages.size > 1:
        return (advantages - advantages.mean()) / (advantages.std(ddof=1) + np.float32(ADVANTAGE_EPS))
    return advantages


def _normalizer(collectives: Collectives) -> Callable[[np.ndarray], np.ndarray]:
    """``collectives.normalize_advantages`` for numpy arrays: the same formulas, in numpy (no torch
    call per step), with the combined moments summed over the ranks by ``collectives.sum``."""
    if not collectives.pools_advantages:
        return _local_normalize

    def pooled(advantages: np.ndarray) -> np.ndarray:
        local = np.array(
            [advantages.sum(), np.dot(advantages, advantages), advantages.size], advantages.dtype
        )
        total, total_sq, count = collectives.sum(torch.from_numpy(local)).numpy()
        mean = total / count
        std = np.sqrt(max((total_sq - count * mean * mean) / max(count - 1, 1), 0))
        return (advantages - mean) / (std + advantages.dtype.type(ADVANTAGE_EPS))

    return pooled


# ----------------------------------------------------------------------------- the policy


class NumpyBackend(Backend):
    """An :class:`ActorCritic`'s layers as numpy views of its parameters, with the PPO gradient.

    The views follow in-place updates (the optimizer's); :meth:`is_current` says whether a
    parameter's memory has moved since (``.to()``, ``load_state_dict`` with ``assign``, ``.data =
    ...``, the optimizer's flat buffer), after which a new one must be built.
    """

    def __init__(self, policy: ActorCritic):
        actor, critic = _layers(policy.actor_trunk), _layers(policy.critic_trunk)
        assert actor is not None and critic is not None, "check NumpyBackend.supports(policy) first"
        self.policy = policy
        self.actor = [_Dense(linear, act) for linear, act in actor]
        self.critic = None if policy.critic_trunk is None else [_Dense(linear, act) for linear, act in critic]
        self.head, self.value = _Dense(policy.head.out), _Dense(policy.value_out)
        self.head_gradient = _HEAD_GRADIENTS[type(policy.head)]
        self.head_grads = {name: _grad_view(p) for name, p in policy.head.named_parameters(recurse=False)}
        self.pointers = _pointers(policy)

    @staticmethod
    def supports(policy: ActorCritic) -> bool:
        """Whether this module can run ``policy`` (else use autograd)."""
        return (
            all(p.device.type == "cpu" and p.dtype == torch.float32 for p in policy.parameters())
            and type(policy.head) in _HEAD_GRADIENTS
            and _layers(policy.actor_trunk) is not None
            and _layers(policy.critic_trunk) is not None
            and type(policy.value_out) is nn.Linear
            and policy.encoder is None
            and policy.core is None
        )

    def is_current(self) -> bool:
        """Whether the views still point at the policy's parameters and gradient buffers."""
        return self.pointers == _pointers(self.policy)

    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        generator: torch.Generator | None = None,
        masks: torch.Tensor | None = None,
        memory: Memory | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`ActorCritic.act`'s (stored action, log-prob, value) with the MLP forward in numpy.

        Collection calls this once per environment step on a handful of rows, where module
        calls and torch's small-tensor kernels cost twice the arithmetic. Sampling and the
        log-probability stay the head's own torch code, with the same generator.
        """
        x = obs.numpy()
        features = _forward(self.actor, x)[-1]
        critic_features = features if self.critic is None else _forward(self.critic, x)[-1]
        params = torch.from_numpy(self.head(features))
        values = torch.from_numpy(self.value(critic_features)[:, 0])
        head = self.policy.head
        if masks is not None:
            params = head.apply_mask(params, masks)
        action = head.sample(params, generator)
        return action, head.log_prob(params, action), values

    def gradients(
        self,
        rollout: RolloutBuffer,
        rows: torch.Tensor,
        settings: LossSettings,
        collectives: Collectives,
        generator: torch.Generator,
        optimizer: FlatAdam,
    ) -> LossStats:
        """:func:`~ppo_envkit.algo.losses.ppo_losses`'s values; the loss's gradient is left in the
        parameters' ``.grad`` (views of ``optimizer.grad``). The rows are gathered in numpy."""
        batch = np.take(rollout.packed.numpy(), rows.numpy(), axis=0)
        c = rollout.columns
        masks = batch[:, c.masks] > 0.5 if c.masks is not None else None
        return self.ppo_gradients(
            batch[:, c.obs],
            batch[:, c.actions],
            batch[:, c.old_logprobs],
            batch[:, c.advantages],
            batch[:, c.returns],
            batch[:, c.old_values],
            masks,
            settings,
            _normalizer(collectives),
        )

    def ppo_gradients(
        self,
        x: np.ndarray,
        actions_np: np.ndarray,
        old_logp: np.ndarray,
        advantages: np.ndarray,
        returns: np.ndarray,
        old_values: np.ndarray,
        masks: np.ndarray | None,
        settings: LossSettings,
        normalize: Callable[[np.ndarray], np.ndarray],
    ) -> LossStats:
        """The loss of one minibatch given as arrays; its gradient is left in ``.grad``."""
        n = x.shape[0]
        head = self.policy.head
        clip, vclip, ent_coef, vf_coef = settings.clip, settings.vclip, settings.ent_coef, settings.vf_coef

        actor_outs = _forward(self.actor, x)
        critic_outs = actor_outs if self.critic is None else _forward(self.critic, x)
        features, critic_features = actor_outs[-1], critic_outs[-1]
        params = self.head(features)
        keeps = None
        if masks is not None:  # the head's own masking; masked parameters get no gradient
            masks_t = torch.from_numpy(masks)
            params = head.apply_mask(torch.from_numpy(params), masks_t).numpy()
            keeps = head.mask_keeps(masks_t).numpy()
        values = self.value(critic_features)[:, 0]
        new_logp, entropy, head_backward = self.head_gradient(head, params, actions_np)

        # ----- the loss, as in ppo_losses
        adv = normalize(advantages) if settings.norm_adv else advantages
        log_ratio = new_logp - old_logp
        ratio = np.exp(log_ratio)
        low, high = np.float32(1.0 - clip), np.float32(1.0 + clip)
        unclipped, clipped = -adv * ratio, -adv * np.clip(ratio, low, high)
        policy_loss = _mean(np.maximum(unclipped, clipped))
        err = values - returns
        if vclip is None:
            value_loss = 0.5 * _mean(err * err)
            g_values = err
        else:
            delta = values - old_values
            clipped_err = old_values + np.clip(delta, -vclip, vclip) - returns
            sq, clipped_sq = err * err, clipped_err * clipped_err
            value_loss = 0.5 * _mean(np.maximum(sq, clipped_sq))
            w_plain, w_clipped = _max_weights(sq, clipped_sq)
            passes = (delta >= -vclip) & (delta <= vclip)
            g_values = w_plain * err + w_clipped * clipped_err * passes
        entropy_mean = _mean(entropy)
        loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
        approx_kl = _mean((ratio - 1.0) - log_ratio)
        clip_fraction = _mean(np.abs(ratio - 1.0) > clip, np.float32)

        # ----- its gradient, back to every parameter
        w_unclipped, w_clipped = _max_weights(unclipped, clipped)
        in_range = (ratio >= low) & (ratio <= high)
        g_logp = -adv * (w_unclipped + w_clipped * in_range) * ratio / n
        g_params, head_grads = head_backward(g_logp, np.full_like(entropy, -ent_coef / n))
        if keeps is not None:
            g_params = np.where(keeps, g_params, np.float32(0.0))
        g_features = self.head.backward(features, g_params)
        g_critic = self.value.backward(critic_features, (g_values * (vf_coef / n))[:, None])
        for name, grad in head_grads.items():
            _set_grad(getattr(head, name), grad, self.head_grads.get(name))
        if self.critic is None:
            _trunk_backward(self.actor, actor_outs, g_features + g_critic)
        else:
            _trunk_backward(self.actor, actor_outs, g_features)
            _trunk_backward(self.critic, critic_outs, g_critic)
        return LossStats(
            *(float(v) for v in (policy_loss, value_loss, entropy_mean, approx_kl, clip_fraction, loss))
        )


def _pointers(policy: nn.Module) -> list[int]:
    """Where the parameters and their gradient buffers live (the views must follow them)."""
    return [p.data_ptr() for p in policy.parameters()] + [
        p.grad.data_ptr() if p.grad is not None else 0 for p in policy.parameters()
    ]


__all__ = ["NumpyBackend", "head_gradient"]
