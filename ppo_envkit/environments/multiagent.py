"""Several agents: PettingZoo environments turned into the Gymnasium environments the rest of
ppo-envkit steps (one place decides how).

* A ``ParallelEnv`` (every agent acts at every step) becomes an
  :class:`~ppo_envkit.environments.agent_stack.AgentStack`: one Gymnasium environment whose
  observation and action stack the agents (``[num_agents, ...]``); the collector splits them
  into rows of one shared policy.
* An ``AECEnv`` (agents take turns) becomes a
  :class:`~ppo_envkit.environments.turns.TurnBasedEnv`: the learner takes one seat, and the other
  seats are played by opponents (the learner's own past snapshots while training).

Both carry ``metadata["pettingzoo"]`` (``"parallel"`` or ``"aec"``): where an environment came
from decides what its time limit means (:func:`resolve_time_limit`).

PettingZoo is an optional extra: nothing here imports it unless a PettingZoo environment is built
(its classes are recognised by name first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import gymnasium as gym
import numpy as np

from ..config import TimeLimitSetting

__all__ = [
    "PETTINGZOO_KEY",
    "TimeLimit",
    "adapt",
    "non_gymnasium_creator",
    "pettingzoo_kind",
    "resolve_time_limit",
    "split_observation",
]

#: The ``metadata`` key :func:`adapt` gives the Gymnasium environment it makes of a PettingZoo
#: one: the PettingZoo API it came from (``"parallel"`` or ``"aec"``).
PETTINGZOO_KEY = "pettingzoo"


def pettingzoo_kind(obj: Any) -> Literal["parallel", "aec"] | None:
    """``"parallel"`` for a PettingZoo ``ParallelEnv``, ``"aec"`` for an ``AECEnv`` (wrapped ones
    included), None for anything else (a Gymnasium environment)."""
    if isinstance(obj, gym.Env):
        return None
    names = {cls.__name__ for cls in type(obj).__mro__}
    if not names & {"ParallelEnv", "AECEnv", "BaseWrapper", "BaseParallelWrapper"}:
        return None
    from pettingzoo.utils.env import AECEnv, ParallelEnv

    if isinstance(obj, ParallelEnv):
        return "parallel"
    if isinstance(obj, AECEnv):
        return "aec"
    return None


def non_gymnasium_creator(spec: gym.envs.registration.EnvSpec) -> Any | None:
    """``spec``'s entry point (a ``module:name`` string imported), unless it is a Gymnasium
    ``Env`` class (or missing): then None, as nothing it builds needs adapting. Importing the
    entry point may raise (ImportError, AttributeError)."""
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = gym.envs.registration.load_env_creator(creator)
    if creator is None or (isinstance(creator, type) and issubclass(creator, gym.Env)):
        return None
    return creator


def adapt(obj: Any) -> Any:
    """``obj`` as a Gymnasium environment when it is a PettingZoo one (its ``metadata`` says
    which API: :data:`PETTINGZOO_KEY`); anything else unchanged."""
    kind = pettingzoo_kind(obj)
    if kind is None:
        return obj
    if kind == "parallel":
        from .agent_stack import AgentStack

        env: gym.Env = AgentStack(obj)
    else:
        from .turns import TurnBasedEnv

        env = TurnBasedEnv(obj)
    env.metadata = {**env.metadata, PETTINGZOO_KEY: kind}
    return env


class TimeLimit(NamedTuple):
    """What training makes of a time limit (a truncation), and why."""

    value: Literal["bootstrap", "terminal"]
    #: Why ``env.time_limit=auto`` chose it; "" when the setting names the value itself.
    reason: str = ""

    @property
    def ends_task(self) -> bool:
        """Truncation is the end of the task: no value is bootstrapped after it."""
        return self.value == "terminal"


def resolve_time_limit(setting: TimeLimitSetting, metadata: Mapping[str, Any] | None) -> TimeLimit:
    """``env.time_limit`` for an environment with this ``metadata``: ``bootstrap`` and
    ``terminal`` as they are; ``auto`` (the default) by where the environment comes from.

    * A PettingZoo environment (parallel or turn-based, :data:`PETTINGZOO_KEY`) truncates where
      its own game ends: ``max_cycles`` and the like are arguments of the game ("number of
      frames until game terminates", MPE's docs), enforced by the environment's own step, not
      a wrapper cutting a longer task. The score is the return within it: ``terminal`` (what
      SB3 sees through SuperSuit, whose vector reports it as ``done``).
    * A Gymnasium environment's truncation is a ``TimeLimit`` cutting a longer task, as
      Gymnasium defines it: ``bootstrap`` from the value of the final observation.

    ``setting`` is a validated ``env.time_limit`` (the settings refuse any other value)."""
    if setting != "auto":
        return TimeLimit(setting)
    if dict(metadata or {}).get(PETTINGZOO_KEY):
        return TimeLimit("terminal", "a PettingZoo game's own length, max_cycles, ends it")
    return TimeLimit("bootstrap", "a Gymnasium time limit cuts a longer task")


def split_observation(obs: Any) -> tuple[Any, np.ndarray | None]:
    """An agent's observation and its action mask, by PettingZoo's convention for games: a dict
    with ``observation`` and ``action_mask`` (the classic environments). Any other observation
    comes back as it is, with no mask."""
    if isinstance(obs, dict) and "observation" in obs and "action_mask" in obs:
        return obs["observation"], np.asarray(obs["action_mask"]).astype(bool)
    return obs, None
