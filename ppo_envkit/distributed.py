"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node 2 -m ppo_envkit train CartPole-v1 ...`` starts two
ranks. Each rank owns ``env.num_envs`` environment copies (seeded after the other
ranks' copies), collects its share of the rollout and computes gradients on its
share of each minibatch (``ppo.minibatch_size`` is the combined size). Gradients,
the loss, approx-KL, advantage statistics and normalization statistics are
combined across ranks, so every rank takes the same step and the run equals one
learner with ``world_size * num_envs`` copies. Rank 0 logs and saves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size), initializing the process group from torchrun's variables once."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend=backend())
    return dist.get_rank(), dist.get_world_size()


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


def is_main() -> bool:
    return world()[0] == 0


def shutdown() -> None:
    """Leave the process group (so that ranks exit cleanly)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    for tensor in module.state_dict().values():
        dist.broadcast(tensor, src=0)


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``[n, ...]`` tensor in rank order (same n on all ranks)."""
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)


def average_gradients(params: Iterable[torch.nn.Parameter], extras: torch.Tensor) -> torch.Tensor:
    """Average the gradients of ``params`` and the values in ``extras`` across ranks, in one call."""
    params = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [extras.reshape(-1).to(params[0].grad.dtype)])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return flat[offset:]


def sum_across(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over ranks (a new tensor)."""
    out = values.clone()
    dist.all_reduce(out)
    return out


def weights_identical(module: torch.nn.Module) -> bool:
    """True when every rank holds bit-identical parameters and buffers."""
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in module.state_dict().values()])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))
