"""Questions about registered environments: is it the user's, what is known of it, which
variant and preset, which modules provide it.

User registrations live in :mod:`.registry`; Gymnasium's own environments get an
:class:`~.registry.EnvInfo` built from their spec (with the action names and variants
ppo-envkit knows for them).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym

from .discovery import discover_envs, user_modules
from .factory import make_env
from .ids import registered_id, split_env_id
from .registry import (
    ACTION_SPACE_KINDS,
    BUILTIN_ACTION_NAMES,
    BUILTIN_VARIANTS,
    USER_ENVS,
    EnvInfo,
    Variant,
    VariantError,
    ensure_registered,
    entry_point_callable,
    entry_point_name,
    is_gymnasium_env,
    normalize_variants,
    warn_problems,
)

__all__ = [
    "current_variant",
    "env_info",
    "env_spaces",
    "is_user_env",
    "list_envs",
    "modules_providing",
    "registered_preset",
    "resolve_variant",
]


def is_user_env(env_id: str) -> bool:
    """Registered by user code (through :func:`register_env` or ``gym.register``) or another
    package, not by Gymnasium (``module:id`` is looked up as ``id``, after importing ``module``)."""
    env_id = registered_id(env_id)
    return env_id in USER_ENVS or (env_id in gym.registry and not is_gymnasium_env(env_id))


def modules_providing(env_id: str) -> list[str]:
    """The loaded environment modules that an agent of ``env_id`` needs: none for Gymnasium's own
    environments nor for ``module:id`` (the id names its module), the one that registered it when
    that is known, else every loaded one."""
    if split_env_id(env_id)[0] is not None or not is_user_env(env_id):
        return []
    loaded = user_modules()
    info = env_info(env_id)
    module = (info.module or "").split(":")[0]
    source = str(Path(info.source).resolve()) if info.source else None

    def provides(target: str) -> bool:
        if target.endswith(".py"):
            return source is not None and str(Path(target).resolve()) == source
        name = target.split(":")[0]
        return bool(module) and (module == name or module.startswith(name + "."))

    return [t for t in loaded if provides(t)] or loaded


#: The constructor argument that selects continuous actions by convention (LunarLander, CarRacing).
CONTINUOUS_ARGUMENT = "continuous"


def env_info(id: str) -> EnvInfo:
    """ppo-envkit's knowledge of ``id`` (user or built-in).

    Variants come from ``register_env(..., variants=...)``, from ppo-envkit's list of
    built-in environments, or, for user environments, by convention: an entry point whose
    constructor takes a boolean ``continuous`` argument (as Gymnasium's LunarLander and
    CarRacing do) has a discrete (``continuous=False``) and a continuous
    (``continuous=True``) variant.
    """
    spec = gym.registry.get(id)
    if id in USER_ENVS:
        info = USER_ENVS[id]
    else:
        base = id.split("/")[-1].split("-v")[0]
        flag = BUILTIN_VARIANTS.get(id)
        info = EnvInfo(
            id=id,
            user=is_user_env(id),
            action_names=BUILTIN_ACTION_NAMES.get(base),
            module=entry_point_name(spec.entry_point) if spec is not None and spec.entry_point else None,
            variants=normalize_variants(id, flag) if flag else {},
            variants_from="built in (a boolean 'continuous' argument)" if flag else None,
            reward_threshold=spec.reward_threshold if spec is not None else None,
            max_episode_steps=spec.max_episode_steps if spec is not None else None,
        )
    # (Gymnasium's own environments are not imported to look: that would import all of them.)
    convention = info.user and not info.variants and spec is not None
    if convention and _takes_boolean_flag(spec.entry_point, CONTINUOUS_ARGUMENT):
        info = replace(
            info,
            variants=normalize_variants(id, CONTINUOUS_ARGUMENT),
            variants_from=f"by convention: {_callable_name(spec.entry_point)} takes a boolean "
            f"'{CONTINUOUS_ARGUMENT}' argument",
        )
    return info


def _callable_name(entry_point: Any) -> str:
    if isinstance(entry_point, str):
        return entry_point.partition(":")[2] or entry_point
    return getattr(entry_point, "__qualname__", str(entry_point))


def _takes_boolean_flag(entry_point: Any, name: str) -> bool:
    """Whether ``entry_point(...)`` accepts ``name`` as a bool (by default value or annotation)."""
    try:
        parameter = inspect.signature(entry_point_callable(entry_point)).parameters.get(name)
    except Exception:  # an entry point that does not import: no variants (make_env explains)
        return False
    if parameter is None:
        return False
    return isinstance(parameter.default, bool) or parameter.annotation in (bool, "bool")


def list_envs(user_only: bool = False, *, discover: bool = True) -> list[EnvInfo]:
    """Registered environments, user ones first.

    With ``discover`` (the default), the ``envs/`` folder of the current directory and
    installed ``ppo_envkit.envs`` entry points are imported first (once per process).
    """
    if discover:
        warn_problems(discover_envs())
    users = sorted((env_info(i) for i in gym.registry if is_user_env(i)), key=lambda e: e.id)
    if user_only:
        return users
    builtin = [env_info(i) for i in sorted(gym.registry) if not is_user_env(i)]
    return users + builtin


def env_spaces(env_id: str, kwargs: Mapping[str, Any] | None = None) -> tuple[gym.Space, gym.Space]:
    """``(observation_space, action_space)`` of ``env_id``, by building one copy (warnings muted)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(env_id, dict(kwargs or {}))
        try:
            return env.observation_space, env.action_space
        finally:
            env.close()


# ----------------------------------------------------------------------------- variants and presets


def resolve_variant(env_id: str, action_space: str) -> Variant:
    """The variant that ``--action-space action_space`` selects for ``env_id``."""
    if action_space not in ACTION_SPACE_KINDS:
        raise VariantError(f"--action-space must be 'discrete' or 'continuous', got {action_space!r}")
    env_id = ensure_registered(env_id)
    variants = env_info(env_id).variants
    if not variants:
        raise VariantError(
            f"--action-space {action_space}: {env_id} has no discrete/continuous variants; drop "
            "--action-space, give its constructor a boolean 'continuous' argument (the LunarLander "
            f"convention), or declare them with register_env('{env_id}', ..., variants='continuous') "
            "or variants={'continuous': 'OtherId-v0'}"
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
        params = inspect.signature(entry_point_callable(entry_point)).parameters.values()
    except Exception:
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def current_variant(env_id: str, kwargs: Mapping[str, Any] | None = None) -> str | None:
    """Which declared variant ``env_id`` built with ``kwargs`` is (None if it declares none)."""
    env_id = registered_id(env_id)
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
    env_id = registered_id(env_id)
    if env_id not in gym.registry:
        return None
    preset = env_info(env_id).preset
    if isinstance(preset, dict):
        variant = variant or current_variant(env_id)
        return preset.get(variant) if variant else None
    return preset
