"""Checks of single values an environment returns: observations, rewards, flags, frames.

Each function returns a list of :class:`Problem` (empty when the value is fine);
:mod:`.checker` adds where it happened.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

from ..spaces import describe_space


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    code: str
    what: str
    fix: str


def _index(flat_index: int, shape: tuple[int, ...]) -> str:
    idx = np.unravel_index(flat_index, shape)
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def _array_problems(obs: Any, space: spaces.Space, name: str, dtype: np.dtype, shape: tuple) -> Any:
    """Type, shape and dtype of an array-valued part. Returns (problems, array or None)."""
    problems: list[Problem] = []
    arr = obs
    if not isinstance(obs, np.ndarray):
        if isinstance(obs, list | tuple | int | float | np.number):
            problems.append(
                Problem(
                    "warning",
                    "obs-type",
                    f"{name} is a {type(obs).__name__}, not a numpy array",
                    f"return np.array(..., dtype=np.{dtype})",
                )
            )
            arr = np.asarray(obs)
        else:
            problems.append(
                Problem(
                    "error",
                    "obs-type",
                    f"{name} is {type(obs).__name__}, but the space is {describe_space(space)}",
                    f"return a numpy array of shape {shape} and dtype {dtype}",
                )
            )
            return problems, None
    if arr.shape != tuple(shape):
        problems.append(
            Problem(
                "error",
                "obs-shape",
                f"{name} has shape {arr.shape}, but the observation space has shape {tuple(shape)}",
                f"return an array of shape {tuple(shape)}, or declare the space with shape={arr.shape}",
            )
        )
        return problems, None
    if arr.dtype != dtype:
        lossless = np.can_cast(arr.dtype, dtype, casting="same_kind")
        problems.append(
            Problem(
                "warning" if lossless else "error",
                "obs-dtype",
                f"{name} has dtype {arr.dtype}, but the observation space has dtype {dtype}",
                f"return obs.astype(np.{dtype}), or declare the space with dtype=np.{arr.dtype}",
            )
        )
    return problems, arr


def _box_problems(obs: Any, space: spaces.Box, name: str) -> list[Problem]:
    problems, arr = _array_problems(obs, space, name, space.dtype, space.shape)
    if arr is None:
        return problems
    if arr.dtype.kind == "O" or not np.issubdtype(arr.dtype, np.number):
        problems.append(
            Problem("error", "obs-type", f"{name} holds {arr.dtype} values, not numbers", "return numbers")
        )
        return problems
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        value = arr.reshape(-1)[i]
        problems.append(
            Problem(
                "error",
                "obs-nonfinite",
                f"{name} contains {value} at index {_index(i, arr.shape)}",
                "find where that element is computed (a division by zero? an overflow?) and keep it finite",
            )
        )
        return problems
    low = np.broadcast_to(space.low, arr.shape)
    high = np.broadcast_to(space.high, arr.shape)
    for mask, side, bound in (
        (arr < low, "below the low bound", low),
        (arr > high, "above the high bound", high),
    ):
        if mask.any():
            i = int(np.flatnonzero(mask)[0])
            problems.append(
                Problem(
                    "error",
                    "obs-bounds",
                    f"{name} is outside the observation space: element {_index(i, arr.shape)} is "
                    f"{arr.reshape(-1)[i]:.4g}, {side} {bound.reshape(-1)[i]:.4g}",
                    "clip it (np.clip(obs, low, high)), or widen the space's low/high "
                    "(-np.inf/np.inf are allowed)",
                )
            )
            break
    return problems


def _int_array_problems(obs: Any, space: spaces.Space, name: str) -> list[Problem]:
    if isinstance(space, spaces.MultiDiscrete):
        shape, low, high = space.shape, space.start, space.start + space.nvec - 1
    else:  # MultiBinary
        shape, low, high = space.shape, np.zeros(space.shape, np.int64), np.ones(space.shape, np.int64)
    problems, arr = _array_problems(obs, space, name, space.dtype, shape)
    if arr is None:
        return problems
    if not np.issubdtype(arr.dtype, np.integer) and not np.array_equal(arr, np.round(arr)):
        problems.append(
            Problem(
                "error", "obs-type", f"{name} holds non-integer values", f"return integers ({space.dtype})"
            )
        )
        return problems
    bad = (arr < low) | (arr > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        problems.append(
            Problem(
                "error",
                "obs-bounds",
                f"{name} is outside {describe_space(space)}: element {_index(i, arr.shape)} is "
                f"{arr.reshape(-1)[i]}, allowed {np.reshape(low, -1)[i]}..{np.reshape(high, -1)[i]}",
                "keep each element within its range, or enlarge the space",
            )
        )
    return problems


def _discrete_problems(obs: Any, space: spaces.Discrete, name: str) -> list[Problem]:
    if isinstance(obs, np.ndarray) and obs.shape == () and np.issubdtype(obs.dtype, np.integer):
        value = int(obs)
    elif isinstance(obs, int | np.integer) and not isinstance(obs, bool):
        value = int(obs)
    else:
        return [
            Problem(
                "error",
                "obs-type",
                f"{name} is {type(obs).__name__} {obs!r}, but {describe_space(space)} expects an int",
                "return an int (int(value))",
            )
        ]
    lo, hi = int(space.start), int(space.start + space.n - 1)
    if not lo <= value <= hi:
        return [
            Problem(
                "error",
                "obs-bounds",
                f"{name} is {value}, outside {describe_space(space)} (allowed {lo}..{hi})",
                f"keep it within {lo}..{hi}, or enlarge the space",
            )
        ]
    return []


def observation_problems(obs: Any, space: spaces.Space, name: str = "the observation") -> list[Problem]:
    """Everything wrong with ``obs`` as an element of ``space`` (recursing into Dict/Tuple)."""
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, Mapping):
            return [
                Problem(
                    "error",
                    "obs-type",
                    f"{name} is a {type(obs).__name__}, but the observation space is a Dict",
                    f"return a dict with the keys {list(space.spaces)}",
                )
            ]
        missing = [k for k in space.spaces if k not in obs]
        extra = [k for k in obs if k not in space.spaces]
        if missing or extra:
            parts = ([f"lacks {missing}"] if missing else []) + (
                [f"has unknown keys {extra}"] if extra else []
            )
            return [
                Problem(
                    "error",
                    "obs-keys",
                    f"{name} {' and '.join(parts)}",
                    f"return exactly the keys of the observation space: {list(space.spaces)}",
                )
            ]
        return [
            p for k, sub in space.spaces.items() for p in observation_problems(obs[k], sub, f"{name}[{k!r}]")
        ]
    if isinstance(space, spaces.Tuple):
        if not isinstance(obs, tuple) or len(obs) != len(space.spaces):
            return [
                Problem(
                    "error",
                    "obs-type",
                    f"{name} is not a tuple of {len(space.spaces)} parts",
                    f"return a tuple matching {describe_space(space)}",
                )
            ]
        return [
            p for i, sub in enumerate(space.spaces) for p in observation_problems(obs[i], sub, f"{name}[{i}]")
        ]
    if isinstance(space, spaces.Box):
        return _box_problems(obs, space, name)
    if isinstance(space, spaces.Discrete):
        return _discrete_problems(obs, space, name)
    if isinstance(space, spaces.MultiDiscrete | spaces.MultiBinary):
        return _int_array_problems(obs, space, name)
    if not space.contains(obs):
        return [
            Problem(
                "error",
                "obs-bounds",
                f"{name} is not an element of {describe_space(space)}",
                "return values that the observation space contains",
            )
        ]
    return []


def reward_problems(reward: Any) -> list[Problem]:
    """The reward must be one finite number."""
    if isinstance(reward, np.ndarray):
        if reward.shape != ():
            return [
                Problem(
                    "error",
                    "reward-type",
                    f"the reward is an array of shape {reward.shape}, not a number",
                    "return one float: float(reward) or reward.item() (sum the parts if there are several)",
                )
            ]
        reward = reward[()]
    if isinstance(reward, bool | np.bool_):
        return [Problem("warning", "reward-type", "the reward is a bool", "return float(reward)")]
    if not isinstance(reward, int | float | np.integer | np.floating):
        return [
            Problem(
                "error",
                "reward-type",
                f"the reward is {type(reward).__name__} {reward!r}, not a number",
                "return a float as the second value of step()",
            )
        ]
    if not np.isfinite(reward):
        return [
            Problem(
                "error",
                "reward-nonfinite",
                f"the reward is {float(reward)}",
                "find where the reward is computed (a division by zero? log of 0?) and keep it finite",
            )
        ]
    return []


def flag_problems(value: Any, name: str) -> list[Problem]:
    """``terminated``/``truncated`` must be bools."""
    if isinstance(value, bool | np.bool_):
        return []
    shown = value if not isinstance(value, np.ndarray) else f"array of shape {value.shape}"
    return [
        Problem(
            "error",
            f"{name}-type",
            f"{name} is {type(value).__name__} ({shown}), not a bool",
            f"return a bool for {name}, e.g. bool(...)",
        )
    ]


def info_problems(info: Any, method: str) -> list[Problem]:
    if isinstance(info, dict):
        return []
    return [
        Problem(
            "error",
            f"{method}-info",
            f"the info returned by {method}() is {type(info).__name__}, not a dict",
            "return a dict (empty is fine: {})",
        )
    ]


def frame_problems(frame: Any) -> list[Problem]:
    """An ``rgb_array`` frame must be a (height, width, 3) uint8 array."""
    code = "render-frame"
    if frame is None:
        return [
            Problem(
                "error",
                code,
                "render() returned None in rgb_array mode",
                "store the mode in __init__ (self.render_mode = render_mode) and return the frame from "
                "render() when it is 'rgb_array'",
            )
        ]
    if not isinstance(frame, np.ndarray):
        return [
            Problem(
                "error",
                code,
                f"render() returned {type(frame).__name__}, not a numpy array",
                "return np.array of shape (height, width, 3) and dtype uint8",
            )
        ]
    problems = []
    if frame.ndim != 3 or frame.shape[2] != 3:
        hint = (
            "drop the alpha channel: frame[..., :3]"
            if frame.ndim == 3 and frame.shape[2] == 4
            else "return shape (height, width, 3); for a grey image, np.repeat(img[..., None], 3, axis=2)"
        )
        problems.append(
            Problem("error", code, f"render() returned shape {frame.shape}, not (height, width, 3)", hint)
        )
    if frame.dtype != np.uint8:
        problems.append(
            Problem(
                "error",
                "render-dtype",
                f"render() returned dtype {frame.dtype}, not uint8",
                "scale colours to 0..255 and cast: (frame * 255).astype(np.uint8) for 0..1 floats",
            )
        )
    return problems


def same_observation(a: Any, b: Any) -> bool:
    """Deep equality of two observations (NaNs equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_observation(a[k], b[k]) for k in a)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same_observation(x, y) for x, y in zip(a, b, strict=True))
    try:
        x, y = np.asarray(a), np.asarray(b)
        if x.shape != y.shape:
            return False
        return bool(np.array_equal(x, y, equal_nan=x.dtype.kind in "fc" and y.dtype.kind in "fc"))
    except (TypeError, ValueError):
        return bool(a == b)
