"""Running statistics for observation normalization and reward scaling.

They are ``nn.Module`` buffers so that they travel with the policy's state dict:
saved in the agent file, restored for eval, predict and replay, and never
silently replaced by fresh statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn


class RunningMeanStd(nn.Module):
    """Mean and variance over all samples seen, merged batch by batch (Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # A tiny prior count keeps the first update finite, as in SB3 and CleanRL.
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))
        self._arrays: tuple[int, tuple[np.ndarray, ...]] | None = None  # see cpu_arrays

    def update(self, batch: torch.Tensor) -> None:
        # Called once per environment step: on the CPU the arithmetic runs in numpy, in place
        # on the buffers' memory, which costs a fraction of the equivalent small torch ops.
        shape = (-1, *self.mean.shape)
        arrays = self.cpu_arrays()
        if batch.device.type == "cpu" and arrays is not None:
            self._merge(batch.detach().numpy().reshape(shape).astype(np.float64), *arrays)
        else:
            with torch.no_grad():
                self._merge(batch.reshape(shape).to(torch.float64), self.mean, self.var, self.count)

    def cpu_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Numpy views of (mean, var, count) when they live on the CPU (cached: views cost ~1 us each)."""
        cached = self._arrays
        if cached is None or cached[0] != self.mean.data_ptr():
            if self.mean.device.type != "cpu":
                return None
            views = (self.mean.numpy(), self.var.numpy(), self.count.numpy())
            cached = self._arrays = (self.mean.data_ptr(), views)
        return cached[1]

    def moments(self) -> torch.Tensor:
        """``[mean..., var..., count]`` as one float64 vector (to send to other ranks)."""
        return torch.cat([self.mean.reshape(-1), self.var.reshape(-1), self.count.reshape(1)])

    @torch.no_grad()
    def set_merged(self, base: torch.Tensor, parts: torch.Tensor) -> None:
        """Set the statistics to ``base`` merged with every row of ``parts`` in order (all in the
        :meth:`moments` layout): the statistics of every sample behind them, whatever the order."""
        d = self.mean.numel()
        mean, var, count = self.mean.view(-1), self.var.view(-1), self.count
        mean.copy_(base[:d])
        var.copy_(base[d : 2 * d])
        count.copy_(base[2 * d])
        for part in parts:
            if part[2 * d] > 0:
                self._combine(mean, var, count, part[:d], part[d : 2 * d], part[2 * d])

    @staticmethod
    def _merge(batch: Any, mean: Any, var: Any, count: Any) -> None:
        """Merge a float64 batch into ``mean``, ``var`` and ``count``, in place (numpy arrays or
        torch tensors alike)."""
        n = batch.shape[0]
        if n == 0:
            return
        batch_mean = batch.mean(0)
        RunningMeanStd._combine(mean, var, count, batch_mean, ((batch - batch_mean) ** 2).mean(0), n)

    @staticmethod
    def _combine(mean: Any, var: Any, count: Any, other_mean: Any, other_var: Any, n: Any) -> None:
        """Chan et al.: merge the moments of ``n`` other samples into ``mean``, ``var``, ``count``,
        in place (numpy arrays or torch tensors alike)."""
        delta = other_mean - mean
        total = count + n
        weight = n / total
        # m2 / total with m2 = var * count + other_var * n + delta^2 * count * n / total
        var[...] = (var * count + other_var * n) / total + delta * delta * (count * weight / total)
        mean += delta * weight
        count[...] = total


class ObsNormalizer(nn.Module):
    """``clip((x - mean) / sqrt(var + eps))`` on the continuous columns of flat observations."""

    def __init__(self, dim: int, mask: torch.Tensor, clip: float, enabled: bool, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.clip = clip
        self.eps = eps
        self.rms = RunningMeanStd((dim,))
        self.register_buffer("mask", mask.to(torch.bool), persistent=False)
        self.register_buffer("_scale", torch.ones(dim), persistent=False)
        self.register_buffer("_shift", torch.zeros(dim), persistent=False)
        self._all_columns = bool(mask.all())
        self.refresh()
        # Loaded statistics must take effect at once (eval and replay use them).
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh())

    def refresh(self) -> None:
        """Recompute the float32 affine map from the float64 statistics (identity outside the mask)."""
        arrays = self.rms.cpu_arrays()
        if self._scale.device.type == "cpu" and arrays is not None:
            mean, var, _ = arrays
            scale, shift = self._scale.numpy(), self._shift.numpy()
            if self._all_columns:
                scale[...] = 1.0 / np.sqrt(var + self.eps)
                shift[...] = mean
            else:
                mask = self.mask.numpy()
                scale[mask] = 1.0 / np.sqrt(var[mask] + self.eps)
                shift[mask] = mean[mask]
            return
        with torch.no_grad():
            scale = torch.rsqrt(self.rms.var + self.eps).to(torch.float32)
            self._scale.copy_(torch.where(self.mask, scale, torch.ones_like(scale)))
            self._shift.copy_(
                torch.where(self.mask, self.rms.mean.to(torch.float32), torch.zeros_like(scale))
            )

    def update(self, obs: torch.Tensor) -> None:
        if self.enabled:
            self.rms.update(obs)
            self.refresh()

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return obs
        out = (obs - self._shift) * self._scale
        if self._all_columns:
            return out.clamp_(-self.clip, self.clip)
        # Columns left unnormalized (one-hot codes, image pixels) keep their values.
        return torch.where(self.mask, out.clamp(-self.clip, self.clip), out)


class RewardScaler(nn.Module):
    """Divides rewards by the running std of the discounted return, then clips.

    The per-environment discounted return is state of the rollout, not of the
    agent; the trainer keeps it and passes it in.
    """

    def __init__(self, gamma: float, clip: float, enabled: bool, eps: float = 1e-8):
        super().__init__()
        self.enabled = enabled
        self.gamma = gamma
        self.clip = clip
        self.eps = eps
        self.rms = RunningMeanStd(())

    @torch.no_grad()
    def __call__(
        self,
        rewards: torch.Tensor,
        returns: torch.Tensor,
        dones: torch.Tensor,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scale ``rewards`` (one per env); updates ``returns`` in place and resets it at ``dones``.

        ``gather`` combines the returns of all ranks before the statistics update. ``valid``
        (several agents: the rows of live agents) keeps padding rows out of the statistics.
        """
        if not self.enabled:
            return rewards
        returns.mul_(self.gamma).add_(rewards)
        if valid is None:
            self.rms.update(returns if gather is None else gather(returns))
        else:  # gathered with their flags (every rank has as many rows), then the live ones
            both = torch.stack([returns, valid.to(returns.dtype)], 1)
            both = both if gather is None else gather(both)
            live = both[both[:, 1] > 0.5, 0]
            if live.numel():
                self.rms.update(live)
        returns.masked_fill_(dones, 0.0)
        scale = torch.rsqrt(self.rms.var + self.eps).to(rewards.dtype)
        return (rewards * scale).clamp_(-self.clip, self.clip)
