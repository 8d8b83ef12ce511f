"""ppo-envkit: PPO for people who write their own Gymnasium environments.

>>> from ppo_envkit import PPO
>>> agent = PPO.from_preset("cartpole")
>>> agent.learn(100_000)                                   # doctest: +SKIP
>>> agent.save("agents/my-cartpole")                       # doctest: +SKIP

The names below are imported on first use, so that ``import ppo_envkit`` (and every
command that needs neither torch nor pygame) starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

#: public name -> module that defines it
_EXPORTS = {
    "PPO": "ppo_envkit.agent",
    "Callback": "ppo_envkit.algo.callbacks",
    "CallbackList": "ppo_envkit.algo.callbacks",
    "StopTraining": "ppo_envkit.algo.callbacks",
    "TrainConfig": "ppo_envkit.config",
    "ConfigError": "ppo_envkit.errors",
    "NonFiniteError": "ppo_envkit.errors",
    "TrainingInterrupted": "ppo_envkit.errors",
    "AgentFileError": "ppo_envkit.errors",
    "EnvironmentFailed": "ppo_envkit.errors",
    "RunDirError": "ppo_envkit.errors",
    "evaluate": "ppo_envkit.agent",
    "register_env": "ppo_envkit.environments.registry",
    "list_envs": "ppo_envkit.environments.lookup",
    "make_env": "ppo_envkit.environments.factory",
    "load_env_module": "ppo_envkit.environments.discovery",
    "check_environment": "ppo_envkit.environments.checker",
    "Viewer": "ppo_envkit.viewer",
}

if TYPE_CHECKING:
    from .agent import PPO, evaluate
    from .algo.callbacks import Callback, CallbackList, StopTraining
    from .config import TrainConfig
    from .environments.checker import check_environment
    from .environments.discovery import load_env_module
    from .environments.factory import make_env
    from .environments.lookup import list_envs
    from .environments.registry import register_env
    from .errors import (
        AgentFileError,
        ConfigError,
        EnvironmentFailed,
        NonFiniteError,
        RunDirError,
        TrainingInterrupted,
    )
    from .viewer import Viewer


def load_agent(path: str, device: str | None = "cpu") -> PPO:
    """Load an agent directory, or a run directory's final agent. Never unpickles."""
    from .agent import PPO

    return PPO.load(path, device=device)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ppo_envkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "PPO",
    "AgentFileError",
    "Callback",
    "CallbackList",
    "ConfigError",
    "EnvironmentFailed",
    "NonFiniteError",
    "RunDirError",
    "StopTraining",
    "TrainConfig",
    "TrainingInterrupted",
    "Viewer",
    "check_environment",
    "evaluate",
    "list_envs",
    "load_agent",
    "load_env_module",
    "make_env",
    "register_env",
]
