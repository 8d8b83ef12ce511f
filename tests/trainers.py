"""The training loop of an agent as a unit: the algo tests look inside a ``Trainer`` built
from an agent's parts (the ``PPO`` facade keeps its own private)."""

from __future__ import annotations

from ppo_envkit import PPO
from ppo_envkit.algo.trainer import Trainer
from ppo_envkit.parallel.collectives import SingleProcess


def unit_trainer(agent: PPO) -> Trainer:
    """A one-process trainer of ``agent``'s policy, settings, random stream and state."""
    return Trainer(agent.policy, agent.config, agent.generator, agent.state, SingleProcess())
