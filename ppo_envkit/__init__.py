"""ppo-envkit: PPO for people who write their own Gymnasium environments.

>>> from ppo_envkit import PPO
>>> agent = PPO.from_preset("cartpole")
>>> agent.learn(100_000)                                   # doctest: +SKIP
>>> agent.save("agents/my-cartpole")                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from .config import ConfigError, TrainConfig
from .evaluate import evaluate
from .ppo import PPO
from .registry import list_envs, make_env, register_env

__version__ = "0.1.0"


def load_agent(path: str, device: str | None = "cpu") -> PPO:
    """Load an agent directory, or a run directory's final agent. Never unpickles."""
    return PPO.load(path, device=device)


def __getattr__(name: str) -> Any:
    # The viewer imports pygame; load it only when asked for.
    if name == "Viewer":
        from .viewer import Viewer

        return Viewer
    raise AttributeError(f"module 'ppo_envkit' has no attribute {name!r}")


__all__ = [
    "PPO",
    "ConfigError",
    "TrainConfig",
    "Viewer",
    "evaluate",
    "list_envs",
    "load_agent",
    "make_env",
    "register_env",
]
