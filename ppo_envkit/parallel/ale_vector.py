"""Atari copies stepped by the ALE's own C++ vector environment (``env.vectorization=ale``).

Gymnasium's path for Atari is one Python environment per copy, each wrapped in
``AtariPreprocessing`` (frame skipping, max-pooling, resizing, no-op starts) and
``FrameStackObservation``. ``ale_py``'s ``AtariVectorEnv`` does the same preprocessing in C++
and steps the copies on a pool of threads, outside the GIL: on 2 cores, 8 Breakout copies step
1.7x as fast as the Python path (``docs/performance.md``).

:class:`AleVectorEnv` builds it from the very settings that describe the Python path
(``env.id`` an ALE id, ``env.kwargs``, ``env.wrappers`` with ``AtariPreprocessing`` and
optionally ``ClipReward(-1, 1)``, ``env.frame_stack``), so that evaluation, replay, the viewer
and export, which build single environments the Python way, see the same observations the
policy was trained on. Settings it cannot reproduce are refused in one line each. It speaks the
part of the vector protocol the collector uses (``get_attr``/``set_attr``/``call`` of the
attributes :class:`~ppo_envkit.environments.episodes.ReplayableEpisodes` adds); it has no
per-episode metrics, no action masks and no changes while training (a curriculum), and its
episodes cannot be replayed, so ``env.seed_every_episode`` must be false (a resume starts new
episodes, as with the Python path at that setting).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from ..config import ConfigError, EnvConfig
from ..environments.episodes import episode_seed
from ..environments.registry import ensure_registered
from ..environments.wrappers import wrapper_class

__all__ = ["AleVectorEnv", "ale_options"]

_PREPROCESSING = "gymnasium.wrappers:AtariPreprocessing"
_CLIP_REWARD = "gymnasium.wrappers:ClipReward"
#: AtariPreprocessing's keyword arguments and their defaults, and what ALE's vector calls them
_PREPROCESSING_DEFAULTS: dict[str, Any] = {
    "noop_max": 30,
    "frame_skip": 4,
    "screen_size": 84,
    "terminal_on_life_loss": False,
    "grayscale_obs": True,
    "grayscale_newaxis": False,
    "scale_obs": False,
}
#: ``env.kwargs`` of ``AtariEnv`` that the vector takes (under the same name)
_ENV_KWARGS = {"repeat_action_probability", "full_action_space", "max_num_frames_per_episode"}


def _refuse(reason: str) -> ConfigError:
    return ConfigError(f"env.vectorization=ale: {reason}")


def ale_options(config: EnvConfig) -> dict[str, Any]:
    """``AtariVectorEnv``'s keyword arguments (but ``num_envs``) for the settings ``config``, which
    must describe the Gymnasium path that the vector reproduces; a :class:`ConfigError` naming
    the setting otherwise."""
    env_id = ensure_registered(config.id)
    spec = gym.spec(env_id)
    if str(spec.entry_point) != "ale_py.env:AtariEnv":
        raise _refuse(f"{config.id} is not an Atari game of ale_py (e.g. ale_py:ALE/Breakout-v5)")
    if config.seed_every_episode:
        raise _refuse(
            "the ALE's vector cannot replay an episode, so it needs env.seed_every_episode=false "
            "(only each copy's first reset is seeded; a resume starts new episodes)"
        )
    kwargs = {**spec.kwargs, **config.kwargs}
    if kwargs.pop("frameskip", 1) != 1:
        raise _refuse("set env.kwargs.frameskip=1: AtariPreprocessing skips the frames (frame_skip)")
    if kwargs.pop("obs_type", "rgb") != "rgb":
        raise _refuse("env.kwargs.obs_type must be rgb (AtariPreprocessing makes the grey frames)")
    game = kwargs.pop("game")
    unknown = sorted(set(kwargs) - _ENV_KWARGS)
    if unknown:
        takes = sorted(_ENV_KWARGS)
        raise _refuse(f"env.kwargs {unknown} are not taken by the ALE's vector (it takes {takes})")
    options: dict[str, Any] = {"game": game, **kwargs}
    if config.max_episode_steps is not None:  # a TimeLimit on the frameskip-1 game counts frames
        options["max_num_frames_per_episode"] = config.max_episode_steps
    names = [w.name for w in config.wrappers]
    # by class, so that another import path of the same wrapper counts as it
    classes = [wrapper_class(w) for w in config.wrappers]
    prep_cls, clip_cls = gym.wrappers.AtariPreprocessing, gym.wrappers.ClipReward
    if not classes or classes[0] is not prep_cls or set(classes[1:]) - {clip_cls} or len(classes) > 2:
        raise _refuse(
            f"env.wrappers must be [{_PREPROCESSING}] or [{_PREPROCESSING}, {_CLIP_REWARD}] "
            f"(the preprocessing the vector does in C++), not {names or 'none'}"
        )
    prep = {**_PREPROCESSING_DEFAULTS, **config.wrappers[0].kwargs}
    if set(prep) != set(_PREPROCESSING_DEFAULTS):
        raise _refuse(f"AtariPreprocessing takes only {sorted(_PREPROCESSING_DEFAULTS)} here")
    if prep["scale_obs"] or prep["grayscale_newaxis"]:
        raise _refuse("AtariPreprocessing's scale_obs and grayscale_newaxis must be false")
    size = prep["screen_size"]
    height, width = (size, size) if isinstance(size, int) else size
    options |= {
        "noop_max": prep["noop_max"],
        "frameskip": prep["frame_skip"],
        "img_height": height,
        "img_width": width,
        "grayscale": prep["grayscale_obs"],
        "episodic_life": prep["terminal_on_life_loss"],
        "maxpool": True,
        "use_fire_reset": False,  # AtariPreprocessing presses no FIRE at reset
        "stack_num": config.frame_stack,
        "reward_clipping": False,
    }
    if len(names) == 2:
        clip = {"min_reward": None, "max_reward": None, **config.wrappers[1].kwargs}
        if (clip["min_reward"], clip["max_reward"]) != (-1, 1):
            raise _refuse("ClipReward must clip to [-1, 1] (the ALE's reward clipping), or be left out")
        options["reward_clipping"] = True
    return options


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class AleVectorEnv(VectorEnv):
    """``num_envs`` Atari copies in ``ale_py`` ``AtariVectorEnv``-s with same-step autoreset
    (``info["final_obs"]`` holds the last observation of an episode that ended).

    The copies are split in two halves, each its own vector on its own threads (half the cores),
    so that the collector can step one half while the policy chooses the other half's actions
    (:func:`~ppo_envkit.algo.pipelined.collect_pipelined`): :meth:`send` and :meth:`recv` per
    half. :meth:`step` steps both halves at once."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, config: EnvConfig, observation_space: spaces.Space, action_space: spaces.Space):
        try:
            from ale_py.vector_env import AtariVectorEnv
        except ImportError as exc:
            raise _refuse(
                f"needs ale-py 0.11 or later with its vector environment ({exc}): "
                'pip install -e ".[atari]"; or --set env.vectorization=sync'
            ) from exc
        options = ale_options(config)
        self.num_envs = n = config.num_envs
        self._stacked = config.frame_stack > 1  # the vector always has a stack axis
        sizes = [n // 2, n - n // 2] if n > 1 else [n]
        #: ``(first copy, end)`` of each half
        self.parts = [(sum(sizes[:k]), sum(sizes[: k + 1])) for k in range(len(sizes))]
        threads = max(1, _cores() // len(sizes))
        self.vectors = [
            AtariVectorEnv(
                num_envs=size,
                num_threads=min(size, threads),
                autoreset_mode=AutoresetMode.SAME_STEP,
                **options,
            )
            for size in sizes
        ]
        ale = self.vectors[0]
        shape = self._obs(ale.single_observation_space.low).shape
        if shape != observation_space.shape or ale.single_action_space != action_space:
            self.close_extras()
            raise _refuse(
                f"the ALE's vector gives observations {shape} and actions {ale.single_action_space}, "
                f"the Gymnasium path {observation_space.shape} and {action_space}"
            )
        self.single_observation_space, self.single_action_space = observation_space, action_space
        self.observation_space = gym.vector.utils.batch_space(observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(action_space, self.num_envs)
        self.since_reset = np.zeros(self.num_envs, dtype=np.int64)
        self.pending_replay: list[tuple[Any, ...]] | None = None

    def _obs(self, obs: np.ndarray) -> np.ndarray:
        return obs if self._stacked else obs[:, 0] if obs.ndim == 4 else obs[0]

    def _pad(self, obs: np.ndarray, since_reset: np.ndarray) -> np.ndarray:
        """The stack as Gymnasium's ``FrameStackObservation`` gives it: the ALE pads the frames
        before an episode's first with zeros, Gymnasium with the first frame (``since_reset``:
        each copy's steps since its reset, before this observation)."""
        if not self._stacked:
            return obs
        stack = obs.shape[1]
        for i in np.flatnonzero(since_reset < stack - 1):
            first = stack - 1 - int(since_reset[i])  # the slot of the episode's first frame
            obs[i, :first] = obs[i, first]
        return obs

    def reset(self, *, seed: Any = None, options: dict[str, Any] | None = None):
        """Reset every copy; ``seed`` an int seeds copy ``i`` with ``seed + i`` (as Gymnasium's
        vectors do), an array gives each copy's seed."""
        observations = []
        for vector, (first, end) in zip(self.vectors, self.parts, strict=True):
            part_seed = seed
            if isinstance(seed, int):
                part_seed = seed + first
            elif seed is not None:
                part_seed = np.asarray(seed, dtype=np.int64)[first:end]
            observations.append(vector.reset(seed=part_seed, options=options)[0])
        self.since_reset = np.zeros(self.num_envs, dtype=np.int64)
        return self._obs(self._pad(np.concatenate(observations), self.since_reset)), {}

    def send(self, part: int, actions: np.ndarray) -> None:
        """Start stepping half ``part`` (its copies' ``actions``) and return at once."""
        self.vectors[part].send(np.asarray(actions, dtype=np.int64))

    def recv(self, part: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Half ``part``'s step, once done: ``(obs, reward, terminated, truncated, final_obs)``
        (``final_obs`` None when no episode ended)."""
        obs, reward, terminated, truncated, info = self.vectors[part].recv()
        first, end = self.parts[part]
        since = self.since_reset[first:end]  # (a view: updated in place)
        final = info.get("final_obs")
        if final is not None:
            final = self._obs(self._pad(final, since + 1))
        since += 1
        since[terminated | truncated] = 0  # (same-step autoreset: obs is the reset's)
        return self._obs(self._pad(obs, since)), reward.astype(np.float64), terminated, truncated, final

    @staticmethod
    def join(results: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        """Every half's :meth:`recv`, in order, as one vector step ``(obs, reward, terminated,
        truncated, info)``; ``info["final_obs"]`` where an episode ended (a copy whose episode
        goes on holds its observation there)."""
        obs, reward, terminated, truncated = (np.concatenate(r) for r in list(zip(*results, strict=True))[:4])
        info: dict[str, Any] = {}
        if any(r[4] is not None for r in results):
            info["final_obs"] = np.concatenate([r[0] if r[4] is None else r[4] for r in results])
        return obs, reward, terminated, truncated, info

    def step(self, actions: Any):
        actions = np.asarray(actions)
        for part, (first, end) in enumerate(self.parts):
            self.send(part, actions[first:end])
        return self.join([self.recv(part) for part in range(len(self.parts))])

    # the collector's side of ReplayableEpisodes' attributes, for every copy at once
    def get_attr(self, name: str) -> tuple[Any, ...]:
        if name in ("agent_layout", "current_action_mask"):
            return (None,) * self.num_envs
        raise AttributeError(f"env.vectorization=ale has no attribute {name!r}")

    def set_attr(self, name: str, values: Any) -> None:
        if name == "keep_final_info":  # the last info of an episode: not kept (None)
            return
        if name == "pending_replay":
            self.pending_replay = list(values)
            return
        if name == "info_keywords":
            raise _refuse("run.info_keywords is not supported (the vector reports no per-episode info)")
        raise AttributeError(f"env.vectorization=ale cannot set {name!r}")

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        if name == "take_finished":
            return ([],) * self.num_envs
        if name == "replay_pending":  # a resume: new episodes, each copy seeded as it was going to be
            plan, self.pending_replay = self.pending_replay or [], None
            if any(len(entry) > 2 and len(entry[2]) for entry in plan):
                raise _refuse("cannot replay an episode's actions")
            seeds = np.array([episode_seed(int(e[0]), int(e[1])) for e in plan], dtype=np.int64)
            obs, _ = self.reset(seed=seeds)
            return tuple(obs)
        if name == "apply_change":
            raise _refuse("changes to the copies while training (a curriculum) are not supported; use sync")
        raise AttributeError(f"env.vectorization=ale has no method {name!r}")

    def close_extras(self, **kwargs: Any) -> None:
        for vector in self.vectors:
            vector.close()
