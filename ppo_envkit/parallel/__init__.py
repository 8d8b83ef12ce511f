"""Data parallelism: several ranks train one agent, combining gradients and statistics.

* :mod:`.collectives`: the ``Collectives`` interface the training code uses, and the
  size-1 default;
* :mod:`.torchrun`: ``torch.distributed`` ranks launched by ``torchrun`` (the reference);
* :mod:`.shm` and :mod:`.ranks`: ``run.processes`` ranks forked on one machine, with
  shared-memory collectives, and their lifetime;
* :mod:`.vector`: ``ShardedVectorEnv``, environment copies stepped in worker processes.

This module stays free of torch so that the command line can ask about the launch cheaply.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import TrainConfig


def launched_by_torchrun() -> bool:
    """Whether this process is one of several ranks started by ``torchrun``."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_processes(config: TrainConfig) -> int:
    """Training processes this launch forks itself: ``run.processes``, or 1 under torchrun
    (which starts the ranks itself)."""
    return 1 if launched_by_torchrun() else config.run.processes


def copies_per_rank(config: TrainConfig) -> int:
    """Environment copies each rank steps: ``env.num_envs`` split over ``run.processes``, or
    ``env.num_envs`` per rank under torchrun."""
    return config.env.num_envs // local_processes(config)


__all__ = ["copies_per_rank", "launched_by_torchrun", "local_processes"]
