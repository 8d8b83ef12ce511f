"""How the ranks of one training run combine tensors: the ``Collectives`` interface.

Data-parallel PPO runs the same learner in several ranks. Each rank steps its own
environment copies and computes gradients on its share of every minibatch; a few
collective operations keep them identical:

* gradients, the loss and approx-KL are averaged (:meth:`Collectives.average_gradients`);
* advantages are normalized with the moments of the combined minibatch;
* observation statistics and reward-scaling returns are gathered from every rank;
* rank 0 decides when to stop, and at the end the ranks check they hold the same weights.

Every operation is built from three primitives (:meth:`all_reduce`, :meth:`broadcast`,
:meth:`gather_rows`), so a new transport implements those three. The implementations:

* :class:`SingleProcess` (size 1, the default): every operation is the identity, with
  the classic per-minibatch advantage normalization;
* :class:`~ppo_envkit.parallel.torchrun.TorchDistributed`: ``torch.distributed``
  (gloo/NCCL) for ranks started by ``torchrun`` on one or many machines: the reference;
* :class:`~ppo_envkit.parallel.shm.SharedMemoryCollectives`: ranks forked on one
  machine by ``run.processes``, exchanging through shared memory in microseconds.

The training code receives one of these and never asks how many ranks there are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import torch

ReduceOp = Literal["sum", "min", "max"]
#: One rank's resumable state: (JSON-ready part, tensors).
RankState = tuple[dict[str, Any], dict[str, torch.Tensor]]

#: Added to the standard deviation when normalizing advantages (as SB3 and CleanRL do).
ADVANTAGE_EPS = 1e-8


class Collectives(ABC):
    """Collective operations over the ranks of one training run (``rank`` of ``size``)."""

    rank: int
    size: int
    #: Whether advantages are normalized with the moments of every rank's minibatch combined
    #: (sum, sum of squares and count, summed over the ranks); False: with the minibatch's own
    #: mean and std. (A backend that normalizes in its own array type follows this.)
    pools_advantages: bool = True

    # ------------------------------------------------------------------ primitives

    @abstractmethod
    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        """Combine ``tensor`` element-wise over ranks, in place (identical result on every rank)."""

    @abstractmethod
    def broadcast(self, tensor: torch.Tensor) -> None:
        """Give every rank rank 0's values of ``tensor``, in place."""

    @abstractmethod
    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``[n, ...]`` tensor concatenated in rank order (same ``n`` on all ranks)."""

    # ------------------------------------------------------------------ built on them

    def broadcast_all(self, tensors: Iterable[torch.Tensor]) -> None:
        """Rank 0's values of every tensor, on every rank (in place)."""
        with torch.no_grad():
            for tensor in tensors:
                self.broadcast(tensor)

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum of ``values`` over ranks (a new tensor)."""
        return self.all_reduce(values.clone())

    def average_gradients(self, grads_and_extras: torch.Tensor, values: Sequence[float]) -> tuple[float, ...]:
        """Average a flat gradient buffer and the numbers in ``values`` over ranks, in one call.

        ``grads_and_extras`` ends in ``len(values)`` spare slots, which carry the values (so the
        averages come back in the buffer's precision)."""
        with torch.no_grad():
            n = len(values)
            grads_and_extras[-n:] = torch.tensor([float(v) for v in values], dtype=grads_and_extras.dtype)
            self.all_reduce(grads_and_extras)
            grads_and_extras /= self.size
        return tuple(grads_and_extras[-n:].tolist())

    def normalize_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        """Normalize with the mean and std of the combined minibatch of all ranks."""
        moments = torch.stack(
            [advantages.sum(), advantages.square().sum(), advantages.new_tensor(advantages.numel())]
        )
        total, total_sq, count = self.sum(moments.detach())
        mean = total / count
        std = ((total_sq - count * mean.square()) / (count - 1).clamp_min(1)).clamp_min(0).sqrt()
        return (advantages - mean) / (std + ADVANTAGE_EPS)

    def rank0_decides(self, flag: bool) -> bool:
        """Rank 0's ``flag`` on every rank (e.g. a callback's request to stop training)."""
        value = torch.tensor([float(flag)], dtype=torch.float64)
        self.broadcast(value)
        return bool(value[0])

    def weights_identical(self, module: torch.nn.Module) -> bool:
        """True when every rank holds bit-identical parameters and buffers."""
        flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in module.state_dict().values()])
        low = self.all_reduce(flat.clone(), "min")
        high = self.all_reduce(flat.clone(), "max")
        return bool(torch.equal(low, high))

    # ------------------------------------------------------------------ resumable rank states

    def post_state(self, boundary: int, state: Callable[[], RankState]) -> None:
        """A rank other than 0: make ``state()`` (its episodes and random stream at iteration
        ``boundary``) readable by rank 0 at any moment, for a checkpoint. Only ranks that rank 0
        can read without a collective (forked ranks) do it; elsewhere nothing happens."""
        return None

    def other_states(self, boundary: int) -> dict[int, RankState]:
        """Rank 0: the states the other ranks posted at ``boundary`` (see :meth:`post_state`)."""
        return {}


class SingleProcess(Collectives):
    """One rank: every collective is the identity (the default)."""

    rank, size = 0, 1
    pools_advantages = False

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> None:
        pass

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def average_gradients(self, grads_and_extras: torch.Tensor, values: Sequence[float]) -> tuple[float, ...]:
        return tuple(values)

    def normalize_advantages(self, advantages: torch.Tensor) -> torch.Tensor:
        """The minibatch's own mean and (unbiased) std; a single sample is left as it is."""
        if advantages.numel() > 1:
            return (advantages - advantages.mean()) / (advantages.std() + ADVANTAGE_EPS)
        return advantages

    def rank0_decides(self, flag: bool) -> bool:
        return flag

    def weights_identical(self, module: torch.nn.Module) -> bool:
        return True


__all__ = ["ADVANTAGE_EPS", "Collectives", "RankState", "SingleProcess"]
