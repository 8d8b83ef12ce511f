"""Several agents: PettingZoo environments turned into the Gymnasium environments the rest of
ppo-envkit steps (one place decides how).

* A ``ParallelEnv`` (every agent acts at every step) becomes an
  :class:`~ppo_envkit.environments.agent_stack.AgentStack`: one Gymnasium environment whose
  observation and action stack the agents (``[num_agents, ...]``); the collector splits them
  into rows of one shared policy.
* An ``AECEnv`` (agents take turns) becomes a
  :class:`~ppo_envkit.environments.turns.TurnBasedEnv`: the learner takes one seat, and the other
  seats are played by opponents (the learner's own past snapshots while training).

PettingZoo is an optional extra: nothing here imports it unless a PettingZoo environment is built
(its classes are recognised by name first).
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np

__all__ = ["adapt", "non_gymnasium_creator", "pettingzoo_kind", "split_observation"]


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
    """``obj`` as a Gymnasium environment when it is a PettingZoo one; anything else unchanged."""
    kind = pettingzoo_kind(obj)
    if kind == "parallel":
        from .agent_stack import AgentStack

        return AgentStack(obj)
    if kind == "aec":
        from .turns import TurnBasedEnv

        return TurnBasedEnv(obj)
    return obj


def split_observation(obs: Any) -> tuple[Any, np.ndarray | None]:
    """An agent's observation and its action mask, by PettingZoo's convention for games: a dict
    with ``observation`` and ``action_mask`` (the classic environments). Any other observation
    comes back as it is, with no mask."""
    if isinstance(obs, dict) and "observation" in obs and "action_mask" in obs:
        return obs["observation"], np.asarray(obs["action_mask"]).astype(bool)
    return obs, None
