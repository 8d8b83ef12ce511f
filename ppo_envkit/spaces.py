"""Observation spaces: batched flattening for the MLP, and spaces as plain data.

Observations are turned into one float32 matrix ``[batch, flat_dim]``: ``Box`` parts
are flattened, ``Discrete`` and ``MultiDiscrete`` parts one-hot encoded,
``MultiBinary`` parts cast, text parts (``gymnasium.spaces.Text``, or any space of strings such
as MiniGrid's ``MissionSpace``) turned into a bag of hashed words (:func:`encode_text`), and
``Dict``/``Tuple`` spaces concatenated in the space's own key order. Spaces are serialized to
JSON-ready dicts so that an agent file records them without pickling.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium import spaces

SUPPORTED_OBSERVATION_SPACES = (
    "Box (uint8 images through a CNN), Discrete, MultiDiscrete, MultiBinary, Text (as a bag of hashed "
    "words), and Dict/Tuple of those"
)


class UnsupportedSpaceError(TypeError):
    """A space that no encoder or head handles; the message names the supported ones.

    ``path`` is where the space sits inside a ``Dict``/``Tuple`` observation (``()`` at the top),
    ``space`` the space itself (for findings that name the entry, not the whole observation)."""

    def __init__(self, message: str, path: tuple[Any, ...] = (), space: spaces.Space | None = None):
        super().__init__(message)
        self.path, self.space = path, space


def entry_name(path: tuple[Any, ...], root: str = "observation") -> str:
    """``observation['mission']``, ``observation['pair'][0]``: how Python reaches the entry."""
    return root + "".join(f"[{key!r}]" for key in path)


# --------------------------------------------------------------------------- text

#: Columns a text entry gets by default (``policy.text_hash_size``): words are hashed into this
#: many buckets and counted. 0 leaves text unencoded (refused).
TEXT_HASH_SIZE = 128
#: Distinct strings whose codes are kept (missions repeat: encoding one is then a lookup).
_TEXT_CACHE_SIZE = 4096
_WORD = re.compile(r"[0-9a-z]+")


def is_text_space(space: spaces.Space) -> bool:
    """Whether observations of ``space`` are strings: ``gymnasium.spaces.Text``, or any other
    space of dtype str (MiniGrid's ``MissionSpace`` is a plain ``Space`` of ``str``)."""
    if isinstance(space, spaces.Text):
        return True
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        return False
    dtype = getattr(space, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind in "US"


def text_words(text: str) -> list[str]:
    """The words of ``text``: runs of lower-case letters and digits (case and punctuation dropped)."""
    return _WORD.findall(str(text).lower())


def word_bucket(word: str, size: int) -> int:
    """The column of ``word`` among ``size``: CRC-32 of its UTF-8 bytes modulo ``size`` (the same
    in every process and Python version, unlike ``hash()``)."""
    return zlib.crc32(word.encode("utf-8")) % size


def encode_text(text: str, size: int) -> np.ndarray:
    """``text`` as ``size`` float32 columns: how many of its words fall in each bucket
    (:func:`word_bucket`). Word order is lost; two words may share a bucket (with 128 buckets
    the ~40 words of BabyAI's missions share a few). The ONNX export takes these columns."""
    out = np.zeros(size, np.float32)
    for word in text_words(text):
        out[word_bucket(word, size)] += 1.0
    return out


class _TextCodes:
    """:func:`encode_text` with a bounded cache of the strings seen."""

    def __init__(self, size: int):
        self.size, self.cache = size, {}

    def __call__(self, leaf: Any) -> np.ndarray:
        texts = [leaf] if isinstance(leaf, str) else list(np.asarray(leaf, dtype=object).reshape(-1))
        out = np.empty((len(texts), self.size), np.float32)
        for i, text in enumerate(texts):
            code = self.cache.get(text)
            if code is None:
                code = encode_text(text, self.size)
                if len(self.cache) >= _TEXT_CACHE_SIZE:
                    self.cache.clear()
                self.cache[text] = code
            out[i] = code
        return out


class FreeText(spaces.Text):
    """A text space that declares no lengths or characters (what an agent file records for
    MiniGrid's ``MissionSpace``): any string belongs to it."""

    def __init__(self) -> None:
        super().__init__(max_length=1 << 16)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str)

    def __repr__(self) -> str:
        return "Text(any)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FreeText)

    __hash__ = spaces.Text.__hash__


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
    kind: str  # "box" | "image" | "onehot" | "multionehot" | "binary" | "text"
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


def _parts(
    space: spaces.Space, path: tuple[Any, ...] = (), images: bool = True, text: int = TEXT_HASH_SIZE
) -> list[_Part]:
    if isinstance(space, spaces.Box):
        kind = "image" if images and image_layout(space) is not None else "box"
        return [_Part(kind, path, int(np.prod(space.shape, dtype=np.int64)), space)]
    if is_text_space(space):
        if text <= 0:
            raise UnsupportedSpaceError(
                f"{entry_name(path)} is text ({describe_space(space)}), and policy.text_hash_size=0 "
                "leaves text unencoded",
                path,
                space,
            )
        return [_Part("text", path, int(text), space)]
    if isinstance(space, spaces.Discrete):
        return [_Part("onehot", path, int(space.n), space)]
    if isinstance(space, spaces.MultiDiscrete):
        return [_Part("multionehot", path, int(np.sum(space.nvec)), space)]
    if isinstance(space, spaces.MultiBinary):
        return [_Part("binary", path, int(np.prod(space.shape, dtype=np.int64)), space)]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _parts(sub, (*path, key), images, text)]
    if isinstance(space, spaces.Tuple):
        return [p for i, sub in enumerate(space.spaces) for p in _parts(sub, (*path, i), images, text)]
    raise UnsupportedSpaceError(
        f"{entry_name(path)} ({describe_space(space)}) is not supported; supported: "
        f"{SUPPORTED_OBSERVATION_SPACES}",
        path,
        space,
    )


def _get(obs: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obs = obs[key]
    return obs


class ObsFlattener:
    """Turns batched (or single) observations of a space into a float32 matrix.

    With ``images``, image parts (:func:`image_layout`) are marked as such: they are
    flattened like any Box, but left out of normalization (an image encoder scales them).
    Text parts take ``text_hash_size`` columns each (:func:`encode_text`; 0 refuses text).
    """

    def __init__(
        self, space: spaces.Space, images: bool = False, text_hash_size: int = TEXT_HASH_SIZE
    ) -> None:
        self.space = space
        self.text_hash_size = text_hash_size
        self.parts = _parts(space, images=images, text=text_hash_size)
        self.flat_dim = sum(p.size for p in self.parts)
        # Only continuous parts are normalized; one-hot codes and pixels are on a fixed scale.
        mask = [np.full(p.size, p.kind == "box") for p in self.parts]
        self.normalize_mask = np.concatenate(mask) if mask else np.zeros(0, bool)
        self._simple_box = len(self.parts) == 1 and self.parts[0].kind in ("box", "image")
        self._offsets: list[Any] = []
        for part in self.parts:
            if part.kind == "text":
                self._offsets.append(_TextCodes(part.size))
            elif part.kind == "multionehot":
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

    def image_ranges(self) -> list[tuple[int, int]]:
        """``[start, end)`` columns of each image part, in order (the rollout keeps them as uint8)."""
        return [(start, start + int(np.prod(layout.shape))) for start, layout in self.images()]

    def is_batched(self, obs: Any) -> bool:
        """True when ``obs`` holds a leading batch dimension."""
        part = self.parts[0]
        leaf = _get(obs, part.path)
        if part.kind == "text":
            return not isinstance(leaf, str)
        leaf = np.asarray(leaf)
        single_ndim = {"box": len(part.space.shape), "image": len(part.space.shape), "onehot": 0}.get(
            part.kind, len(getattr(part.space, "shape", ()) or ())
        )
        return leaf.ndim == single_ndim + 1

    def batch_size(self, obs: Any) -> int:
        """Observations in ``obs`` (1 for a single one)."""
        return len(_get(obs, self.parts[0].path)) if self.is_batched(obs) else 1

    def __call__(self, obs: Any, batched: bool = True) -> np.ndarray:
        """Flatten ``obs`` (batched unless ``batched=False``) to ``[batch, flat_dim]`` float32."""
        if self._simple_box:
            arr = np.asarray(obs, dtype=np.float32)
            return arr.reshape(arr.shape[0] if batched else 1, -1)
        columns = []
        for part, offsets in zip(self.parts, self._offsets, strict=False):
            if part.kind == "text":
                leaf = _get(obs, part.path)
                columns.append(offsets([leaf] if not batched else leaf))
                continue
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
    if is_text_space(space):
        if isinstance(space, spaces.Text) and not isinstance(space, FreeText):
            return {
                "type": "Text",
                "min_length": int(space.min_length),
                "max_length": int(space.max_length),
                "charset": "".join(space.character_list),
            }
        return {"type": "Text"}  # any string (MiniGrid's MissionSpace declares nothing more)
    raise UnsupportedSpaceError(f"cannot serialize space {describe_space(space)}")


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
    if kind == "Text":
        if "charset" not in data:
            return FreeText()
        charset = str(data["charset"])
        _bounded(len(charset), "Text charset size")
        return spaces.Text(
            _bounded(int(data["max_length"]), "Text max_length"),
            min_length=int(data["min_length"]),
            charset=charset,
        )
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
    if is_text_space(space):
        if isinstance(space, spaces.Text):
            return (
                "Text(any)"
                if isinstance(space, FreeText)
                else f"Text({space.min_length}..{space.max_length} chars)"
            )
        return f"Text ({type(space).__name__})"
    if type(space).__repr__ is object.__repr__ or " at 0x" in repr(space):
        return type(space).__name__  # never a '<function ... at 0x...>' inside a message
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
