"""Data-parallel training with ``torch.distributed``, launched by ``torchrun``.

``torchrun --nproc-per-node 2 -m ppo_envkit train CartPole-v1 ...`` starts two
ranks. Each rank owns ``env.num_envs`` environment copies (seeded after the other
ranks' copies), collects its share of the rollout and computes gradients on its
share of each minibatch (``ppo.minibatch_size`` is the combined size). Gradients,
the loss, approx-KL, advantage statistics and normalization statistics are
combined across ranks, so every rank takes the same step and the run equals one
learner with ``world_size * num_envs`` copies. Rank 0 logs and saves.

The same functions serve ``run.processes`` (ranks forked by ppo-envkit itself on one
machine, see :mod:`ppo_envkit.localgroup`): while :func:`local_processes` is active,
the collectives go through shared memory instead of ``torch.distributed``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.distributed as dist

from .localgroup import LocalGroup

_local: LocalGroup | None = None


@contextmanager
def using(group: LocalGroup) -> Iterator[LocalGroup]:
    """Make the collectives below go through ``group`` (shared memory) while the block runs."""
    global _local
    if _local is not None or launched_by_torchrun():
        raise RuntimeError("training processes are already running (run.processes or torchrun)")
    _local = group
    try:
        yield group
    finally:
        _local = None


@contextmanager
def local_processes(size: int, capacity_bytes: int = 1 << 20) -> Iterator[LocalGroup]:
    """A shared-memory group of ``size`` processes for the block's collectives.

    Rank 0 (this process) forks the others with :meth:`LocalGroup.spawn`; on exit the
    group waits for them (or stops them, when the block ended with an exception).
    """
    group = LocalGroup(size, capacity_bytes)
    failed = False
    try:
        with using(group):
            yield group
    except BaseException:
        failed = True
        raise
    finally:  # only rank 0 gets here: the other ranks exit inside spawn()
        group.close(timeout=0.0 if failed else 10.0)


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> tuple[int, int]:
    """(rank, world size), initializing the process group from torchrun's variables once."""
    if _local is not None:
        return _local.rank, _local.size
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
    if _local is not None:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _tensor(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    array = np.asarray(array)  # (np.ascontiguousarray would make a 0-d array 1-d)
    return torch.from_numpy(array if array.flags.c_contiguous else array.copy()).to(like.device)


def broadcast_tensors(tensors: Iterable[torch.Tensor]) -> None:
    """Give every rank rank 0's values of ``tensors`` (in place)."""
    with torch.no_grad():
        for tensor in tensors:
            if _local is not None:
                tensor.copy_(_tensor(_local.broadcast(_numpy(tensor)), tensor))
            else:
                dist.broadcast(tensor, src=0)


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    broadcast_tensors(module.state_dict().values())


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``[n, ...]`` tensor in rank order (same n on all ranks)."""
    if _local is not None:
        return _tensor(_local.gather_rows(_numpy(tensor)), tensor)
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, 0)


def _all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``tensor`` combined element-wise over ranks, in place."""
    if _local is not None:
        with torch.no_grad():
            return tensor.copy_(_tensor(_local.reduce(_numpy(tensor), op), tensor))
    ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
    dist.all_reduce(tensor, op=ops[op])
    return tensor


def average_gradients(params: Iterable[torch.nn.Parameter], extras: torch.Tensor) -> torch.Tensor:
    """Average the gradients of ``params`` and the values in ``extras`` across ranks, in one call."""
    params = [p for p in params if p.grad is not None]
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [extras.reshape(-1).to(params[0].grad.dtype)])
    _all_reduce(flat)
    flat /= world()[1]
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return flat[offset:]


def sum_across(values: torch.Tensor) -> torch.Tensor:
    """Element-wise sum of ``values`` over ranks (a new tensor)."""
    return _all_reduce(values.clone())


def rank0_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (e.g. a callback's request to stop training)."""
    value = torch.tensor([float(flag)], dtype=torch.float64)
    if _local is not None:
        return bool(_local.broadcast(value.numpy())[0])
    dist.broadcast(value, src=0)
    return bool(value[0])


def weights_identical(module: torch.nn.Module) -> bool:
    """True when every rank holds bit-identical parameters and buffers."""
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in module.state_dict().values()])
    low = _all_reduce(flat.clone(), "min")
    high = _all_reduce(flat.clone(), "max")
    return bool(torch.equal(low, high))
