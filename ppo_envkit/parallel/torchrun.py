"""Data-parallel training over ``torch.distributed``, for ranks launched by ``torchrun``.

``torchrun --nproc-per-node 2 -m ppo_envkit train CartPole-v1 ...`` starts two ranks.
Each rank owns ``env.num_envs`` environment copies (seeded after the other ranks'
copies), collects its share of the rollout and computes gradients on its share of
each minibatch (``ppo.minibatch_size`` is the combined size). Rank 0 logs and saves.
This is the reference implementation of :class:`~ppo_envkit.parallel.collectives.Collectives`.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from . import launched_by_torchrun
from .collectives import Collectives, ReduceOp

_OPS = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}


def backend() -> str:
    """gloo for CPU tensors; NCCL for GPU tensors when every local rank has a GPU of its own.

    NCCL refuses two ranks on one GPU, so with fewer GPUs than local ranks the GPU tensors go
    through gloo too. ``PPO_ENVKIT_BACKEND`` overrides the choice (any ``init_process_group`` backend).
    """
    forced = os.environ.get("PPO_ENVKIT_BACKEND")
    if forced:
        return forced
    local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_ranks:
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def world() -> tuple[int, int]:
    """(rank, world size) of a torchrun launch, joining its process group once; (0, 1) otherwise."""
    if not launched_by_torchrun():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend=backend())
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    """Leave the process group (so that ranks exit cleanly); nothing to do outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class TorchDistributed(Collectives):
    """The ranks of a ``torchrun`` launch (joins the process group on construction)."""

    def __init__(self) -> None:
        self.rank, self.size = world()

    def all_reduce(self, tensor: torch.Tensor, op: ReduceOp = "sum") -> torch.Tensor:
        dist.all_reduce(tensor, op=_OPS[op])
        return tensor

    def broadcast(self, tensor: torch.Tensor) -> None:
        dist.broadcast(tensor, src=0)

    def gather_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, 0)


__all__ = ["TorchDistributed", "backend", "launched_by_torchrun", "shutdown", "world"]
