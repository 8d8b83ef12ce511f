"""An environment with its own metrics, and callbacks the event tests give to ``train --callback``.

Loaded by the tests as ``--env-module tests/event_envs.py``; registering happens on import.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import Callback, StopTraining, register_env

METRIC_ENV_ID = "MetricWalk-v0"


class MetricWalk(gym.Env):
    """Two actions, episodes of 5-30 steps. Every step reports ``info["metrics"]`` (``x``: a
    random number, ``y`` on odd steps only); the last step also reports the episode's own
    averages (``naive_x``, ``naive_y``) and ``is_success``, computed here the naive way."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        #: Added to x and shown in the observation: what a curriculum test changes.
        self.bias = 0.0
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self._xs: list[float] = []
        self._ys: list[float] = []
        self._length = 0

    def _obs(self):
        return np.array([len(self._xs) / 30.0, np.tanh(self.bias)], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._xs, self._ys = [], []
        self._length = int(self.np_random.integers(5, 31))
        return self._obs(), {}

    def step(self, action):
        x = float(self.np_random.normal()) + float(action) + self.bias
        self._xs.append(x)
        metrics = {"x": x}
        if len(self._xs) % 2:
            y = float(self.np_random.uniform())
            self._ys.append(y)
            metrics["y"] = y
        info = {"metrics": metrics}
        terminated = len(self._xs) >= self._length
        if terminated:
            info["naive_x"] = sum(self._xs) / len(self._xs)
            info["naive_y"] = sum(self._ys) / len(self._ys)
            info["is_success"] = float(action == 1)
        return self._obs(), float(action), terminated, False, info

    def shift(self, amount: float) -> None:
        """A method a curriculum calls (``agent.env_call("shift", 0.1)``)."""
        self.bias += amount

    def render(self):
        frame = np.zeros((64, 96, 3), np.uint8)
        frame[:, : 3 * len(self._xs)] = 200
        return frame


register_env(METRIC_ENV_ID, MetricWalk)

EVENTS = (
    "on_training_start",
    "on_episode_end",
    "on_rollout_end",
    "on_update_end",
    "on_evaluation_end",
    "on_training_end",
)


class MoveBias(Callback):
    """A curriculum for tests: after each update, alternately sets ``bias`` and calls ``shift``."""

    def on_update_end(self, update):
        if update.iteration % 2:
            self.agent.env_set("bias", 0.1 * update.iteration)
        else:
            self.agent.env_call("shift", -0.05)


class CountEvents(Callback):
    """Counts each event; writes the counts to ``$EVENTS_OUT`` (JSON) at the end, if set."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.env_indices: set[int] = set()
        self.episodes: list[dict] = []
        self.rollout_sums: list[float] = []
        self.reason = None

    def _count(self, name: str) -> None:
        self.counts[name] += 1

    def on_training_start(self, event):
        self._count("on_training_start")

    def on_episode_end(self, episode):
        self._count("on_episode_end")
        self.env_indices.add(episode.env_index)
        self.episodes.append({"return": episode.episode_return, "info": dict(episode.info)})

    def on_rollout_end(self, rollout):
        self._count("on_rollout_end")
        self.rollout_sums.append(float(rollout.rewards.sum()) + float(rollout.advantages.sum()))

    def on_update_end(self, update):
        self._count("on_update_end")

    def on_evaluation_end(self, evaluation):
        self._count("on_evaluation_end")

    def on_training_end(self, event):
        self._count("on_training_end")
        self.reason = event.reason
        out = os.environ.get("EVENTS_OUT")
        if out:
            indices = sorted(self.env_indices)
            data = {"counts": dict(self.counts), "env_indices": indices, "reason": event.reason}
            Path(out).write_text(json.dumps(data))


class StopFromEvent(Callback):
    """Asks to stop from the event named by ``$STOP_EVENT`` at its ``$STOP_AFTER``-th call
    (returning False, or raising StopTraining when ``$STOP_RAISE`` is set)."""

    def __init__(self, event: str | None = None, after: int | None = None, raise_it: bool | None = None):
        self.event = event or os.environ["STOP_EVENT"]
        self.after = after if after is not None else int(os.environ.get("STOP_AFTER", "2"))
        self.raise_it = raise_it if raise_it is not None else bool(os.environ.get("STOP_RAISE"))
        self.calls = 0
        for name in EVENTS:
            if name == self.event:
                setattr(self, name, self._maybe_stop)

    def _maybe_stop(self, _event):
        self.calls += 1
        if self.calls >= self.after:
            if self.raise_it:
                raise StopTraining
            return False
        return None
