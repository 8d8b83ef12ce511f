"""Invalid-action masks: where they come from, their one layout, and legal random actions.

An environment declares which actions are legal in two ways, and ppo-envkit reads both:

* a method ``action_masks()`` returning a boolean array (sb3-contrib's convention), or
* ``info["action_mask"]`` from ``reset`` and ``step``.

When an environment has both, the method wins: it is asked after every reset and step
(the info key is then overwritten). The mask of an episode's final state is not read (no
action is chosen there; an environment may well allow none). :class:`ActionMasks`, a
wrapper on every environment ppo-envkit builds, turns either form into one flat boolean
vector per observation and puts it in ``info["action_mask"]``, so that vector
environments (in worker processes, too) carry it with no extra round trip.

The flat layout, for each action space (sb3-contrib's):

* ``Discrete(n)``: ``n`` values, one per action.
* ``MultiDiscrete(nvec)``: the per-dimension masks concatenated (``sum(nvec)`` values);
  a list or tuple of per-dimension arrays is accepted too.
* ``MultiBinary(n)``: two values per entry, ``[0 allowed, 1 allowed]``, in the order of
  the flattened entries (``2 * n``); an array of shape ``(*shape, 2)`` is accepted too.
* ``Tuple`` / ``Dict`` (composite actions): the masks of the maskable parts (Discrete,
  MultiDiscrete, MultiBinary; Box parts have none) concatenated in the space's order; or the
  same structure as the space (a dict by key, a tuple by position, nested) holding each
  maskable part's mask in its own layout (a part left out or None: all its actions are
  legal; Box parts have none). Mind that a ``Dict`` built from a plain dict sorts its keys.

A mask must be boolean (or integers that are all 0 or 1), of that size, and leave at
least one legal choice in every dimension: anything else is :class:`ActionMaskError`,
one line naming the step.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..config import EnvConfig
from ..errors import ActionMaskError
from ..spaces import COMPOSITE_ACTION_SPACE_TYPES, action_leaves

MASKABLE_ACTION_SPACES = "Discrete, MultiDiscrete and MultiBinary (and Tuple/Dict with such parts)"


def _maskable_leaves(space: spaces.Space) -> list[tuple[tuple[Any, ...], spaces.Space]]:
    return [(path, leaf) for path, leaf in action_leaves(space) if mask_size(leaf) is not None]


def mask_size(space: spaces.Space) -> int | None:
    """Values in the flat mask of ``space``; None when actions of ``space`` cannot be masked."""
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return sum(mask_size(leaf) for _, leaf in _maskable_leaves(space)) or None
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, spaces.MultiBinary):
        return 2 * int(np.prod(space.shape))
    return None


def _groups(space: spaces.Space) -> list[int]:
    """Sizes of the mask's independent choices (each needs one legal value)."""
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return [n for _, leaf in _maskable_leaves(space) for n in _groups(leaf)]
    if isinstance(space, spaces.Discrete):
        return [int(space.n)]
    if isinstance(space, spaces.MultiDiscrete):
        return [int(n) for n in np.asarray(space.nvec).reshape(-1)]
    return [2] * int(np.prod(space.shape))


def _describe_size(space: spaces.Space) -> str:
    if isinstance(space, spaces.MultiDiscrete):
        return f"{mask_size(space)} values (the masks of its {len(_groups(space))} dimensions, concatenated)"
    if isinstance(space, spaces.MultiBinary):
        return f"{mask_size(space)} values (for each entry: 0 allowed, 1 allowed)"
    return f"{mask_size(space)} values"


def _part_name(path: tuple[Any, ...]) -> str:
    return "/".join(map(str, path))


def _composite_mask(mask: Any, space: spaces.Space, where: str) -> np.ndarray:
    """A composite space's mask (flat, or structured like the space) in the flat layout."""
    leaves = _maskable_leaves(space)
    structured = isinstance(mask, dict) or (
        isinstance(mask, list | tuple) and any(m is None or np.ndim(m) > 0 for m in mask)
    )
    parts = []
    if structured:
        for path, leaf in leaves:
            value = mask
            try:
                for key in path:
                    value = value[key]
            except (KeyError, IndexError, TypeError):
                value = None
            if value is None:  # a part left out: all its actions are legal
                parts.append(np.ones(mask_size(leaf), bool))
            else:
                parts.append(to_flat_mask(value, leaf, f"{where} (part {_part_name(path)})"))
        return np.concatenate(parts)
    array = np.asarray(mask)
    size = mask_size(space)
    if array.size != size:
        sizes = ", ".join(f"{_part_name(p)}: {mask_size(leaf)}" for p, leaf in leaves)
        raise ActionMaskError(
            f"action mask {where} has shape {array.shape}, but action space {space} needs {size} values "
            f"(the masks of its maskable parts, concatenated: {sizes}), or a mask per part in the "
            "space's structure"
        )
    start = 0
    for path, leaf in leaves:
        n = mask_size(leaf)
        parts.append(
            to_flat_mask(array.reshape(-1)[start : start + n], leaf, f"{where} (part {_part_name(path)})")
        )
        start += n
    return np.concatenate(parts)


def to_flat_mask(mask: Any, space: spaces.Space, where: str) -> np.ndarray:
    """``mask`` in the flat boolean layout of ``space``, validated; ``where`` ends messages
    ("from action_masks() after step 3 of the episode")."""
    size = mask_size(space)
    if size is not None and isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return _composite_mask(mask, space, where)
    if size is None:
        raise ActionMaskError(
            f"the environment gives an action mask {where}, but its action space {space} cannot be "
            f"masked; masks work for {MASKABLE_ACTION_SPACES} actions"
        )
    if isinstance(mask, list | tuple) and isinstance(space, spaces.MultiDiscrete):
        parts = [np.asarray(m) for m in mask]
        if any(p.dtype == object for p in parts):
            raise ActionMaskError(f"action mask {where} is not an array of booleans")
        mask = np.concatenate([p.reshape(-1) for p in parts]) if parts else np.zeros(0, bool)
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        integer = np.issubdtype(array.dtype, np.integer)
        if not integer or (array.size and not np.isin(array, (0, 1)).all()):
            kind = f"dtype {array.dtype}" if not integer else "integers other than 0 and 1"
            raise ActionMaskError(f"action mask {where} has {kind}; it must hold booleans (True = legal)")
        array = array.astype(bool)
    if array.size != size:
        raise ActionMaskError(
            f"action mask {where} has shape {array.shape}, but action space {space} needs "
            f"{_describe_size(space)}"
        )
    flat = array.reshape(-1)
    start = 0
    for dim, n in enumerate(_groups(space)):
        if not flat[start : start + n].any():
            which = "" if isinstance(space, spaces.Discrete) else f" in dimension {dim}"
            raise ActionMaskError(f"action mask {where} allows no action{which}; at least one must be legal")
        start += n
    return flat


def has_mask_method(env: gym.Env) -> bool:
    """Whether ``env`` (or an environment it wraps) defines ``action_masks()``."""
    while True:
        if callable(getattr(type(env), "action_masks", None)):
            return True
        if not isinstance(env, gym.Wrapper):
            return False
        env = env.env


def given_mask(env: gym.Env, info: Any, method: bool | None = None) -> tuple[Any, str] | None:
    """``(mask as the environment gives it, where from)``: from ``action_masks()`` when the
    environment has one (it wins), else from ``info["action_mask"]``; None without a mask.
    ``method`` says whether it has the method, when the caller knows already."""
    if has_mask_method(env) if method is None else method:
        return env.get_wrapper_attr("action_masks")(), "from action_masks()"
    if isinstance(info, dict) and "action_mask" in info:
        return info["action_mask"], 'in info["action_mask"]'
    return None


class ActionMasks(gym.Wrapper):
    """Puts the current action mask, flat and validated, in ``info["action_mask"]``.

    :attr:`current_action_mask` holds the mask of the latest observation (None for an
    environment without masks), for code that resets or replays without reading the info.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._method = has_mask_method(env)
        self.current_action_mask: np.ndarray | None = None
        self._steps = 0

    def _mask(self, info: dict[str, Any], call: str) -> dict[str, Any]:
        where = f"{call} (step {self._steps} of the episode)"
        given = given_mask(self.env, info, self._method)
        if given is None:
            if self.current_action_mask is not None:
                raise ActionMaskError(
                    f'info["action_mask"] is missing after {where}, but earlier steps had one; '
                    "give it with every reset and step"
                )
            return info
        raw, source = given
        if self.current_action_mask is None and call != "reset()":
            raise ActionMaskError(
                f'info["action_mask"] appears after {where}, but reset() gave none; '
                "give it with every reset and step"
            )
        self.current_action_mask = to_flat_mask(raw, self.env.action_space, f"{source} after {where}")
        return {**info, "action_mask": self.current_action_mask}

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self._steps = 0
        self.current_action_mask = None
        return obs, self._mask(info, "reset()")

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._steps += 1
        if terminated or truncated:  # no action is taken from a final state: its mask means nothing
            return obs, reward, terminated, truncated, {k: v for k, v in info.items() if k != "action_mask"}
        return obs, reward, terminated, truncated, self._mask(info, "step()")


def user_masks(mask: Any, space: spaces.Space, batch: int | None) -> np.ndarray | None:
    """Masks given to ``predict``, as ``[batch, mask_size]`` booleans (``batch`` None: the mask
    of one observation, as ``[1, mask_size]``), checked; None stays None. A boolean array of
    the right shape is checked at once; anything else row by row (with the row's number)."""
    if mask is None:
        return None
    if batch is None:
        return to_flat_mask(mask, space, "given to predict()")[None]
    array = np.asarray(mask) if not isinstance(mask, list | tuple) else None
    size = mask_size(space)
    if array is not None and array.dtype == np.bool_ and size is not None and array.shape == (batch, size):
        if _all_groups_legal(array, space):
            return np.ascontiguousarray(array)
    rows = [to_flat_mask(row, space, f"{i} given to predict()") for i, row in enumerate(mask)]
    if len(rows) != batch:
        raise ActionMaskError(f"predict() was given {len(rows)} action masks for {batch} observations")
    return np.stack(rows)


def _all_groups_legal(masks: np.ndarray, space: spaces.Space) -> bool:
    """Every row leaves a legal choice in every dimension (the quick check of a batch)."""
    bounds = np.cumsum([0, *_groups(space)])[:-1]
    return bool(np.logical_or.reduceat(masks, bounds, axis=1).all())


def vector_masks(info: dict[str, Any], num_envs: int, size: int) -> np.ndarray | None:
    """``[num_envs, size]`` masks from a vector environment's info, or None without masks.

    With same-step autoreset, a copy whose episode ended reports its reset's info, so its
    mask is the new episode's first one: the mask of the observation returned.
    """
    if "action_mask" not in info:
        return None
    present = info.get("_action_mask")
    masks = np.asarray(info["action_mask"])
    if (present is not None and not np.all(present)) or masks.shape != (num_envs, size):
        missing = "" if present is None else f" (copies {np.flatnonzero(~np.asarray(present)).tolist()})"
        raise ActionMaskError(
            f"some environment copies gave no action mask{missing}; give one with every reset and step"
        )
    return masks.astype(bool, copy=False)


def require_masks(trained_with_masks: Any, env: EnvConfig, mask: Any) -> None:
    """Refuse to pair an agent trained with action masks (``trained_with_masks``, as training
    recorded it) with an environment that gives none at reset (``mask`` is None): unmasked, it
    would take the actions its masks used to forbid and play on as if nothing were wrong. The
    explicit way to run it so anyway: ``env.action_masks=off`` in the agent's settings."""
    if mask is None and trained_with_masks and env.action_masks != "off":
        raise ActionMaskError(
            f"this agent was trained with action masks, but environment {env.id} gives none "
            '(no action_masks() method, no info["action_mask"] at reset); unmasked it would take '
            "actions its masks forbade. Give the environment its masks (or, to run it unmasked "
            "on purpose, set env.action_masks=off in the agent's settings)"
        )


def sample_legal(space: spaces.Space, mask: np.ndarray | None, rng: np.random.Generator) -> Any:
    """A random action of ``space`` that ``mask`` (flat layout; None: any) allows."""
    if mask is None:
        return space.sample()
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return _sample_composite(space, mask, rng, [0])
    if isinstance(space, spaces.Discrete):
        return space.start + int(rng.choice(np.flatnonzero(mask)))
    if isinstance(space, spaces.MultiDiscrete):
        out, start = [], 0
        for n in _groups(space):
            out.append(int(rng.choice(np.flatnonzero(mask[start : start + n]))))
            start += n
        values = np.asarray(out).reshape(space.shape) + np.asarray(space.start)
        return values.astype(space.dtype)
    pairs = mask.reshape(-1, 2)
    ones = np.where(pairs.all(1), rng.integers(0, 2, len(pairs)), pairs[:, 1].astype(np.int64))
    return ones.reshape(space.shape).astype(space.dtype)


def _sample_composite(space: spaces.Space, mask: np.ndarray, rng: np.random.Generator, at: list[int]) -> Any:
    """A legal action of a composite space; ``at[0]`` is where its next part's mask starts."""
    if isinstance(space, spaces.Dict):
        return {key: _sample_composite(sub, mask, rng, at) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Tuple):
        return tuple(_sample_composite(sub, mask, rng, at) for sub in space.spaces)
    n = mask_size(space)
    if n is None:
        return space.sample()
    part = mask[at[0] : at[0] + n]
    at[0] += n
    return sample_legal(space, part, rng)


__all__ = [
    "MASKABLE_ACTION_SPACES",
    "ActionMasks",
    "given_mask",
    "has_mask_method",
    "mask_size",
    "require_masks",
    "sample_legal",
    "to_flat_mask",
    "user_masks",
    "vector_masks",
]
