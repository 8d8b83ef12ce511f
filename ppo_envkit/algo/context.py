"""``RankContext``: what the collector and the learner of one rank share."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TrainConfig
from ..parallel.collectives import Collectives
from .fastpath import FastPath
from .policy import ActorCritic


@dataclass
class RankContext:
    """The policy, settings, random stream and collectives one rank trains with.

    The trainer swaps ``config`` (settings may change between training calls) and
    ``collectives`` (the ranks may change) in one place for both of its parts. The one
    generator serves sampling during collection and shuffling during updates, in that
    order, which is what makes a run reproducible from its seed.
    """

    policy: ActorCritic
    config: TrainConfig
    generator: torch.Generator
    collectives: Collectives
    fast: FastPath


__all__ = ["RankContext"]
