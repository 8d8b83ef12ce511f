"""Building one environment: the one factory every tool uses (training copies, evaluation,
replay, the checker), with the wrappers the settings ask for.

The vector of training copies is built from these by :mod:`ppo_envkit.parallel.vectorize`.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym

from ..config import EnvConfig
from ..errors import ConfigError, contained, foreign
from .agent_stack import AgentIds, agent_spaces
from .discovery import EnvModuleError, cwd_importable, registered_by
from .failures import ContainExits
from .masks import ActionMasks
from .multiagent import adapt, non_gymnasium_creator
from .registry import ensure_registered, entry_point_callable
from .wrappers import apply_wrappers

__all__ = ["EntryPointError", "make_configured_env", "make_env", "wrap_env"]


class EntryPointError(EnvModuleError):
    """An environment's ``module:Class`` entry point cannot be imported; ``fix`` says what to do."""

    def __init__(self, message: str, fix: str):
        super().__init__(f"{message}; {fix}")
        self.problem, self.fix = message, fix


def make_env(
    env_id: str,
    kwargs: dict[str, Any] | None = None,
    *,
    render_mode: str | None = None,
    max_episode_steps: int | None = None,
    **make_kwargs: Any,
) -> gym.Env:
    """One environment instance (no ppo-envkit wrappers but :class:`~.failures.ContainExits`, which
    turns ``sys.exit()`` and the like from the user's code into an error). ``make_kwargs`` go to ``gym.make``
    (``disable_env_checker=True``, say). An entry point that cannot be imported raises
    :class:`EntryPointError`, which names it, the id, who registered it and the likely fix.
    ``env_id`` may be written ``module:id`` (Gymnasium's form: ``module`` is imported first)."""
    env_id = ensure_registered(env_id)
    cwd_importable()  # as under `python -m`: modules next to the user import
    extra: dict[str, Any] = {**(kwargs or {}), **make_kwargs}
    if max_episode_steps is not None:
        extra["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        extra["render_mode"] = render_mode
    try:
        env = gym.make(_adapting_spec(env_id), **extra)
        return ContainExits(env, check_rewards=False)  # wrap_env checks them
    except (ImportError, AttributeError) as exc:
        error = _entry_point_error(env_id, exc)
        if error is None:
            raise
        raise error from exc
    except TypeError as exc:
        unknown = _unknown_argument(env_id, kwargs or {}, exc)
        if unknown is None:
            raise
        raise unknown from exc
    except BaseException as exc:  # sys.exit() in the constructor: an error like any other
        if foreign(exc):
            raise contained(exc) from exc
        raise


class _Adapting:
    """An entry point whose PettingZoo environments come back as Gymnasium ones
    (:func:`~.multiagent.adapt`); ``gym.make`` accepts nothing else."""

    def __init__(self, creator: Any):
        self.creator = creator
        metadata = getattr(creator, "metadata", None)
        if isinstance(metadata, dict):
            self.metadata = metadata

    def __call__(self, **kwargs: Any) -> Any:
        return adapt(self.creator(**kwargs))


def _adapting_spec(env_id: str) -> gym.envs.registration.EnvSpec | str:
    """``env_id``'s spec with an entry point that adapts PettingZoo environments; the id itself
    when its entry point is a Gymnasium environment class (nothing to adapt)."""
    spec = gym.spec(env_id)
    creator = non_gymnasium_creator(spec)
    return env_id if creator is None else dataclasses.replace(spec, entry_point=_Adapting(creator))


def wrap_env(env: gym.Env, config: EnvConfig) -> gym.Env:
    """``env`` with what the settings add to every environment ppo-envkit steps (training,
    evaluation, replay): ``env.wrappers`` in order (innermost), frame stacking, action masks
    read into ``info["action_mask"]``, and (outermost, around every call into the user's code)
    :class:`~.failures.ContainExits`."""
    if isinstance(env, ContainExits):  # from make_env: moved outside the wrappers added here
        env = env.env
    env = apply_wrappers(env, config.wrappers, config.id)
    # Several agents (a PettingZoo parallel environment, stacked [A, ...] by AgentStack): the
    # agent's index when env.agent_id asks for it; frame stacking would stack the wrong axis.
    if agent_spaces(env) is not None:
        if config.agent_id:
            env = AgentIds(env)
        if config.frame_stack > 1:
            raise ConfigError(
                "env.frame_stack is not supported for several agents (PettingZoo parallel environments)"
            )
    if config.frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, config.frame_stack)
    if config.action_masks == "auto":
        env = ActionMasks(env)
    return ContainExits(env)


def make_configured_env(config: EnvConfig, *, render_mode: str | None = None, **make_kwargs: Any) -> gym.Env:
    """One environment as the settings describe it: ``env.id`` with ``env.kwargs``, its time
    limit, and :func:`wrap_env`'s wrappers; the observations are the ones the agent sees."""
    env = make_env(
        config.id,
        config.kwargs,
        render_mode=render_mode,
        max_episode_steps=config.max_episode_steps,
        **make_kwargs,
    )
    return wrap_env(env, config)


def _unknown_argument(env_id: str, kwargs: dict[str, Any], exc: TypeError) -> ConfigError | None:
    """A one-line error when ``exc`` says the constructor does not take one of ``env.kwargs``."""
    text = str(exc)
    if "unexpected keyword argument" not in text and "got multiple values" not in text:
        return None
    bad = [key for key in kwargs if f"'{key}'" in text]
    if not bad:
        return None
    accepted = ""
    try:
        parameters = inspect.signature(entry_point_callable(gym.spec(env_id).entry_point)).parameters
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        names = [p.name for p in parameters.values() if p.kind in keyword and p.name != "render_mode"]
        accepted = f" (it takes: {', '.join(names) or 'no arguments'})"
    except Exception:  # the entry point cannot be inspected: the error says less, nothing more
        pass
    return ConfigError(f"environment {env_id} does not accept env.kwargs '{bad[0]}'{accepted}")


def _entry_point_error(env_id: str, exc: BaseException) -> EntryPointError | None:
    """A readable error when ``exc`` came from importing ``env_id``'s string entry point."""
    spec = gym.registry.get(env_id)
    entry_point = getattr(spec, "entry_point", None)
    if not isinstance(entry_point, str) or ":" not in entry_point:
        return None
    module, _, attr = entry_point.partition(":")
    by = registered_by(env_id)
    registered = f" (registered by {by})" if by else ""
    what = f"environment {env_id}: cannot import its entry point '{entry_point}'{registered}"
    folder = "the current directory" if by is None or not by.endswith(".py") else f"the folder of {by}"
    if by is not None and by.endswith(".py") and str(Path(by).resolve().parent) == str(Path.cwd().resolve()):
        folder = "the current directory"
    elif by is not None and by.endswith(".py"):
        folder += " or the current directory"
    if isinstance(exc, ModuleNotFoundError) and exc.name and module.startswith(exc.name):
        path = exc.name.replace(".", "/")
        return EntryPointError(
            f"{what}: No module named '{exc.name}'",
            f"is {path}.py (or a package {path}/) in {folder}? Those are importable, as they are "
            f"when Python runs the registering file; or correct the entry point string",
        )
    if isinstance(exc, AttributeError) and f"'{attr.split('.')[0]}'" in str(exc):
        return EntryPointError(
            f"{what}: module '{module}' has no attribute '{attr}'",
            f"define {attr} in {module}, or correct the entry point string",
        )
    return None
