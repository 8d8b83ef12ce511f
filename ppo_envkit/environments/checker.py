"""The environment checker: Gymnasium's ``check_env`` plus ppo-envkit's own checks.

Every problem becomes a :class:`Finding` in plain words: what is wrong, where (the
method, the step, the file and line), and how to fix it. Errors stop training;
warnings do not. ``ppo-envkit envs check ID`` runs everything; ``train`` runs the
quick part (``quick=True``: construction, spaces, reset and seeding, a few dozen
random steps) before it trains a user environment.

This module runs the environment (reset, seeding, random steps, rendering); what it
declares is checked in :mod:`.space_checks`; the observation, reward and flag checks live
in :mod:`.checks`; Gymnasium's ``check_env`` in :mod:`.gymnasium_check`; findings and how
they are located in the user's file, in :mod:`.findings`.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from ..config import WrapperSpec, split_env_id
from ..errors import ActionMaskError
from . import findings
from .checks import (
    flag_problems,
    frame_problems,
    info_problems,
    observation_problems,
    reward_problems,
    same_observation,
)
from .factory import EntryPointError, make_env
from .failures import ContainExits
from .findings import (
    CheckReport,
    EnvCallTimeout,
    Findings,
    ReturnLine,
    TimeLimited,
    exception_finding,
    install_fix,
    method_location,
    time_limit,
)
from .gymnasium_check import run_gymnasium_checker
from .masks import given_mask, has_mask_method, sample_legal, to_flat_mask
from .space_checks import check_spaces
from .wrappers import apply_wrappers

QUICK_STEPS = 64
FULL_STEPS = 1000


def _make(
    found: Findings, env_id: str, kwargs: dict[str, Any], wrappers: Sequence[WrapperSpec] = (), **extra: Any
) -> gym.Env | None:
    """Build without Gymnasium's passive checker wrapper: its assertions would hide ours.
    ``wrappers`` (``env.wrappers``) are applied as training applies them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            env = make_env(env_id, kwargs, disable_env_checker=True, **extra)
    except EntryPointError as exc:
        found.add("error", "entry-point", exc.problem, f"creating the environment {env_id}", exc.fix)
        return None
    except Exception as exc:
        exception_finding(found, "make", "creating the environment", exc)
        return None
    if not wrappers:
        return env
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ContainExits(apply_wrappers(env.env, wrappers, env_id), check_rewards=False)
    except Exception as exc:
        env.close()
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        found.add(
            "error",
            "wrapper",
            str(exc),
            "env.wrappers",
            install_fix(cause) or "correct env.wrappers (names, keyword arguments, order)",
            details="".join(traceback.format_exception(type(cause), cause, cause.__traceback__)),
        )
        return None


class _BadMask(Exception):
    """The action mask is wrong (a finding says how): stepping on could send an illegal action."""


def _mask(found: Findings, env: gym.Env, info: Any, where: str) -> np.ndarray | None:
    """The action mask after a reset or step (None without one), checked as training checks it;
    :class:`_BadMask` when it is wrong."""
    try:
        given = given_mask(env, info)
    except Exception as exc:  # only action_masks() runs the user's code here
        exception_finding(found, "mask-exception", "action_masks()", exc, f" {where}")
        raise _BadMask from exc
    if given is None:
        return None
    raw, source = given
    try:
        return to_flat_mask(raw, env.action_space, f"{source} {where}")
    except ActionMaskError as exc:
        found.add(
            "error",
            "action-mask",
            str(exc),
            f"{where}, {method_location(env, 'action_masks' if has_mask_method(env) else 'step')}",
            "return a boolean numpy array, True for each legal action, in the layout the docs page "
            "'Masks, images and frame stacks' (docs/masks-images.md) gives for this action space, "
            "with at least one legal action",
        )
        raise _BadMask from exc


def _reset(found: Findings, env: gym.Env, seed: int | None, at: str) -> tuple[bool, Any]:
    """One reset, checked. Returns (ok, observation)."""
    tracer = ReturnLine(env, "reset")
    try:
        result = tracer.call(env.reset, seed=seed) if seed is not None else tracer.call(env.reset)
    except Exception as exc:
        exception_finding(
            found, "reset-exception", f"reset({f'seed={seed}' if seed is not None else ''})", exc, at
        )
        return False, None
    where = f"reset(){at}, {tracer.where(method_location(env, 'reset'))}"
    if not (isinstance(result, tuple) and len(result) == 2):
        found.add(
            "error",
            "reset-return",
            f"reset() returned {type(result).__name__}"
            + (f" of length {len(result)}" if isinstance(result, tuple) else "")
            + ", not (observation, info)",
            where,
            "end reset() with `return observation, {}` (the dict holds extra information)",
        )
        return False, None
    obs, info = result
    found.problems(observation_problems(obs, env.observation_space), where)
    found.problems(info_problems(info, "reset"), where)
    try:
        env.last_mask = _mask(found, env, info, f"after reset(){at}")
    except _BadMask:
        return False, None
    return True, obs


def _check_seeding(found: Findings, env: gym.Env, seed: int) -> bool:
    """Same seed, same first observation, even after some steps in between."""
    ok, first = _reset(found, env, seed, "")
    if not ok:
        return False
    spec = env.spec
    if spec is not None and spec.nondeterministic:
        return True
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    try:
        for _ in range(5):
            result = env.step(sample_legal(env.action_space, env.last_mask, rng))
            if any(result[2:4]):
                break
            env.last_mask = _mask(Findings(), env, result[4], "")  # reported by the step checks
    except Exception:
        pass  # reported by the step checks
    ok, again = _reset(found, env, seed, " (second time)")
    if ok and not same_observation(first, again):
        found.add(
            "error",
            "seed",
            f"reset(seed={seed}) returned a different first observation the second time "
            f"({_short(first)}, then {_short(again)})",
            f"reset(), {method_location(env, 'reset')}",
            "call super().reset(seed=seed) at the start of reset(), draw every random number from "
            "self.np_random (not np.random or random), and reset all episode state there",
        )
    return ok


def _run_steps(found: Findings, env: gym.Env, steps: int, seed: int, quick: bool = False) -> tuple[int, int]:
    """Random actions for ``steps`` steps, resetting at episode ends. Returns (steps, episodes).

    Whether episodes end is judged by the full check only: the quick one's few dozen steps say
    nothing about it (MiniGrid ends DoorKey's episodes after 250 steps, inside the environment),
    and ``train`` would count a warning that ``envs check`` then does not show."""
    env.action_space.seed(seed + 1)
    rng = np.random.default_rng(seed + 1)
    step_at = method_location(env, "step")
    tracer = ReturnLine(env, "step")
    done_steps = episodes = 0
    for t in range(1, steps + 1):
        action = sample_legal(env.action_space, env.last_mask, rng)  # never an illegal one
        try:
            result = tracer.call(env.step, action)
        except Exception as exc:
            exception_finding(found, "step-exception", f"step({_short(action)})", exc, f" at step {t}")
            break
        done_steps = t
        where = f"step() at step {t}, {tracer.where(step_at)}"
        if not (isinstance(result, tuple) and len(result) == 5):
            n = len(result) if isinstance(result, tuple) else None
            old_api = n == 4
            found.add(
                "error",
                "step-return",
                f"step() returned {f'{n} values' if n is not None else type(result).__name__}, "
                "not (observation, reward, terminated, truncated, info)"
                + (": that is the old Gym API with one `done` flag" if old_api else ""),
                where,
                "return observation, reward, terminated, truncated, info; terminated = the task ended "
                "(goal, crash), truncated = cut short (a time limit)",
            )
            break
        obs, reward, terminated, truncated, info = result
        found.problems(observation_problems(obs, env.observation_space), where)
        found.problems(reward_problems(reward), where)
        found.problems(flag_problems(terminated, "terminated") + flag_problems(truncated, "truncated"), where)
        found.problems(info_problems(info, "step"), where)
        ended = bool(np.any(terminated)) or bool(np.any(truncated))
        try:  # (a final state's mask is not read: no action is chosen there)
            env.last_mask = None if ended else _mask(found, env, info, f"after step {t}")
        except _BadMask:
            break
        if ended:
            episodes += 1
            if not _reset(found, env, None, f" after step {t}")[0]:
                break
    spec = env.spec
    no_limit = spec is None or spec.max_episode_steps is None
    if not quick and episodes == 0 and done_steps == steps and no_limit:
        found.add(
            "warning",
            "no-episode-end",
            f"no episode ended in {steps} random steps and there is no time limit",
            f"step(), {step_at}",
            "pass max_episode_steps=... to register_env (episodes are then truncated), or end "
            "episodes with terminated=True",
        )
    return done_steps, episodes


def _nondeterministic(env_id: str) -> bool:
    spec = gym.registry.get(split_env_id(env_id)[1])  # the module of module:id is imported by now
    return bool(spec is not None and spec.nondeterministic)


def _check_render(
    found: Findings, env_id: str, kwargs: dict[str, Any], seed: int, wrappers: Sequence[WrapperSpec] = ()
) -> None:
    probe = _make(found, env_id, kwargs, wrappers)
    if probe is None:
        return
    modes = probe.metadata.get("render_modes", [])
    probe.close()
    if "rgb_array" not in modes:
        found.add(
            "warning",
            "render-missing",
            "the environment does not declare rgb_array rendering, so replay and --record cannot show it",
            "metadata['render_modes']",
            "add metadata = {'render_modes': ['rgb_array'], 'render_fps': 30}, accept render_mode in "
            "__init__, and return an (height, width, 3) uint8 array from render()",
        )
        return
    env = _make(found, env_id, kwargs, wrappers, render_mode="rgb_array")
    if env is None:
        return
    at = method_location(env, "render")
    try:
        _, info = env.reset(seed=seed)
        mask = _mask(Findings(), env, info, "")
        for label in ("after reset()", "after one step"):
            try:
                frame = env.render()
            except Exception as exc:
                exception_finding(found, "render-exception", "render()", exc, f" {label}")
                return
            problems = frame_problems(frame)
            found.problems(problems, f"render() in rgb_array mode {label}, {at}")
            if problems:
                return
            env.action_space.seed(seed)
            info = env.step(sample_legal(env.action_space, mask, np.random.default_rng(seed)))[4]
            mask = _mask(Findings(), env, info, "")
    except Exception:
        pass  # reset/step failures are reported by the other checks
    finally:
        env.close()


def _short(value: Any) -> str:
    text = np.array2string(value, precision=3, threshold=8) if isinstance(value, np.ndarray) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_environment(
    env_id: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    quick: bool = False,
    steps: int | None = None,
    seed: int = 0,
    max_episode_steps: int | None = None,
    expect: str | None = None,
    wrappers: Sequence[WrapperSpec] = (),
) -> CheckReport:
    """Check ``env_id`` built with ``kwargs``; never raises for problems of the environment.

    ``quick`` skips rendering and Gymnasium's checker and steps :data:`QUICK_STEPS` times
    (:data:`FULL_STEPS` otherwise, or ``steps``). ``expect`` (``"discrete"``/``"continuous"``)
    also checks that the action space fits the variant asked for. ``wrappers`` (``env.wrappers``)
    are applied to every copy the checker builds, as training applies them.
    """
    kwargs = dict(kwargs or {})
    steps = steps if steps is not None else (QUICK_STEPS if quick else FULL_STEPS)
    found = Findings()
    report = CheckReport(env_id, kwargs, quick=quick)
    extra = {"max_episode_steps": max_episode_steps} if max_episode_steps else {}
    with time_limit(findings.CALL_TIME_LIMIT_S, "building the environment"):
        made = _make(found, env_id, kwargs, wrappers, **extra)
    if made is not None:
        env = TimeLimited(made)  # a hanging call becomes a finding, not a hung checker
        env.last_mask = None  # the action mask in force: random steps take legal actions only
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Gymnasium's own warnings are reported by its checker
                if check_spaces(found, env, expect) and _check_seeding(found, env, seed):
                    report.steps, report.episodes = _run_steps(found, env, steps, seed, quick)
        except EnvCallTimeout as exc:
            exception_finding(found, "hang", "the environment", exc)
        finally:
            try:
                env.close()
            except Exception as exc:
                exception_finding(found, "close-exception", "close()", exc)
        if not quick and not env.timed_out:  # a hung environment would hang the rest too
            try:
                with warnings.catch_warnings(), time_limit(4 * findings.CALL_TIME_LIMIT_S, "rendering"):
                    warnings.simplefilter("ignore")
                    _check_render(found, env_id, kwargs, seed, wrappers)
                with time_limit(4 * findings.CALL_TIME_LIMIT_S, "Gymnasium's checker"):
                    if (fresh := _make(found, env_id, kwargs, wrappers)) is not None:
                        run_gymnasium_checker(found, fresh, nondeterministic=_nondeterministic(env_id))
            except EnvCallTimeout as exc:
                exception_finding(found, "hang", "the environment", exc)
    report.findings = found.items
    return report
