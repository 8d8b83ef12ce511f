"""Observation spaces: batched flattening for the MLP, and spaces as plain data.

Observations are turned into one float32 matrix ``[batch, flat_dim]``: ``Box`` parts
are flattened, ``Discrete`` and ``MultiDiscrete`` parts one-hot encoded,
``MultiBinary`` parts cast, and ``Dict``/``Tuple`` spaces concatenated in the
space's own key order. Spaces are serialized to JSON-ready dicts so that an agent
file records them without pickling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

SUPPORTED_OBSERVATION_SPACES = (
    "Box (uint8 images through a CNN), Discrete, MultiDiscrete, MultiBinary, and Dict/Tuple of those"
)


class UnsupportedSpaceError(TypeError):
    """A space that no encoder or head handles; the message names the supported ones."""


#: The action spaces a policy head exists for (:func:`ppo_envkit.algo.heads.make_head` builds
#: them; this is the knowledge both it and the environment checker need, without torch).
ACTION_SPACE_TYPES: tuple[type[spaces.Space], ...] = (
    spaces.Discrete,
    spaces.Box,
    spaces.MultiDiscrete,
    spaces.MultiBinary,
)
SUPPORTED_ACTION_SPACES = (
    "Discrete, Box (Gaussian, optionally tanh-squashed), MultiDiscrete, MultiBinary, "
    "and Tuple/Dict of those (nested too)"
)

#: Composite action spaces: one head per leaf (:class:`ppo_envkit.algo.heads.CompositeHead`).
COMPOSITE_ACTION_SPACE_TYPES: tuple[type[spaces.Space], ...] = (spaces.Tuple, spaces.Dict)


def action_leaves(
    space: spaces.Space, path: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], spaces.Space]]:
    """``(path, leaf space)`` of every simple part of a composite action space, in the space's
    own order (Tuple positions, Dict keys); ``[((), space)]`` for a simple one."""
    if isinstance(space, spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in action_leaves(sub, (*path, key))]
    if isinstance(space, spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in action_leaves(sub, (*path, i))]
    return [(path, space)]


def check_action_space(space: spaces.Space) -> None:
    """Raise :class:`UnsupportedSpaceError` if no policy head handles ``space``."""
    for path, leaf in action_leaves(space):
        if not isinstance(leaf, ACTION_SPACE_TYPES):
            where = f" (part {'/'.join(map(str, path))} is {leaf})" if path else ""
            raise UnsupportedSpaceError(
                f"action space {space} is not supported{where}; supported: {SUPPORTED_ACTION_SPACES}"
            )
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES) and not action_leaves(space):
        raise UnsupportedSpaceError(f"action space {space} has no parts; give it at least one")


@dataclass(frozen=True)
class _Part:
    kind: str  # "box" | "image" | "onehot" | "multionehot" | "binary"
    path: tuple[Any, ...]
    size: int
    space: spaces.Space


#: Smallest height and width of an image observation (smaller uint8 arrays go to the MLP).
MIN_IMAGE_SIDE = 8


@dataclass(frozen=True)
class ImageLayout:
    """How a flat image part becomes ``[batch, channels, height, width]``.

    ``shape`` is the observation's; ``stacked`` is True for a frame stack ``(N, ...)``
    of images, whose frames become channels (frame-major).
    """

    shape: tuple[int, ...]
    channels_last: bool
    stacked: bool

    @property
    def chw(self) -> tuple[int, int, int]:
        frame = self.shape[1:] if self.stacked else self.shape
        frames = self.shape[0] if self.stacked else 1
        if len(frame) == 2:
            return frames, frame[0], frame[1]
        c, h, w = (frame[2], frame[0], frame[1]) if self.channels_last else frame
        return frames * c, h, w


def image_layout(space: spaces.Space) -> ImageLayout | None:
    """The layout of an image observation, or None when ``space`` is not one.

    An image is a ``uint8`` Box with bounds 0..255 of shape ``(H, W)``, ``(H, W, C)`` or
    ``(C, H, W)`` (channels are the smaller of the first and last sizes; channel-last on a
    tie), or a stack ``(N, ...)`` of color images (``env.frame_stack``; a stack of grey
    ``(H, W)`` frames is already ``(C, H, W)``), with sides of at least
    :data:`MIN_IMAGE_SIDE` pixels. As Stable-Baselines3 decides for its ``CnnPolicy``.
    """
    if not isinstance(space, spaces.Box) or space.dtype != np.uint8 or len(space.shape) not in (2, 3, 4):
        return None
    if not (np.all(space.low == 0) and np.all(space.high == 255)):
        return None
    shape = tuple(int(d) for d in space.shape)
    stacked = len(shape) == 4
    frame = shape[1:] if stacked else shape
    channels_last = len(frame) == 2 or frame[2] <= frame[0]
    sides = frame[:2] if channels_last else frame[1:]
    if min(sides) < MIN_IMAGE_SIDE:
        return None
    return ImageLayout(shape, channels_last, stacked)


def _parts(space: spaces.Space, path: tuple[Any, ...] = (), images: bool = True) -> list[_Part]:
    if isinstance(space, spaces.Box):
        kind = "image" if images and image_layout(space) is not None else "box"
        return [_Part(kind, path, int(np.prod(space.shape, dtype=np.int64)), space)]
    if isinstance(space, spaces.Discrete):
        return [_Part("onehot", path, int(space.n), space)]
    if isinstance(space, spaces.MultiDiscrete):
        return [_Part("multionehot", path, int(np.sum(space.nvec)), space)]
    if isinstance(space, spaces.MultiBinary):
        return [_Part("binary", path, int(np.prod(space.shape, dtype=np.int64)), space)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _parts(sub, (*path, key), images)]
    if isinstance(space, spaces.Tuple):
        return [p for i, sub in enumerate(space.spaces) for p in _parts(sub, (*path, i), images)]
    where = "" if not path else f" at {'/'.join(map(str, path))}"
    raise UnsupportedSpaceError(
        f"observation space {space}{where} is not supported; supported: {SUPPORTED_OBSERVATION_SPACES}"
    )


def _get(obs: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obs = obs[key]
    return obs


class ObsFlattener:
    """Turns batched (or single) observations of a space into a float32 matrix.

    With ``images``, image parts (:func:`image_layout`) are marked as such: they are
    flattened like any Box, but left out of normalization (an image encoder scales them).
    """

    def __init__(self, space: spaces.Space, images: bool = False) -> None:
        self.space = space
        self.parts = _parts(space, images=images)
        self.flat_dim = sum(p.size for p in self.parts)
        # Only continuous parts are normalized; one-hot codes and pixels are on a fixed scale.
        mask = [np.full(p.size, p.kind == "box") for p in self.parts]
        self.normalize_mask = np.concatenate(mask) if mask else np.zeros(0, bool)
        self._simple_box = len(self.parts) == 1 and self.parts[0].kind in ("box", "image")
        self._offsets = []
        for part in self.parts:
            if part.kind == "multionehot":
                nvec = np.asarray(part.space.nvec).reshape(-1)
                self._offsets.append(np.concatenate([[0], np.cumsum(nvec)[:-1]]))
            else:
                self._offsets.append(None)

    def images(self) -> list[tuple[int, ImageLayout]]:
        """``(first column, layout)`` of each image part, in order."""
        out, start = [], 0
        for part in self.parts:
            if part.kind == "image":
                layout = image_layout(part.space)
                assert layout is not None
                out.append((start, layout))
            start += part.size
        return out

    def is_batched(self, obs: Any) -> bool:
        """True when ``obs`` holds a leading batch dimension."""
        part = self.parts[0]
        leaf = np.asarray(_get(obs, part.path))
        single_ndim = {"box": len(part.space.shape), "image": len(part.space.shape), "onehot": 0}.get(
            part.kind, len(getattr(part.space, "shape", ()) or ())
        )
        return leaf.ndim == single_ndim + 1

    def batch_size(self, obs: Any) -> int:
        """Observations in ``obs`` (1 for a single one)."""
        return len(np.asarray(_get(obs, self.parts[0].path))) if self.is_batched(obs) else 1

    def __call__(self, obs: Any, batched: bool = True) -> np.ndarray:
        """Flatten ``obs`` (batched unless ``batched=False``) to ``[batch, flat_dim]`` float32."""
        if self._simple_box:
            arr = np.asarray(obs, dtype=np.float32)
            return arr.reshape(arr.shape[0] if batched else 1, -1)
        columns = []
        for part, offsets in zip(self.parts, self._offsets, strict=False):
            leaf = np.asarray(_get(obs, part.path))
            if not batched:
                leaf = leaf[None]
            n = leaf.shape[0]
            if part.kind in ("box", "image", "binary"):
                columns.append(leaf.reshape(n, -1).astype(np.float32, copy=False))
            elif part.kind == "onehot":
                start = int(part.space.start)
                out = np.zeros((n, part.size), np.float32)
                out[np.arange(n), leaf.reshape(n).astype(np.int64) - start] = 1.0
                columns.append(out)
            else:  # multionehot
                start = np.asarray(part.space.start).reshape(-1)
                idx = leaf.reshape(n, -1).astype(np.int64) - start + offsets
                out = np.zeros((n, part.size), np.float32)
                np.put_along_axis(out, idx, 1.0, axis=1)
                columns.append(out)
        return np.concatenate(columns, axis=1)


# --------------------------------------------------------------------------- serialization


def _array_to_data(arr: np.ndarray) -> Any:
    """A uniform array becomes one number; others a nested list. inf stays a string."""
    flat = np.asarray(arr).reshape(-1)
    if flat.size and np.all(flat == flat[0]):
        return _num(flat[0])
    return [_num(v) for v in flat]


def _num(v: Any) -> Any:
    v = v.item() if hasattr(v, "item") else v
    if isinstance(v, float) and not np.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return v


def _data_to_array(data: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    def conv(v: Any) -> float:
        return float(v) if isinstance(v, str) else v

    if isinstance(data, list):
        return np.asarray([conv(v) for v in data], dtype=dtype).reshape(shape)
    return np.full(shape, conv(data), dtype=dtype)


def space_to_data(space: spaces.Space) -> dict[str, Any]:
    """A JSON-ready description of ``space`` (no pickling)."""
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _array_to_data(space.low),
            "high": _array_to_data(space.high),
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_data(s) for k, s in space.spaces.items()}}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_data(s) for s in space.spaces]}
    raise UnsupportedSpaceError(f"cannot serialize space {space}")


#: Largest space read from a file: elements of a Box or MultiBinary, actions of a Discrete or
#: MultiDiscrete (checked before anything of that size is allocated), and nesting depth.
MAX_SPACE_ELEMENTS = 1 << 24
MAX_SPACE_DEPTH = 16


def _bounded(count: int, what: str) -> int:
    if not 0 <= count <= MAX_SPACE_ELEMENTS:
        raise ValueError(f"{what} {count:,} is outside 0..{MAX_SPACE_ELEMENTS:,}")
    return count


def space_from_data(data: dict[str, Any], _depth: int = 0) -> spaces.Space:
    """Inverse of :func:`space_to_data`. Sizes are checked against :data:`MAX_SPACE_ELEMENTS`
    before anything is allocated (the data may come from a stranger's file)."""
    if not isinstance(data, dict):
        raise TypeError(f"a space must be an object, not {type(data).__name__}")
    if _depth > MAX_SPACE_DEPTH:
        raise ValueError(f"spaces nested deeper than {MAX_SPACE_DEPTH}")
    kind = data.get("type")
    if kind == "Box":
        shape = tuple(int(d) for d in data["shape"])
        _bounded(int(np.prod(shape, dtype=np.float64)) if all(d >= 0 for d in shape) else -1, "Box size")
        dtype = np.dtype(data["dtype"])
        return spaces.Box(
            low=_data_to_array(data["low"], shape, dtype),
            high=_data_to_array(data["high"], shape, dtype),
            shape=shape,
            dtype=dtype,
        )
    if kind == "Discrete":
        return spaces.Discrete(_bounded(int(data["n"]), "Discrete n"), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        nvec = np.asarray(data["nvec"], dtype=np.int64)
        _bounded(int(nvec.size), "MultiDiscrete size")
        _bounded(int(nvec.sum(dtype=np.float64)), "MultiDiscrete total of nvec")
        return spaces.MultiDiscrete(nvec, start=np.asarray(data["start"]), dtype=data.get("dtype", "int64"))
    if kind == "MultiBinary":
        n = data["n"]
        _bounded(int(np.prod(n, dtype=np.float64)), "MultiBinary size")
        return spaces.MultiBinary(n)
    if kind == "Dict":
        _bounded(len(data["spaces"]), "number of Dict entries")
        return spaces.Dict({k: space_from_data(v, _depth + 1) for k, v in data["spaces"].items()})
    if kind == "Tuple":
        _bounded(len(data["spaces"]), "number of Tuple entries")
        return spaces.Tuple([space_from_data(v, _depth + 1) for v in data["spaces"]])
    raise ValueError(f"unknown space type in agent file: {kind!r}")


def describe_space(space: spaces.Space) -> str:
    """Short human form, e.g. ``Box(-inf..inf, (8,), float32)`` or ``Discrete(4)``."""
    if isinstance(space, spaces.Box):
        low, high = np.min(space.low), np.max(space.high)
        return f"Box({_num(low)}..{_num(high)}, {space.shape}, {space.dtype})"
    if isinstance(space, spaces.Dict):
        inner = ", ".join(f"{k}: {describe_space(s)}" for k, s in space.spaces.items())
        return f"Dict({inner})"
    if isinstance(space, spaces.Tuple):
        return f"Tuple({', '.join(describe_space(s) for s in space.spaces)})"
    return str(space)


def spaces_match(expected: spaces.Space, actual: spaces.Space) -> bool:
    """Same structure, shapes, sizes and bounds (dtypes of Box may differ in width)."""
    return space_to_data(expected) == space_to_data(actual)


def require_same_spaces(
    env_id: str, agent: tuple[spaces.Space, spaces.Space], env: tuple[spaces.Space, spaces.Space]
) -> None:
    """Raise a ValueError naming both pairs of (observation, action) spaces unless they match."""
    if spaces_match(agent[0], env[0]) and spaces_match(agent[1], env[1]):
        return
    raise ValueError(
        f"the agent does not fit environment '{env_id}': the agent was trained with observations "
        f"{describe_space(agent[0])} and actions {describe_space(agent[1])}, "
        f"the environment has observations {describe_space(env[0])} and actions {describe_space(env[1])}"
    )


def require_fits(env_id: str, agent: Any, env: Any) -> None:
    """:func:`require_same_spaces` for ``agent`` (anything with ``observation_space`` and
    ``action_space``: a policy, an agent) and ``env`` (an environment, or a vector of copies)."""
    env_spaces = (
        getattr(env, "single_observation_space", None) or env.observation_space,
        getattr(env, "single_action_space", None) or env.action_space,
    )
    require_same_spaces(env_id, (agent.observation_space, agent.action_space), env_spaces)
