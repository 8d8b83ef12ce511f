"""Environments by id: registration of user environments, and construction for training.

A thin layer over Gymnasium's registry. :func:`register_env` adds what ppo-envkit
needs on top of ``gym.register``: id validation with readable errors, explicit
re-registration, a default preset, action names for the viewer, and
discrete/continuous *variants* (what ``--action-space`` switches between). Finding
the code that registers environments is :mod:`ppo_envkit.discovery`'s job.

Every environment built for training is wrapped in
:class:`~ppo_envkit.episodes.ReplayableEpisodes` and vectorized with same-step
autoreset, so that a step that ends an episode reports the episode's real final
observation in ``info["final_obs"]`` (needed to bootstrap truncated episodes correctly).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from .config import EnvConfig
from .discovery import (
    discover_envs,
    load_env_module,
    loader_state,
    restore_loader_state,
    user_modules,
)
from .episodes import ReplayableEpisodes

__all__ = [
    "ACTION_SPACE_KINDS",
    "EnvInfo",
    "EnvNotFoundError",
    "RegistrationError",
    "Variant",
    "VariantError",
    "ensure_registered",
    "env_info",
    "env_spaces",
    "is_user_env",
    "list_envs",
    "load_env_module",
    "make_env",
    "make_vec_env",
    "modules_providing",
    "register_env",
    "registered_preset",
    "resolve_variant",
    "temporary_registrations",
    "unregister_env",
    "user_modules",
]

#: ``[namespace/]Name-vN``: Gymnasium's id grammar, with the version required.
ENV_ID_PATTERN = re.compile(r"^(?:(?P<namespace>[\w:-]+)/)?(?P<name>[\w:.-]+?)-v(?P<version>\d+)$")

#: What ``--action-space`` accepts.
ACTION_SPACE_KINDS = ("discrete", "continuous")


class EnvNotFoundError(KeyError):
    """An environment id that neither Gymnasium nor a loaded user module registers."""

    def __str__(self) -> str:
        return str(self.args[0])


class RegistrationError(ValueError):
    """A :func:`register_env` call with an invalid argument; the message says which and why."""


class VariantError(ValueError):
    """``--action-space`` asked for a variant that the environment does not declare."""


@dataclass(frozen=True)
class Variant:
    """One action-space variant: the id to build and the keyword arguments that select it."""

    name: str
    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EnvInfo:
    """What ppo-envkit knows about a registered environment beyond Gymnasium's spec."""

    id: str
    user: bool = False
    action_names: list[str] | None = None
    #: A preset name or YAML path, or one per variant (``{"continuous": "grid-continuous"}``).
    preset: str | dict[str, str] | None = None
    #: The entry point as ``module:qualname``.
    module: str | None = None
    #: The file that defines the entry point, when known.
    source: str | None = None
    variants: dict[str, Variant] = field(default_factory=dict)
    reward_threshold: float | None = None
    max_episode_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_USER_ENVS: dict[str, EnvInfo] = {}
#: Ids that Gymnasium registers by itself (everything else came from user code).
_BUILTIN_IDS = frozenset(gym.registry)

#: Action names of built-in environments, for the viewer.
BUILTIN_ACTION_NAMES: dict[str, list[str]] = {
    "LunarLander": ["noop", "left engine", "main engine", "right engine"],
    "CartPole": ["push left", "push right"],
    "MountainCar": ["accelerate left", "don't accelerate", "accelerate right"],
    "Acrobot": ["torque -1", "torque 0", "torque +1"],
}

#: Built-in environments with a boolean ``continuous`` constructor argument.
BUILTIN_VARIANTS: dict[str, str] = {
    "LunarLander-v3": "continuous",
    "LunarLanderContinuous-v3": "continuous",
    "CarRacing-v3": "continuous",
}


# ----------------------------------------------------------------------------- registration


def validate_env_id(env_id: Any) -> str:
    """Return ``env_id`` if it follows ``[namespace/]Name-vN``, else raise a readable error."""
    if not isinstance(env_id, str) or not ENV_ID_PATTERN.match(env_id):
        raise RegistrationError(
            f"invalid environment id {env_id!r}: ids look like 'Name-vN' or 'namespace/Name-vN', "
            "e.g. 'GridWorld-v0' or 'myproject/GridWorld-v1' (letters, digits, '_', '-', '.'; "
            "the version number is required)"
        )
    return env_id


def _normalize_variants(env_id: str, variants: Any) -> dict[str, Variant]:
    if variants is None:
        return {}
    if isinstance(variants, str):
        if not variants.isidentifier():
            raise RegistrationError(
                f"{env_id}: variants={variants!r} must name a boolean keyword argument of the "
                "environment (e.g. variants='continuous'), or map 'discrete'/'continuous' to kwargs or ids"
            )
        return {
            "discrete": Variant("discrete", env_id, {variants: False}),
            "continuous": Variant("continuous", env_id, {variants: True}),
        }
    if not isinstance(variants, Mapping) or not variants:
        raise RegistrationError(
            f"{env_id}: variants must be a keyword-argument name (variants='continuous') or a mapping "
            "like {'discrete': {'continuous': False}, 'continuous': {'continuous': True}} or "
            "{'continuous': 'MyEnvContinuous-v0'}"
        )
    out: dict[str, Variant] = {}
    for name, value in variants.items():
        if name not in ACTION_SPACE_KINDS:
            raise RegistrationError(
                f"{env_id}: unknown variant {name!r}; variants are named 'discrete' and 'continuous'"
            )
        if isinstance(value, str):
            out[name] = Variant(name, validate_env_id(value), {})
        elif isinstance(value, Mapping):
            out[name] = Variant(name, env_id, dict(value))
        else:
            raise RegistrationError(
                f"{env_id}: variant {name!r} must be a dict of keyword arguments or another environment id, "
                f"got {value!r}"
            )
    for name in ACTION_SPACE_KINDS:  # the one not given is this id as registered
        out.setdefault(name, Variant(name, env_id, {}))
    return out


def _source_file(entry_point: Any) -> str | None:
    if isinstance(entry_point, str):
        return None
    try:
        file = inspect.getsourcefile(entry_point) or inspect.getfile(entry_point)
    except TypeError:
        return None
    return str(Path(file).resolve()) if file and not file.startswith("<") else None


def _entry_point_name(entry_point: Any) -> str:
    if isinstance(entry_point, str):
        return entry_point
    return f"{getattr(entry_point, '__module__', '?')}:{getattr(entry_point, '__qualname__', '?')}"


def _same_code(old: Any, new: Any) -> bool:
    """The same class or function, possibly imported twice (by another module name, or in a worker)."""
    if old is new or _entry_point_name(old) == _entry_point_name(new):
        return True
    old_file, new_file = _source_file(old), _source_file(new)
    return (
        old_file is not None
        and old_file == new_file
        and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
    )


def _normalize_preset(env_id: str, preset: Any, entry_point: Any) -> str | dict[str, str] | None:
    """Check the preset argument; YAML paths are taken relative to the file that defines the env."""
    if preset is None:
        return None
    base = _source_file(entry_point)

    def resolve(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise RegistrationError(f"{env_id}: preset must be a preset name or a YAML path, got {value!r}")
        if value.endswith((".yaml", ".yml")) and base and not Path(value).is_absolute():
            candidate = Path(base).parent / value
            if candidate.is_file():
                return str(candidate)
        return value

    if isinstance(preset, Mapping):
        unknown = set(preset) - set(ACTION_SPACE_KINDS)
        if unknown:
            raise RegistrationError(
                f"{env_id}: preset keys must be 'discrete'/'continuous', got {sorted(unknown)}"
            )
        return {k: resolve(v) for k, v in preset.items()}
    return resolve(preset)


def register_env(
    id: str,
    entry_point: Callable[..., gym.Env] | str | None = None,
    *,
    max_episode_steps: int | None = None,
    reward_threshold: float | None = None,
    kwargs: Mapping[str, Any] | None = None,
    variants: str | Mapping[str, Mapping[str, Any] | str] | None = None,
    preset: str | Mapping[str, str] | None = None,
    action_names: Sequence[str] | None = None,
    nondeterministic: bool = False,
    overwrite: bool = False,
) -> Any:
    """Register a user environment with Gymnasium (call it, or use it as a class decorator).

    ``register_env("Grid-v0", GridEnv, max_episode_steps=200)`` or::

        @register_env("Grid-v0", max_episode_steps=200, variants="continuous", preset="grid")
        class GridEnv(gym.Env):
            def __init__(self, continuous: bool = False, render_mode: str | None = None): ...

    Args:
        id: ``Name-vN`` or ``namespace/Name-vN``.
        entry_point: the environment class (or a function returning an env, or ``"module:Class"``).
        max_episode_steps: time limit; episodes are truncated after this many steps.
        reward_threshold: the mean return that counts as solved (shown by ``envs list``).
        kwargs: default constructor arguments.
        variants: what ``--action-space discrete|continuous`` selects. The name of a boolean
            constructor argument (``"continuous"``: the LunarLander pattern), or a mapping from
            ``"discrete"``/``"continuous"`` to constructor arguments or to another registered id
            (``{"continuous": "GridContinuous-v0"}``; a variant left out is this id itself).
        preset: the training preset (a name from ``agents/``, or a YAML path relative to the
            file that defines the environment), or one per variant.
        action_names: names of the discrete actions, for the viewer.
        nondeterministic: the environment is random even given the seed (skips the checker's
            seed test).
        overwrite: replace an existing registration of ``id`` by other code. Importing the same
            module again (in a worker process, or by two routes) is never an error.
    """
    validate_env_id(id)
    if entry_point is None:

        def decorator(cls: Any) -> Any:
            register_env(
                id,
                cls,
                max_episode_steps=max_episode_steps,
                reward_threshold=reward_threshold,
                kwargs=kwargs,
                variants=variants,
                preset=preset,
                action_names=action_names,
                nondeterministic=nondeterministic,
                overwrite=overwrite,
            )
            return cls

        return decorator

    if not (callable(entry_point) or (isinstance(entry_point, str) and ":" in entry_point)):
        raise RegistrationError(
            f"{id}: entry_point must be the environment class, a function returning an environment, "
            f"or a 'module:Class' string, got {entry_point!r}"
        )
    if max_episode_steps is not None and (
        not isinstance(max_episode_steps, int) or isinstance(max_episode_steps, bool) or max_episode_steps < 1
    ):
        raise RegistrationError(
            f"{id}: max_episode_steps must be a positive integer, got {max_episode_steps!r}"
        )
    if reward_threshold is not None and (
        not isinstance(reward_threshold, int | float) or not math.isfinite(reward_threshold)
    ):
        raise RegistrationError(f"{id}: reward_threshold must be a finite number, got {reward_threshold!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise RegistrationError(f"{id}: kwargs must be a dict of constructor arguments, got {kwargs!r}")
    if action_names is not None and (
        isinstance(action_names, str) or not all(isinstance(n, str) for n in action_names)
    ):
        raise RegistrationError(f"{id}: action_names must be a list of strings, got {action_names!r}")
    normalized_variants = _normalize_variants(id, variants)
    normalized_preset = _normalize_preset(id, preset, entry_point)

    existing = gym.registry.get(id)
    if existing is not None and not overwrite and not _same_code(existing.entry_point, entry_point):
        by = "Gymnasium itself" if id in _BUILTIN_IDS else _entry_point_name(existing.entry_point)
        match = ENV_ID_PATTERN.match(id)
        assert match is not None
        bumped = f"{id[: match.start('version')]}{int(match['version']) + 1}"
        raise RegistrationError(
            f"environment id '{id}' is already registered (by {by}); pass overwrite=True to replace it, "
            f"or register under another id or version such as '{bumped}'"
        )
    gym.registry.pop(id, None)
    gym.register(
        id=id,
        entry_point=entry_point,
        max_episode_steps=max_episode_steps,
        reward_threshold=reward_threshold,
        nondeterministic=nondeterministic,
        kwargs=dict(kwargs or {}),
    )
    _USER_ENVS[id] = EnvInfo(
        id=id,
        user=True,
        action_names=list(action_names) if action_names else None,
        preset=normalized_preset,
        module=_entry_point_name(entry_point),
        source=_source_file(entry_point),
        variants=normalized_variants,
        reward_threshold=reward_threshold,
        max_episode_steps=max_episode_steps,
    )
    return entry_point


def unregister_env(id: str) -> None:
    """Remove a registration (used by tests and by re-registration)."""
    _USER_ENVS.pop(id, None)
    gym.registry.pop(id, None)


@contextlib.contextmanager
def temporary_registrations() -> Iterator[None]:
    """Undo every registration and module load made inside the ``with`` block (for tests).

    ``with temporary_registrations(): register_env(...)``; afterwards the registry, the
    record of loaded modules and discovered folders are as before, so the same files can
    be loaded again by a later test.
    """
    gym_registry = dict(gym.registry)
    user_envs = dict(_USER_ENVS)
    loaded = loader_state()
    try:
        yield
    finally:
        gym.registry.clear()
        gym.registry.update(gym_registry)
        _USER_ENVS.clear()
        _USER_ENVS.update(user_envs)
        restore_loader_state(loaded)


# ----------------------------------------------------------------------------- looking up


def is_user_env(env_id: str) -> bool:
    """Registered by user code (through :func:`register_env` or ``gym.register``), not by Gymnasium."""
    return env_id in _USER_ENVS or (env_id in gym.registry and env_id not in _BUILTIN_IDS)


def modules_providing(env_id: str) -> list[str]:
    """The loaded environment modules that an agent of ``env_id`` needs: none for Gymnasium's own
    environments, the one that registered it when that is known, else every loaded one."""
    if not is_user_env(env_id):
        return []
    loaded = user_modules()
    info = env_info(env_id)
    module = (info.module or "").split(":")[0]
    source = str(Path(info.source).resolve()) if info.source else None

    def provides(target: str) -> bool:
        if target.endswith(".py"):
            return source is not None and str(Path(target).resolve()) == source
        return bool(module) and target.split(":")[0] == module

    return [t for t in loaded if provides(t)] or loaded


def env_info(id: str) -> EnvInfo:
    """ppo-envkit's knowledge of ``id`` (user or built-in)."""
    if id in _USER_ENVS:
        return _USER_ENVS[id]
    spec = gym.registry.get(id)
    base = id.split("/")[-1].split("-v")[0]
    flag = BUILTIN_VARIANTS.get(id)
    return EnvInfo(
        id=id,
        user=is_user_env(id),
        action_names=BUILTIN_ACTION_NAMES.get(base),
        module=_entry_point_name(spec.entry_point) if spec is not None and spec.entry_point else None,
        variants=_normalize_variants(id, flag) if flag else {},
        reward_threshold=spec.reward_threshold if spec is not None else None,
        max_episode_steps=spec.max_episode_steps if spec is not None else None,
    )


def _warn_problems(problems: Sequence[Any]) -> None:
    for problem in problems:
        warnings.warn(f"{problem.source}: {problem.message}", RuntimeWarning, stacklevel=3)


def list_envs(user_only: bool = False, *, discover: bool = True) -> list[EnvInfo]:
    """Registered environments, user ones first.

    With ``discover`` (the default), the ``envs/`` folder of the current directory and
    installed ``ppo_envkit.envs`` entry points are imported first (once per process).
    """
    if discover:
        _warn_problems(discover_envs())
    users = sorted((env_info(i) for i in gym.registry if is_user_env(i)), key=lambda e: e.id)
    if user_only:
        return users
    builtin = [env_info(i) for i in sorted(gym.registry) if not is_user_env(i)]
    return users + builtin


def ensure_registered(env_id: str) -> None:
    """Raise :class:`EnvNotFoundError` unless ``env_id`` is registered (after discovering ./envs)."""
    if env_id in gym.registry:
        return
    _warn_problems(discover_envs())  # the Python API finds ./envs and entry points too
    if env_id in gym.registry:
        return
    try:
        gym.spec(env_id)  # also resolves "module:Env-v0"
    except gym.error.Error as exc:
        raise EnvNotFoundError(
            f"unknown environment '{env_id}': {exc}. Use 'ppo-envkit envs list' to see registered "
            "ids, or load your module with --env-module"
        ) from None


def env_spaces(env_id: str, kwargs: Mapping[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """``(observation_space, action_space)`` of ``env_id``, by building one copy (warnings muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(env_id, dict(kwargs or {}))
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()


_check_registered = ensure_registered  # the earlier private name


# ----------------------------------------------------------------------------- variants and presets


def resolve_variant(env_id: str, action_space: str) -> Variant:
    """The variant that ``--action-space action_space`` selects for ``env_id``."""
    if action_space not in ACTION_SPACE_KINDS:
        raise VariantError(f"--action-space must be 'discrete' or 'continuous', got {action_space!r}")
    ensure_registered(env_id)
    variants = env_info(env_id).variants
    if not variants:
        raise VariantError(
            f"--action-space {action_space}: {env_id} declares no discrete/continuous variants; drop "
            f"--action-space, or declare them with register_env('{env_id}', ..., variants='continuous') "
            "(a boolean constructor argument) or variants={'continuous': 'OtherId-v0'}"
        )
    variant = variants[action_space]
    if variant.env_id not in gym.registry:
        raise VariantError(
            f"--action-space {action_space}: {env_id} names '{variant.env_id}' as its {action_space} "
            "variant, but that id is not registered; register it in the same module"
        )
    return variant


def _signature_defaults(entry_point: Any) -> dict[str, Any]:
    try:
        if isinstance(entry_point, str):
            entry_point = gym.envs.registration.load_env_creator(entry_point)
        params = inspect.signature(entry_point).parameters.values()
    except Exception:
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def current_variant(env_id: str, kwargs: Mapping[str, Any] | None = None) -> str | None:
    """Which declared variant ``env_id`` built with ``kwargs`` is (None if it declares none)."""
    info = env_info(env_id)
    spec = gym.registry.get(env_id)
    effective: dict[str, Any] = {}
    if spec is not None:
        effective = {**_signature_defaults(spec.entry_point), **spec.kwargs}
    effective.update(kwargs or {})
    for name, variant in info.variants.items():
        if variant.env_id == env_id and all(effective.get(k) == v for k, v in variant.kwargs.items()):
            return name
    return None


def registered_preset(env_id: str, variant: str | None = None) -> str | None:
    """The preset that :func:`register_env` declared for ``env_id`` (and ``variant``), if any."""
    if env_id not in gym.registry:
        return None
    preset = env_info(env_id).preset
    if isinstance(preset, dict):
        variant = variant or current_variant(env_id)
        return preset.get(variant) if variant else None
    return preset


# ----------------------------------------------------------------------------- construction


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    *,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
) -> gym.Env:
    """One environment instance (no ppo-envkit wrappers)."""
    ensure_registered(env_id)
    extra: dict[str, Any] = dict(kwargs or {})
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        extra["render_mode"] = render_mode
    return gym.make(env_id, **extra)


class _EnvFactory:
    """A picklable thunk that builds one training copy (also inside worker processes).

    It carries the names of the modules to import, never classes: a worker started
    with ``spawn`` could not unpickle a class from a user file before importing it.
    """

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
        try:
            ensure_registered(self.env_id)
        except EnvNotFoundError:
            loaded = ", ".join(self.modules) or "none"
            raise EnvNotFoundError(
                f"environment '{self.env_id}' is not registered in this worker process (modules "
                f"imported: {loaded}). Register it at module level of a file and pass that file "
                "with --env-module (or put it in ./envs), not under `if __name__ == '__main__':`; "
                "or use env.vectorization=sync"
            ) from None
        env = make_env(self.env_id, self.kwargs, max_episode_steps=self.max_episode_steps)
        return ReplayableEpisodes(env)


def _worker_modules(env_id: str, modules: Sequence[str]) -> list[str]:
    """What a fresh worker must import to know ``env_id``: loaded user modules, plus the module
    that defines its entry point (when the user imported it themselves rather than through us)."""
    out = list(modules) or user_modules()
    spec = gym.registry.get(env_id)
    if spec is not None and not isinstance(spec.entry_point, str) and env_id not in _BUILTIN_IDS:
        module = getattr(spec.entry_point, "__module__", None)
        if module and not module.startswith(("__main__", "__mp_main__", "ppo_envkit_user_")):
            if module not in out:
                out.append(module)
    return out


def make_vec_env(
    config: EnvConfig, modules: Sequence[str] = (), *, context: str | None = None
) -> gym.vector.VectorEnv:
    """``config.num_envs`` training copies with same-step autoreset.

    ``context`` is the multiprocessing start method of asynchronous vectorization
    (``fork``, ``spawn``, ``forkserver``; default: the platform's).
    """
    ensure_registered(config.id)
    factory = _EnvFactory(
        config.id, dict(config.kwargs), config.max_episode_steps, _worker_modules(config.id, modules)
    )
    fns = [factory] * config.num_envs
    if config.vectorization == "async":
        if config.num_workers is not None:  # shards of copies, one per process, this one included
            from .vector import ShardedVectorEnv

            return ShardedVectorEnv(fns, config.num_workers, context=context)
        return AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP, context=context)
    return SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
