"""Registration of user environments: ``register_env`` over Gymnasium's ``gym.register``.

:func:`register_env` adds what ppo-envkit needs on top of ``gym.register``: id
validation with readable errors, explicit re-registration, a default preset, action
names for the viewer, and discrete/continuous *variants* (what ``--action-space``
switches between). Questions about registered environments are answered by
:mod:`.lookup`; finding the code that registers them is :mod:`.discovery`'s job;
building them is :mod:`.factory`'s.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from ..config import split_env_id
from .discovery import discover_envs, loader_state, restore_loader_state
from .ids import EnvNotFoundError, provider_hint, registered_id

__all__ = [
    "ACTION_SPACE_KINDS",
    "EnvInfo",
    "EnvNotFoundError",
    "RegistrationError",
    "Variant",
    "VariantError",
    "ensure_registered",
    "entry_point_callable",
    "register_env",
    "temporary_registrations",
    "unregister_env",
    "validate_env_id",
]

#: ``[namespace/]Name-vN``: Gymnasium's id grammar, with the version required.
ENV_ID_PATTERN = re.compile(r"^(?:(?P<namespace>[\w:-]+)/)?(?P<name>[\w:.-]+?)-v(?P<version>\d+)$")

#: What ``--action-space`` accepts.
ACTION_SPACE_KINDS = ("discrete", "continuous")


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
    #: How the variants were found: declared, built in, or by convention (None without variants).
    variants_from: str | None = None
    reward_threshold: float | None = None
    max_episode_steps: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


USER_ENVS: dict[str, EnvInfo] = {}


def is_gymnasium_env(env_id: str) -> bool:
    """Whether Gymnasium registered ``env_id`` itself: its entry point lives in ``gymnasium``.
    (Decided from the registration, not from when ppo-envkit was imported, so that an id a
    user registered before importing ppo-envkit is still theirs.)"""
    spec = gym.registry.get(env_id)
    if spec is None or env_id in USER_ENVS:
        return False
    entry_point = spec.entry_point
    module = entry_point if isinstance(entry_point, str) else getattr(entry_point, "__module__", "") or ""
    return module.startswith("gymnasium.")


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


def normalize_variants(env_id: str, variants: Any) -> dict[str, Variant]:
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


def source_file(entry_point: Any) -> str | None:
    if isinstance(entry_point, str):
        return None
    try:
        file = inspect.getsourcefile(entry_point) or inspect.getfile(entry_point)
    except TypeError:
        return None
    return str(Path(file).resolve()) if file and not file.startswith("<") else None


def entry_point_callable(entry_point: Any) -> Any:
    """The class or function an entry point names (a ``module:Class`` string is imported)."""
    if isinstance(entry_point, str):
        return gym.envs.registration.load_env_creator(entry_point)
    return entry_point


def entry_point_name(entry_point: Any) -> str:
    if isinstance(entry_point, str):
        return entry_point
    return f"{getattr(entry_point, '__module__', '?')}:{getattr(entry_point, '__qualname__', '?')}"


def _same_code(old: Any, new: Any) -> bool:
    """The same class or function, possibly imported twice (by another module name, or in a worker)."""
    if old is new or entry_point_name(old) == entry_point_name(new):
        return True
    old_file, new_file = source_file(old), source_file(new)
    return (
        old_file is not None
        and old_file == new_file
        and getattr(old, "__qualname__", None) == getattr(new, "__qualname__", None)
    )


def _normalize_preset(env_id: str, preset: Any, entry_point: Any) -> str | dict[str, str] | None:
    """Check the preset argument; YAML paths are taken relative to the file that defines the env."""
    if preset is None:
        return None
    base = source_file(entry_point)

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
    normalized_variants = normalize_variants(id, variants)
    normalized_preset = _normalize_preset(id, preset, entry_point)

    existing = gym.registry.get(id)
    if existing is not None and not overwrite and not _same_code(existing.entry_point, entry_point):
        by = "Gymnasium itself" if is_gymnasium_env(id) else entry_point_name(existing.entry_point)
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
    USER_ENVS[id] = EnvInfo(
        id=id,
        user=True,
        action_names=list(action_names) if action_names else None,
        preset=normalized_preset,
        module=entry_point_name(entry_point),
        source=source_file(entry_point),
        variants=normalized_variants,
        variants_from="declared: register_env(..., variants=...)" if normalized_variants else None,
        reward_threshold=reward_threshold,
        max_episode_steps=max_episode_steps,
    )
    return entry_point


def unregister_env(id: str) -> None:
    """Remove a registration (used by tests and by re-registration)."""
    USER_ENVS.pop(id, None)
    gym.registry.pop(id, None)


@contextlib.contextmanager
def temporary_registrations() -> Iterator[None]:
    """Undo every registration and module load made inside the ``with`` block (for tests).

    ``with temporary_registrations(): register_env(...)``; afterwards the registry, the
    record of loaded modules and discovered folders are as before, so the same files can
    be loaded again by a later test.
    """
    gym_registry = dict(gym.registry)
    user_envs = dict(USER_ENVS)
    loaded = loader_state()
    try:
        yield
    finally:
        gym.registry.clear()
        gym.registry.update(gym_registry)
        USER_ENVS.clear()
        USER_ENVS.update(user_envs)
        restore_loader_state(loaded)


def warn_problems(problems: Sequence[Any]) -> None:
    for problem in problems:
        warnings.warn(f"{problem.source}: {problem.message}", RuntimeWarning, stacklevel=3)


def register_factory(module: str, name: str) -> str | None:
    """``module:name`` where ``name`` is not a registered id but a callable of ``module`` (an
    environment class, or a function returning an environment: Gymnasium's, or PettingZoo's
    ``env``/``parallel_env``): registered as ``module.name``, whose id is returned; None when
    ``module`` (already imported) has no such callable."""
    factory = getattr(sys.modules.get(module), name, None)
    if not callable(factory) or (isinstance(factory, type) and not _is_env_class(factory)):
        return None
    factory_id = f"{module}.{name}"
    if factory_id not in gym.registry or gym.registry[factory_id].entry_point is not factory:
        gym.registry.pop(factory_id, None)
        gym.register(id=factory_id, entry_point=factory)
    return factory_id


def _is_env_class(cls: type) -> bool:
    """Whether ``cls`` builds an environment: a Gymnasium ``Env`` or a PettingZoo one (by name, so
    that PettingZoo need not be imported)."""
    names = {base.__name__ for base in cls.__mro__}
    return issubclass(cls, gym.Env) or bool(names & {"AECEnv", "ParallelEnv"})


def ensure_registered(env_id: str) -> str:
    """The registered id of ``env_id`` (``module:id`` imports ``module`` and gives ``id``); raise
    :class:`EnvNotFoundError` unless it is registered (after discovering ./envs and entry points).
    The message names the installed package that registers an unknown id, or the ``pip install``
    that provides it, when a well-known one does."""
    module, _ = split_env_id(env_id)
    bare = registered_id(env_id)
    if bare in gym.registry:
        return bare
    if module is not None:
        factory_id = register_factory(module, bare)
        if factory_id is not None:
            return factory_id
    warn_problems(discover_envs())  # the Python API finds ./envs and entry points too
    if bare in gym.registry:
        return bare
    try:
        gym.spec(bare)
    except gym.error.Error as exc:
        reason = str(exc).rstrip(".")
        if module is not None:
            raise EnvNotFoundError(
                f"unknown environment '{env_id}': importing {module} did not register '{bare}' "
                f"({reason}); 'ppo-envkit envs list --env-module {module}' lists what it registers"
            ) from None
        hint = provider_hint(bare)
        raise EnvNotFoundError(
            f"unknown environment '{env_id}': "
            + (
                f"{hint}"
                if hint
                else f"{reason}. Use 'ppo-envkit envs list' to see registered ids, or load your module "
                "with --env-module"
            )
        ) from None
    return bare
