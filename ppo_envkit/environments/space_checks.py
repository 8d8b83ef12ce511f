"""What an environment declares, checked before it is run: its spaces, and whether
ppo-envkit can encode its observations and has a policy head for its actions.

Part of the environment checker (:mod:`.checker`); needs no torch: which action spaces
have a head is known in :mod:`ppo_envkit.spaces`.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..spaces import (
    MIN_IMAGE_SIDE,
    SUPPORTED_ACTION_SPACES,
    SUPPORTED_OBSERVATION_SPACES,
    TEXT_HASH_SIZE,
    ObsFlattener,
    UnsupportedSpaceError,
    check_action_space,
    describe_space,
    entry_name,
    image_layout,
    is_text_space,
)
from .findings import Findings, method_location

__all__ = ["check_spaces"]


def check_spaces(found: Findings, env: gym.Env, expect: str | None) -> bool:
    """Spaces exist and ppo-envkit can encode/decode them. False stops the remaining checks."""
    ok = True
    for kind in ("observation", "action"):
        space = getattr(env.unwrapped, f"{kind}_space", None)
        if not isinstance(space, spaces.Space):
            found.add(
                "error",
                f"{kind}-space-missing",
                f"{kind}_space is {'missing' if space is None else type(space).__name__}, "
                "not a gymnasium.spaces.Space",
                method_location(env, "__init__"),
                f"set self.{kind}_space in __init__, e.g. spaces.Box(-1.0, 1.0, (4,), np.float32)",
            )
            ok = False
    if not ok:
        return False
    try:
        ObsFlattener(env.observation_space)
    except UnsupportedSpaceError as exc:
        name = entry_name(exc.path)
        space = exc.space if exc.space is not None else env.observation_space
        if exc.path:
            fix = (
                f"drop it with a wrapper ({_drop_hint(env.observation_space, exc.path)}), or turn it "
                f"into a space ppo-envkit encodes with a gymnasium.ObservationWrapper: "
                f"{SUPPORTED_OBSERVATION_SPACES}"
            )
        else:
            fix = f"turn it into one of: {SUPPORTED_OBSERVATION_SPACES}"
        found.add(
            "error",
            "obs-space-unsupported",
            f"{name} is {describe_space(space)}, which no observation encoder reads",
            method_location(env, "__init__"),
            fix,
        )
        ok = False
    _check_text(found, env)
    _check_images(found, env)
    action_space = env.action_space
    try:
        check_action_space(action_space)
    except UnsupportedSpaceError:
        found.add(
            "error",
            "action-space-unsupported",
            f"no policy head supports the action space {describe_space(action_space)}",
            method_location(env, "__init__"),
            f"use one of: {SUPPORTED_ACTION_SPACES} (several Discrete choices fit one MultiDiscrete)",
        )
        ok = False
    if isinstance(action_space, spaces.Box) and not (
        np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()
    ):
        found.add(
            "warning",
            "action-bounds-infinite",
            f"the action space {describe_space(action_space)} has infinite bounds, so Gaussian actions "
            "are never clipped",
            method_location(env, "__init__"),
            "give the Box finite bounds (e.g. -1..1) and scale the action inside step()",
        )
    if expect is not None:
        is_box = isinstance(action_space, spaces.Box)
        if (expect == "continuous") != is_box:
            want = "a Box" if expect == "continuous" else "Discrete, MultiDiscrete or MultiBinary"
            found.add(
                "error",
                "variant-action-space",
                f"the {expect} variant has the action space {describe_space(action_space)}, not {want}",
                method_location(env, "__init__"),
                "make __init__ choose the action space from the variant's argument (e.g. `if continuous: "
                "spaces.Box(...) else: spaces.Discrete(...)`), or fix variants= in register_env",
            )
    return ok


def _text_paths(space: spaces.Space, path: tuple = ()) -> list[tuple]:
    """Where the text entries of an observation space are (``()`` for a text observation)."""
    if is_text_space(space):
        return [path]
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _text_paths(sub, (*path, key))]
    if isinstance(space, spaces.Tuple):
        return [p for i, sub in enumerate(space.spaces) for p in _text_paths(sub, (*path, i))]
    return []


def _drop_hint(space: spaces.Space, path: tuple) -> str:
    """How to drop the entry at ``path``: Gymnasium's FilterObservation for a top-level Dict
    key, an ObservationWrapper otherwise."""
    if len(path) == 1 and isinstance(space, spaces.Dict):
        keep = [key for key in space.spaces if key != path[0]]
        return f"gymnasium.wrappers.FilterObservation(env, filter_keys={keep!r})"
    return f"a gymnasium.ObservationWrapper whose observation() leaves out {entry_name(path)}"


def _check_text(found: Findings, env: gym.Env) -> None:
    """Text entries: encoded by default (a bag of hashed words), said once with the two choices."""
    space = env.observation_space
    for path in _text_paths(space):
        found.add(
            "warning",
            "obs-text",
            f"{entry_name(path)} is text ({type(_get_space(space, path)).__name__}); ppo-envkit encodes "
            f"it as a bag of words hashed into policy.text_hash_size ({TEXT_HASH_SIZE} by default) columns "
            "(word order is lost)",
            method_location(env, "__init__"),
            f"nothing, if the policy should read it; if it carries nothing the policy needs (a mission "
            f"that never changes), drop it with a wrapper ({_drop_hint(space, path)})",
        )


def _get_space(space: spaces.Space, path: tuple) -> spaces.Space:
    for key in path:
        space = space[key]
    return space


def _pictures(space: spaces.Space, name: str = "") -> list[tuple[str, spaces.Box, tuple[int, ...]]]:
    """``(name, space, (height, width))`` of each Box part shaped like a picture: (H, W, C) or
    (C, H, W) with 1-4 channels."""
    if isinstance(space, spaces.Dict):
        return [p for key, sub in space.spaces.items() for p in _pictures(sub, f"{name}/{key}".strip("/"))]
    if not isinstance(space, spaces.Box) or len(space.shape) != 3 or min(space.shape[0], space.shape[2]) > 4:
        return []
    shape = space.shape
    return [(name, space, shape[:2] if shape[2] <= shape[0] else shape[1:])]


def _check_images(found: Findings, env: gym.Env) -> None:
    """Picture-shaped observations that will not reach the CNN, said with why."""
    for name, space, sides in _pictures(env.observation_space):
        if image_layout(space) is not None:
            continue
        part = f"the observation{f' {name!r}' if name else ''} ({describe_space(space)})"
        pixels = space.dtype == np.uint8 and np.all(space.low == 0) and np.all(space.high == 255)
        if not pixels and min(sides) >= MIN_IMAGE_SIDE:
            found.add(
                "warning",
                "image-not-uint8",
                f"{part} is shaped like an image but is not uint8 with bounds 0..255, so it is "
                "flattened into the MLP instead of going through the convolutional encoder",
                method_location(env, "__init__"),
                "declare it spaces.Box(0, 255, (H, W, C), np.uint8) and return uint8 pixels "
                "(ppo-envkit scales them to [0, 1] inside the model)",
            )
        elif pixels:
            found.add(
                "warning",
                "image-too-small",
                f"{part} is an image smaller than {MIN_IMAGE_SIDE} x {MIN_IMAGE_SIDE} pixels, so it is "
                "flattened into the MLP rather than convolved",
                method_location(env, "__init__"),
                "nothing, if that is intended; render at least 8 x 8 pixels to use the CNN",
            )
