"""The PPO loss and its gradients written out in numpy, for MLP policies on the CPU.

On a CPU, a gradient step of a 64x64 MLP on a few hundred samples is mostly per-operation
overhead: autograd records ~45 forward operations and replays ~35 backward nodes, at several
microseconds each, and torch's elementwise kernels on such small tensors are slower than
numpy's (tanh of 256x64: ~45 us against ~6 us here). The MLP and the PPO loss have short
closed-form gradients, so this module computes the forward pass and the gradient of

``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss``

(exactly :func:`ppo_envkit.ppo.ppo_losses`, including how ``max`` and ``clamp`` pass
gradients at ties and bounds) in numpy, on views of the parameters' memory, and writes it
into each parameter's ``.grad`` for the usual torch optimizer. It covers what the presets
use: trunks of Linear layers with tanh or ReLU and heads whose
:meth:`~ppo_envkit.heads.ActionHead.analytic` is written out (categorical and plain
Gaussian), on the CPU. Anything else (:func:`supports` is False) trains through autograd;
``tests/test_fastgrad.py`` checks that both give the same losses and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .rollout import loss_advantages

Layers = list[tuple[nn.Linear, type[nn.Module]]]

_FORWARD: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda x: np.tanh(x, out=x),
    nn.ReLU: lambda x: np.maximum(x, 0.0, out=x),
}
_DERIVATIVES: dict[type[nn.Module], Callable[[np.ndarray], np.ndarray]] = {
    nn.Tanh: lambda y: 1.0 - y * y,  # in terms of the output y = tanh(x)
    nn.ReLU: lambda y: (y > 0).astype(y.dtype),
}


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


def supports(policy: nn.Module) -> bool:
    """True when :func:`ppo_gradients` and :func:`act` can run ``policy`` (else use autograd).

    Call it before a batch of calls (a rollout, an update): it also refreshes the numpy
    views of the parameters, in case their memory moved (``.to()``, ``.data = ...``).
    """
    if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in policy.parameters()):
        return False
    head = policy.head
    probe = np.zeros((1, head.out.out_features), np.float32), np.zeros((1, head.storage_dim), np.float32)
    ok = (
        head.analytic(*probe) is not None
        and _layers(policy.actor_trunk) is not None
        and _layers(policy.critic_trunk) is not None
        and type(policy.value_out) is nn.Linear
    )
    if ok:
        plan = policy.__dict__.get("_numpy_plan")
        if plan is None or plan.pointers != _pointers(policy):
            policy.__dict__["_numpy_plan"] = _Plan(policy)
    return ok


class _Dense:
    """A Linear layer's weight and bias as numpy views of the parameters' memory."""

    __slots__ = ("act", "bias", "linear", "weight")

    def __init__(self, linear: nn.Linear, act: type[nn.Module] | None = None):
        self.linear, self.act = linear, act
        self.weight = linear.weight.detach().numpy()
        self.bias = linear.bias.detach().numpy()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = _matmul(x, self.weight.T)
        out += self.bias
        return out if self.act is None else _FORWARD[self.act](out)

    def backward(self, inputs: np.ndarray, grad_out: np.ndarray, need_input: bool = True) -> Any:
        """Set the layer's gradients; return the gradient with respect to its input."""
        _set_grad(self.linear.weight, _matmul(grad_out.T, inputs))
        _set_grad(self.linear.bias, grad_out.sum(0))
        return _matmul(grad_out, self.weight) if need_input else None


class _Plan:
    """The policy's layers as :class:`_Dense` views (rebuilt if a parameter's memory moves)."""

    def __init__(self, policy: nn.Module):
        actor, critic = _layers(policy.actor_trunk), _layers(policy.critic_trunk)
        assert actor is not None and critic is not None, "check fastgrad.supports(policy) first"
        self.actor = [_Dense(linear, act) for linear, act in actor]
        self.critic = None if policy.critic_trunk is None else [_Dense(linear, act) for linear, act in critic]
        self.head, self.value = _Dense(policy.head.out), _Dense(policy.value_out)
        self.pointers = _pointers(policy)


def _pointers(policy: nn.Module) -> list[int]:
    return [p.data_ptr() for p in policy.parameters()]


def _plan(policy: nn.Module) -> _Plan:
    """The views made by the last :func:`supports` call (checking them each call would cost
    more than the forward pass of a few rows)."""
    plan = policy.__dict__.get("_numpy_plan")
    if plan is None:
        assert supports(policy), "this policy needs autograd (fastgrad.supports is False)"
        plan = policy.__dict__["_numpy_plan"]
    return plan


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``. Large products go through torch: numpy's BLAS would start threads of its own,
    which fight the other training process for the cores (torch keeps to ``run.torch_threads``);
    small ones (a row per environment copy) stay below BLAS's threading threshold and skip
    torch's call overhead."""
    if a.shape[0] * a.shape[1] * b.shape[1] <= 65536:
        return a @ b
    return torch.mm(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _set_grad(param: torch.Tensor, grad: np.ndarray) -> None:
    param.grad = torch.from_numpy(np.ascontiguousarray(grad, dtype=np.float32).reshape(param.shape))


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


@torch.no_grad()
def act(
    policy: nn.Module, obs: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`ActorCritic.act` (stored action, log-prob, value) with the MLP forward in numpy.

    Collection calls this once per environment step on a handful of rows, where module
    calls and torch's small-tensor kernels cost twice the arithmetic. Sampling and the
    log-probability stay the head's own torch code, with the same generator.
    """
    plan = _plan(policy)
    x = obs.numpy()
    features = _forward(plan.actor, x)[-1]
    critic_features = features if plan.critic is None else _forward(plan.critic, x)[-1]
    params = torch.from_numpy(plan.head(features))
    values = torch.from_numpy(plan.value(critic_features)[:, 0])
    action = policy.head.sample(params, generator)
    return action, policy.head.log_prob(params, action), values


def _max_weights(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """How ``torch.max(a, b)`` splits its gradient: all to the larger, half each on a tie."""
    tie = np.where(a == b, 0.5, 0.0).astype(a.dtype)
    return (a > b).astype(a.dtype) + tie, (b > a).astype(a.dtype) + tie


def ppo_gradients(
    policy: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    *,
    clip: float,
    vclip: float | None,
    ent_coef: float,
    vf_coef: float,
    norm_adv: bool,
    normalize_advantages: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """:func:`~ppo_envkit.ppo.ppo_losses`'s six values; the loss's gradient is left in ``.grad``."""
    plan = _plan(policy)
    x, actions_np = obs.numpy(), actions.numpy()
    old_logp, returns, old_values = old_logp.numpy(), returns.numpy(), old_values.numpy()
    n = x.shape[0]
    head = policy.head

    actor_outs = _forward(plan.actor, x)
    critic_outs = actor_outs if plan.critic is None else _forward(plan.critic, x)
    features, critic_features = actor_outs[-1], critic_outs[-1]
    params = plan.head(features)
    values = plan.value(critic_features)[:, 0]
    new_logp, entropy, head_backward = head.analytic(params, actions_np)

    # ----- the loss, as in ppo_losses
    adv = loss_advantages(advantages, norm_adv, normalize_advantages).numpy()
    log_ratio = new_logp - old_logp
    ratio = np.exp(log_ratio)
    low, high = np.float32(1.0 - clip), np.float32(1.0 + clip)
    unclipped, clipped = -adv * ratio, -adv * np.clip(ratio, low, high)
    policy_loss = np.maximum(unclipped, clipped).mean()
    err = values - returns
    if vclip is None:
        value_loss = 0.5 * (err * err).mean()
        g_values = err
    else:
        delta = values - old_values
        clipped_err = old_values + np.clip(delta, -vclip, vclip) - returns
        sq, clipped_sq = err * err, clipped_err * clipped_err
        value_loss = 0.5 * np.maximum(sq, clipped_sq).mean()
        w_plain, w_clipped = _max_weights(sq, clipped_sq)
        passes = (delta >= -vclip) & (delta <= vclip)
        g_values = w_plain * err + w_clipped * clipped_err * passes
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    clip_fraction = (np.abs(ratio - 1.0) > clip).mean()

    # ----- its gradient, back to every parameter
    w_unclipped, w_clipped = _max_weights(unclipped, clipped)
    in_range = (ratio >= low) & (ratio <= high)
    g_logp = -adv * (w_unclipped + w_clipped * in_range) * ratio / n
    g_params, head_grads = head_backward(g_logp, np.full_like(entropy, -ent_coef / n))
    g_features = plan.head.backward(features, g_params)
    g_critic = plan.value.backward(critic_features, (g_values * (vf_coef / n))[:, None])
    for name, grad in head_grads.items():
        _set_grad(getattr(head, name), grad)
    if plan.critic is None:
        _trunk_backward(plan.actor, actor_outs, g_features + g_critic)
    else:
        _trunk_backward(plan.actor, actor_outs, g_features)
        _trunk_backward(plan.critic, critic_outs, g_critic)
    metrics = np.array([policy_loss, value_loss, entropy_mean, approx_kl, clip_fraction, loss], np.float32)
    return torch.from_numpy(metrics).unbind()
