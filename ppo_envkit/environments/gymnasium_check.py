"""Gymnasium's own environment checker (``gymnasium.utils.env_checker.check_env``), its
complaints turned into findings word for word.

Part of the environment checker (:mod:`.checker`). When ``check_env`` fails (it raises at
its first failed assertion) that is an error, whatever ppo-envkit's own checks found: an
environment that Gymnasium rejects does not pass ``envs check``. Its warnings are warnings.
"""

from __future__ import annotations

import re
import warnings

import gymnasium as gym

from ..errors import contained, foreign
from .discovery import user_location
from .findings import Findings
from .masks import has_mask_method

__all__ = ["GYMNASIUM_DOCS", "run_gymnasium_checker"]

GYMNASIUM_DOCS = "https://gymnasium.farama.org/introduction/create_custom_env/"
WHERE = "gymnasium.utils.env_checker.check_env"

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _gives_masks(env: gym.Env) -> bool:
    """Whether ``env`` gives action masks (by method, or in the info of its first reset)."""
    if has_mask_method(env):
        return True
    try:
        info = env.reset(seed=0)[1]
    except Exception:  # reported by the other checks
        return False
    return isinstance(info, dict) and "action_mask" in info


def run_gymnasium_checker(found: Findings, env: gym.Env, *, nondeterministic: bool = False) -> None:
    """Run ``check_env`` on ``env`` (built without the passive checker) and close it.

    Not run on an environment that gives action masks: ``check_env`` steps with random
    actions, illegal ones included. ``nondeterministic`` (the registration says so) turns its
    determinism assertions into warnings that say why.
    """
    from gymnasium.utils.env_checker import check_env

    if _gives_masks(env):
        env.close()
        return
    earlier = bool(found.items)
    collected: list[tuple[str, str]] = []
    raised_at = None  # the user's line, when check_env failed because the environment raised
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            check_env(env.unwrapped, skip_render_check=True)  # unwrapped: no ContainExits around it
        except BaseException as exc:
            if not (isinstance(exc, Exception) or foreign(exc)):
                raise  # Ctrl-C
            what = str(contained(exc)) if foreign(exc) else f"{type(exc).__name__}: {exc}"
            collected.append(("error", what))  # sys.exit() in step(): "SystemExit: 4"
            raised_at = user_location(exc.__traceback__)
        finally:
            env.close()
    collected += [("warning", _ANSI.sub("", str(w.message)).removeprefix("WARN: ").strip()) for w in caught]
    if nondeterministic:  # its determinism assertions do not apply
        collected = [
            ("warning", f"{m} (expected: registered with nondeterministic=True)")
            if "determinis" in m.lower()
            else (severity, m)
            for severity, m in collected
        ]
    seen: set[str] = set()
    for severity, message in collected:
        if message in seen:
            continue
        seen.add(message)
        where, fix = WHERE, f"see Gymnasium's guide to custom environments: {GYMNASIUM_DOCS}"
        if severity == "error" and raised_at:
            where, fix = f"{WHERE}, {raised_at}", f"fix the code at {raised_at}"
        elif severity == "error" and earlier:
            fix = "fix the other findings here (Gymnasium stops at its first failed check), then check again"
        found.add(severity, f"gymnasium:{len(seen)}", message, where, fix, source="gymnasium")
