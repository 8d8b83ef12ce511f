"""Wrappers as settings: ``env.wrappers``, Gymnasium wrapper classes named ``module:Class``.

The settings hold names and keyword arguments, never code; the agent file records them, so
every tool that builds the environment (training copies, evaluation, replay, the checker,
``export --check``) applies the same wrappers in the same order, innermost first, before
frame stacking (:func:`~.factory.wrap_env`). A name is imported as installed packages are
(the current directory is importable, as under ``python -m``), never from a path, and it
must name a ``gymnasium.Wrapper`` subclass: an agent file from someone else names a wrapper
class of an installed package, nothing that runs on its own. Bad names, missing modules and
keyword arguments the class does not take are one-line :class:`~ppo_envkit.errors.ConfigError`.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from ..config import WrapperSpec
from ..errors import ConfigError, brief, contained, foreign
from .discovery import cwd_importable
from .ids import KNOWN_PACKAGES

__all__ = ["apply_wrappers", "check_wrappers", "wrapper_class"]


def _install_hint(module: str) -> str:
    top = module.split(".")[0]
    known = next((p for p in KNOWN_PACKAGES if p.module == top), None)
    return f" (pip install {known.pip})" if known else ""


def _wrapper_names(module: Any) -> list[str]:
    return [
        name
        for name, value in vars(module).items()
        if isinstance(value, type) and issubclass(value, gym.Wrapper) and not name.startswith("_")
    ]


def wrapper_class(spec: WrapperSpec) -> type[gym.Wrapper]:
    """The class ``spec.name`` names, its keyword arguments checked against its signature."""
    module_name, _, attr = spec.name.partition(":")
    cwd_importable()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise ConfigError(
                f"env.wrappers: no module named '{exc.name}' "
                f"(wrapper {spec.name}){_install_hint(module_name)}"
            ) from None
        raise ConfigError(
            f"env.wrappers: importing {module_name} (wrapper {spec.name}) failed: {brief(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise ConfigError(
            f"env.wrappers: importing {module_name} (wrapper {spec.name}) raised "
            f"{type(exc).__name__}: {brief(exc)}"
        ) from exc
    value: Any = module
    for part in attr.split("."):
        value = getattr(value, part, None)
        if value is None:
            close = difflib.get_close_matches(attr, _wrapper_names(module), n=3)
            maybe = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"env.wrappers: module {module_name} has no '{attr}'{maybe}")
    if not (isinstance(value, type) and issubclass(value, gym.Wrapper)):
        what = type(value).__name__ if not isinstance(value, type) else f"class {value.__name__}"
        raise ConfigError(
            f"env.wrappers: {spec.name} is a {what}, not a gymnasium.Wrapper class; only wrapper "
            "classes are applied, by name"
        )
    _check_arguments(spec, value)
    return value


def _check_arguments(spec: WrapperSpec, cls: type[gym.Wrapper]) -> None:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):  # a class without an inspectable signature: the call will say
        return
    parameters = list(signature.parameters.values())
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    names = [p.name for p in parameters[1:] if p.kind in keyword]
    try:
        signature.bind(None, **spec.kwargs)
    except TypeError as exc:
        takes = f" (it takes: {', '.join(names)})" if names else " (it takes no keyword arguments)"
        unknown = [k for k in spec.kwargs if k not in names]
        if unknown and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            raise ConfigError(f"env.wrappers: {spec.name} does not accept '{unknown[0]}'{takes}") from None
        raise ConfigError(f"env.wrappers: {spec.label()}: {exc}{takes}") from None


def check_wrappers(specs: Sequence[WrapperSpec]) -> None:
    """Import and check every wrapper now (at settings time), so that a bad one is one line
    before anything is built."""
    for spec in specs:
        wrapper_class(spec)


def apply_wrappers(env: gym.Env, specs: Sequence[WrapperSpec], env_id: str = "") -> gym.Env:
    """``env`` wrapped by each of ``specs``, in order (the first is innermost)."""
    for spec in specs:
        cls = wrapper_class(spec)
        try:
            env = cls(env, **spec.kwargs)
        except Exception as exc:
            on = f" around {env_id}" if env_id else ""
            install = ""
            if isinstance(exc, gym.error.DependencyNotInstalled):
                install = " (the package it needs is missing)"
            raise ConfigError(
                f"env.wrappers: {spec.label()} could not be applied{on}{install}: "
                f"{type(exc).__name__}: {brief(exc, 300)}"
            ) from exc
        except BaseException as exc:  # sys.exit() in a wrapper's constructor
            if foreign(exc):
                raise contained(exc) from exc
            raise
    return env
