"""``FlatAdam``: Adam and the global gradient-norm clip over one flat buffer of parameters.

Why not ``torch.optim.Adam``: PPO on small networks takes many small steps (SB3's settings:
15,000 per 100,000 environment steps), and per step ``torch.optim.Adam(fused=True)`` plus
``clip_grad_norm_`` cost ~140 us of Python and per-parameter bookkeeping, a quarter of a
64-sample gradient step here; and creating any ``torch.optim`` optimizer imports
``torch._dynamo`` (0.8 s per process). With every parameter a view into one flat tensor
(and every gradient a view into another), the clip is one norm and one multiply, and
Adam is five whole-buffer operations: ~37 us per step, and no import (docs/performance.md).

The arithmetic is Adam's (Kingma & Ba; torch's default, non-AMSGrad form): ``m = b1 m +
(1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, ``p -= lr / (1 - b1^t) * m / (sqrt(v) /
sqrt(1 - b2^t) + eps)``; ``tests/unit/test_optim.py`` compares it with ``torch.optim.Adam``
and ``clip_grad_norm_``. Its state dict has ``torch.optim.Adam``'s layout, so checkpoints
are unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

#: Added to the gradient norm before dividing, as torch.nn.utils.clip_grad_norm_ does.
CLIP_EPS = 1e-6


class FlatAdam:
    """Adam over every parameter of ``module``, which become views into one flat buffer."""

    def __init__(self, module: nn.Module, lr: float, eps: float, betas: tuple[float, float] = (0.9, 0.999)):
        self.params = [p for p in module.parameters() if p.requires_grad]
        first = self.params[0]
        total = sum(p.numel() for p in self.params)
        self.data = torch.empty(total, dtype=first.dtype, device=first.device)
        # two spare slots after the gradients: collectives average them with the gradients
        self._grad_and_extras = torch.zeros(total + 2, dtype=first.dtype, device=first.device)
        self.grad = self._grad_and_extras[:total]
        self.exp_avg = torch.zeros_like(self.data)
        self.exp_avg_sq = torch.zeros_like(self.data)
        self._step = torch.zeros((), dtype=torch.float32)
        self._denominator = torch.empty_like(self.data)
        self.slices: list[slice] = []
        offset = 0
        with torch.no_grad():
            for p in self.params:
                part = slice(offset, offset + p.numel())
                self.data[part].copy_(p.reshape(-1))
                p.data = self.data[part].view_as(p)
                p.grad = self.grad[part].view_as(p)
                self.slices.append(part)
                offset += p.numel()
        self.param_groups = [
            {"lr": lr, "betas": betas, "eps": eps, "weight_decay": 0.0, "amsgrad": False, "maximize": False}
        ]
        self.state = {  # per parameter, views of the flat state (as torch.optim.Adam's ``state``)
            p: {
                "step": self._step,
                "exp_avg": self._view(self.exp_avg, i),
                "exp_avg_sq": self._view(self.exp_avg_sq, i),
            }
            for i, p in enumerate(self.params)
        }

    def _view(self, flat: torch.Tensor, index: int) -> torch.Tensor:
        return flat[self.slices[index]].view_as(self.params[index])

    @property
    def grad_and_extras(self) -> torch.Tensor:
        """The gradients followed by two spare slots (for values averaged with them)."""
        return self._grad_and_extras

    @torch.no_grad()
    def set_grads(self, grads: Sequence[torch.Tensor | None]) -> None:
        """Gradients computed elsewhere (``torch.autograd.grad``); None counts as zero."""
        for part, grad in zip(self.slices, grads, strict=True):
            if grad is None:
                self.grad[part].zero_()
            else:
                self.grad[part].copy_(grad.reshape(-1))

    @torch.no_grad()
    def clip_grad_norm(self, max_norm: float) -> torch.Tensor:
        """Scale the gradients so that their global 2-norm is at most ``max_norm``."""
        norm = torch.linalg.vector_norm(self.grad)
        self.grad.mul_(torch.clamp(max_norm / (norm + CLIP_EPS), max=1.0))
        return norm

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        self._step += 1
        t = float(self._step)
        self.exp_avg.lerp_(self.grad, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1.0 - beta2)
        denominator = torch.sqrt(self.exp_avg_sq, out=self._denominator)
        denominator.div_((1.0 - beta2**t) ** 0.5).add_(eps)
        self.data.addcdiv_(self.exp_avg, denominator, value=-lr / (1.0 - beta1**t))

    # ------------------------------------------------------------------ torch.optim's state dict layout

    def state_dict(self) -> dict[str, Any]:
        state = (
            {
                i: {
                    "step": self._step.clone(),
                    "exp_avg": self._view(self.exp_avg, i).clone(),
                    "exp_avg_sq": self._view(self.exp_avg_sq, i).clone(),
                }
                for i in range(len(self.params))
            }
            if float(self._step) > 0
            else {}
        )
        return {
            "state": state,
            "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}],
        }

    @torch.no_grad()
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        group = state_dict["param_groups"][0]
        for key in ("lr", "betas", "eps"):
            if key in group:
                self.param_groups[0][key] = tuple(group[key]) if key == "betas" else group[key]
        state = state_dict["state"]
        self._step.zero_()
        self.exp_avg.zero_()
        self.exp_avg_sq.zero_()
        for i, entry in ((int(k), v) for k, v in state.items()):
            self._view(self.exp_avg, i).copy_(entry["exp_avg"])
            self._view(self.exp_avg_sq, i).copy_(entry["exp_avg_sq"])
            self._step.fill_(float(entry["step"]))


# ---------------------------------------------------------------------- in a checkpoint


def optimizer_state(optimizer: FlatAdam) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The optimizer's state dict as (JSON-ready part, tensors), as a checkpoint stores it:
    ``optim.{param}.{key}`` tensors, and the param groups and non-tensor values in the JSON."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return {"param_groups": sd["param_groups"], "scalars": scalars}, tensors


def load_optimizer_state(optimizer: FlatAdam, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Restore :func:`optimizer_state` (tensors not named ``optim.*`` are ignored)."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            state.setdefault(int(pid), {})[key] = value
    for pid, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


__all__ = ["FlatAdam", "load_optimizer_state", "optimizer_state"]
