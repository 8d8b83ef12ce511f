"""Environments by id: registration of user environments, and construction for training.

A thin layer over Gymnasium's registry. Every environment built for training is
wrapped in :class:`~ppo_envkit.episodes.ReplayableEpisodes` and vectorized with
same-step autoreset, so that a step that ends an episode reports the episode's
real final observation in ``info["final_obs"]`` (needed to bootstrap truncated
episodes correctly).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from .config import EnvConfig
from .episodes import ReplayableEpisodes


class EnvNotFoundError(KeyError):
    """An environment id that neither Gymnasium nor a loaded user module registers."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass
class EnvInfo:
    """What ppo-envkit knows about a registered environment beyond Gymnasium's spec."""

    id: str
    user: bool = False
    action_names: list[str] | None = None
    preset: str | None = None
    module: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_USER_ENVS: dict[str, EnvInfo] = {}
_loaded_modules: set[str] = set()

#: Action names of built-in environments, for the viewer.
BUILTIN_ACTION_NAMES: dict[str, list[str]] = {
    "LunarLander": ["noop", "left engine", "main engine", "right engine"],
    "CartPole": ["push left", "push right"],
    "MountainCar": ["accelerate left", "don't accelerate", "accelerate right"],
    "Acrobot": ["torque -1", "torque 0", "torque +1"],
}


def register_env(
    id: str,
    entry_point: Callable[..., gym.Env] | str | None = None,
    *,
    max_episode_steps: int | None = None,
    reward_threshold: float | None = None,
    kwargs: dict[str, Any] | None = None,
    action_names: Sequence[str] | None = None,
    preset: str | None = None,
    overwrite: bool = False,
) -> Any:
    """Register a user environment with Gymnasium (call, or use as a class decorator).

    ``register_env("Grid-v0", GridEnv, max_episode_steps=200)`` or::

        @register_env("Grid-v0", max_episode_steps=200)
        class GridEnv(gym.Env): ...
    """
    if entry_point is None:

        def decorator(cls: type[gym.Env]) -> type[gym.Env]:
            register_env(
                id,
                cls,
                max_episode_steps=max_episode_steps,
                reward_threshold=reward_threshold,
                kwargs=kwargs,
                action_names=action_names,
                preset=preset,
                overwrite=overwrite,
            )
            return cls

        return decorator

    if id in gym.registry and not overwrite:
        existing = _USER_ENVS.get(id)
        same = existing is not None and _entry_point_name(entry_point) == existing.module
        if not same:
            raise ValueError(
                f"environment id '{id}' is already registered; pass overwrite=True to replace it"
            )
    if id in gym.registry:
        del gym.registry[id]
    gym.register(
        id=id,
        entry_point=entry_point,
        max_episode_steps=max_episode_steps,
        reward_threshold=reward_threshold,
        kwargs=dict(kwargs or {}),
    )
    _USER_ENVS[id] = EnvInfo(
        id=id,
        user=True,
        action_names=list(action_names) if action_names else None,
        preset=preset,
        module=_entry_point_name(entry_point),
    )
    return entry_point


def _entry_point_name(entry_point: Any) -> str:
    if isinstance(entry_point, str):
        return entry_point
    return f"{getattr(entry_point, '__module__', '?')}:{getattr(entry_point, '__qualname__', '?')}"


def unregister_env(id: str) -> None:
    """Remove a user registration (used by tests and by re-registration)."""
    _USER_ENVS.pop(id, None)
    if id in gym.registry:
        del gym.registry[id]


def env_info(id: str) -> EnvInfo:
    """ppo-envkit's knowledge of ``id`` (user or built-in)."""
    if id in _USER_ENVS:
        return _USER_ENVS[id]
    base = id.split("/")[-1].split("-v")[0]
    return EnvInfo(id=id, action_names=BUILTIN_ACTION_NAMES.get(base))


def list_envs(user_only: bool = False) -> list[EnvInfo]:
    """Registered environments, user ones first."""
    users = sorted(_USER_ENVS.values(), key=lambda e: e.id)
    if user_only:
        return users
    builtin = [env_info(i) for i in sorted(gym.registry) if i not in _USER_ENVS]
    return users + builtin


def load_env_module(target: str) -> None:
    """Import a module by dotted name or a ``.py`` file by path (it registers its environments)."""
    path = Path(target)
    if target.endswith(".py") or path.exists():
        path = path.resolve()
        if not path.exists():
            raise FileNotFoundError(f"environment module file not found: {target}")
        name = f"ppo_envkit_user_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
        _loaded_modules.add(str(path))
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    else:
        importlib.import_module(target)
        _loaded_modules.add(target)


def _check_registered(env_id: str) -> None:
    if env_id in gym.registry:
        return
    try:
        gym.spec(env_id)  # also resolves "module:Env-v0"
    except gym.error.Error as exc:
        raise EnvNotFoundError(
            f"unknown environment '{env_id}': {exc}. Use 'ppo-envkit envs list' to see registered "
            "ids, or load your module with --env-module"
        ) from None


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    *,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """One environment instance (no ppo-envkit wrappers)."""
    _check_registered(env_id)
    extra: dict[str, Any] = dict(kwargs or {})
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        extra["render_mode"] = render_mode
    return gym.make(env_id, **extra)


class _EnvFactory:
    """A picklable thunk that builds one training copy (also inside worker processes)."""

    def __init__(
        self, env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None, modules: Sequence[str]
    ):
        self.env_id = env_id
        self.kwargs = kwargs
        self.max_episode_steps = max_episode_steps
        self.modules = list(modules)

    def __call__(self) -> gym.Env:
        for module in self.modules:
            load_env_module(module)
        env = make_env(self.env_id, self.kwargs, max_episode_steps=self.max_episode_steps)
        return ReplayableEpisodes(env)


def user_modules() -> list[str]:
    """Modules or files loaded with :func:`load_env_module` in this process (for workers)."""
    return sorted(_loaded_modules)


def make_vec_env(config: EnvConfig, modules: Sequence[str] = ()) -> gym.vector.VectorEnv:
    """``config.num_envs`` training copies with same-step autoreset."""
    _check_registered(config.id)
    modules = list(modules) or user_modules()
    factory = _EnvFactory(config.id, dict(config.kwargs), config.max_episode_steps, modules)
    fns = [factory] * config.num_envs
    if config.vectorization == "async":
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
