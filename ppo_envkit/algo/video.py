"""One episode played by a policy and rendered (``rgb_array``): the evaluation videos of
``run.eval_video`` and the notebooks' ``agent.show()``.

The episode plays in a separate environment made by the one factory
(:func:`~ppo_envkit.environments.factory.make_configured_env`, with ``render_mode="rgb_array"``),
with the agent's stored normalization statistics and a random generator of its own: like
evaluations, it draws nothing from the training generator and changes no statistics, so a
run's weights are the same with or without videos.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import EnvConfig
from ..environments.factory import make_configured_env
from ..io.media import DEFAULT_FPS
from .acting import EpisodeActor
from .callbacks import Callback, EvaluationEnd
from .policy import ActorCritic

#: Frames kept at most per video (longer episodes are cut: a video is for looking at).
MAX_FRAMES = 1000


@dataclass
class Episode:
    frames: list[np.ndarray]
    fps: float
    episode_return: float
    length: int
    seconds: float


def play_episode(
    policy: ActorCritic,
    env_config: EnvConfig,
    *,
    seed: int = 0,
    deterministic: bool = True,
    max_frames: int = MAX_FRAMES,
) -> Episode:
    """Play one episode (up to ``max_frames`` steps) rendering every step."""
    started = time.perf_counter()
    env = make_configured_env(env_config, render_mode="rgb_array")
    try:
        fps = float(env.metadata.get("render_fps") or DEFAULT_FPS)
        actor = EpisodeActor(policy, torch.Generator().manual_seed(seed), deterministic)
        obs, info = env.reset(seed=seed)
        frames = [_frame(env.render(), env_config.id)]
        total, steps = 0.0, 0
        while steps < max_frames:
            action = actor(obs, action_mask=info.get("action_mask"))
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            steps += 1
            frames.append(_frame(env.render(), env_config.id))
            if terminated or truncated:
                break
    finally:
        env.close()
    return Episode(frames, fps, total, steps, time.perf_counter() - started)


def _frame(frame: Any, env_id: str) -> np.ndarray:
    array = np.asarray(frame) if frame is not None else None
    if array is None or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(
            f"{env_id} did not render an RGB image with render_mode='rgb_array' (got "
            f"{None if array is None else array.shape}); videos need an environment that renders rgb_array"
        )
    return np.ascontiguousarray(array[..., :3].astype(np.uint8, copy=False))


class EvalVideo(Callback):
    """``run.eval_video``: after each evaluation during training, one episode (deterministic,
    the first evaluation seed) rendered and given to ``sink.log_video(tag, frames, fps, step)``
    (the run logger: TensorBoard, ``RUN_DIR/videos/``, W&B)."""

    def __init__(self, sink: Any, seed: int):
        self.sink, self.seed = sink, seed
        #: Seconds each video took (playing, rendering and writing).
        self.seconds: list[float] = []

    def on_evaluation_end(self, evaluation: EvaluationEnd) -> bool | None:
        started = time.perf_counter()
        agent = self.agent
        deterministic = (agent.state.eval_mode or {}).get("mode") != "stochastic"
        episode = play_episode(agent.policy, agent.config.env, seed=self.seed, deterministic=deterministic)
        self.sink.log_video("eval/video", episode.frames, episode.fps, evaluation.num_timesteps)
        self.seconds.append(time.perf_counter() - started)
        return None


__all__ = ["MAX_FRAMES", "Episode", "EvalVideo", "play_episode"]
