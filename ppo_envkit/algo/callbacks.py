"""Events: the seam for users' code while an agent trains.

Subclass :class:`Callback` and override the moments you need; each receives one typed,
read-only event and may return ``False`` (or raise :class:`StopTraining`) to end training::

    from ppo_envkit import Callback, PPO

    class StopWhenLanded(Callback):
        def on_episode_end(self, episode):
            if episode.episode_return > 250:
                return False            # ends training at the end of this iteration

    PPO.from_preset("lunarlander").learn(200_000, callback=StopWhenLanded())

One training iteration fires, in this order (all on rank 0, see below):

1. ``on_episode_end`` once per episode that ended during the rollout, in step order (and in
   copy order within a step), after the rollout is collected;
2. ``on_rollout_end`` with the rollout (advantages computed, before the update);
3. ``on_update_end`` with the update's statistics (the metrics logged for the iteration);
4. ``on_evaluation_end`` when an evaluation ran after this iteration;

and ``on_training_start`` / ``on_training_end`` once per training call (``learn``/``train``).
A stop requested by any event ends training at the end of the iteration (after its
update, evaluation and logging): the trainer saves a checkpoint there as at any other end
(with a run directory), and ``train --resume`` goes on from it. A stop from
``on_training_start`` ends the call before its first iteration.

Several ranks (``run.processes`` or ``torchrun``): events fire on **rank 0 only**, with
rank 0's data: its rollout, the episodes of its environment copies (``env_index`` counts
copies over all ranks, so rank 0's are ``0 .. num_envs/ranks - 1``), the update's statistics
(identical on every rank; episode returns in them are over every rank) and the evaluations
(which only rank 0 runs). Rank 0's decision to stop is broadcast, so every rank stops after
the same iteration.

A callback's own state can travel with checkpoints: :meth:`Callback.state_dict` is saved in
every checkpoint (``trainer.json``, JSON-ready data) and given back to
:meth:`Callback.load_state_dict` when a resumed run starts training: a curriculum's level,
for example, survives ``train --resume``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import torch


class StopTraining(Exception):
    """Raise from any event to end training cleanly, as returning ``False`` does."""


@dataclass(frozen=True)
class TrainingStart:
    """A training call starts (``learn``/``train``)."""

    num_timesteps: int
    iteration: int
    target_timesteps: int
    #: Ranks training together (``run.processes`` or torchrun's world size).
    world_size: int


@dataclass(frozen=True)
class TrainingEnd:
    """A training call ended without an error."""

    num_timesteps: int
    iteration: int
    target_timesteps: int
    #: Why it ended: ``"steps"`` (target reached), ``"callback"`` (an event asked to stop),
    #: ``"stop_at"`` (an evaluation reached ``run.stop_at``).
    reason: str


@dataclass(frozen=True)
class EpisodeEnd:
    """One episode of one training copy ended (terminated or truncated)."""

    #: The copy, numbered over every rank's copies.
    env_index: int
    episode_return: float
    length: int
    #: The environment's ``info`` of the episode's last step (the vector environment's
    #: ``final_info`` of that copy); do not change it.
    info: Mapping[str, Any]
    #: Training steps (over every rank) when it ended.
    num_timesteps: int


class RolloutEnd:
    """One rollout of this rank, after GAE and before the update: arrays ``[n_steps, copies, ...]``
    as read-only numpy views (made when first read: an event that reads none costs nothing).

    ``rewards`` are the rewards as trained on (scaled when ``env.normalize_reward`` is on);
    ``obs`` are normalized observations as the policy sees them (flattened)."""

    FIELDS = ("obs", "actions", "rewards", "values", "logprobs", "advantages", "returns", "terminated")

    def __init__(self, rollout: Any, num_timesteps: int, iteration: int):
        self._rollout = rollout
        #: Training steps (over every rank) after this rollout.
        self.num_timesteps = num_timesteps
        #: The iteration this rollout belongs to (1 for the first).
        self.iteration = iteration
        self.n_steps: int = rollout.n_steps
        self.num_envs: int = rollout.num_envs
        self._cache: dict[str, np.ndarray] = {}

    def _array(self, name: str) -> np.ndarray:
        array = self._cache.get(name)
        if array is None:
            tensor: torch.Tensor = getattr(self._rollout, name)
            array = tensor.detach().cpu().numpy().view()
            array.flags.writeable = False
            self._cache[name] = array
        return array

    @property
    def obs(self) -> np.ndarray:
        return self._array("obs")

    @property
    def actions(self) -> np.ndarray:
        """Actions as stored by the policy head (a discrete action's index, a Gaussian's unclipped sample)."""
        return self._array("actions")

    @property
    def rewards(self) -> np.ndarray:
        return self._array("rewards")

    @property
    def values(self) -> np.ndarray:
        return self._array("values")

    @property
    def logprobs(self) -> np.ndarray:
        return self._array("logprobs")

    @property
    def advantages(self) -> np.ndarray:
        return self._array("advantages")

    @property
    def returns(self) -> np.ndarray:
        return self._array("returns")

    @property
    def terminated(self) -> np.ndarray:
        return self._array("terminated")

    @property
    def episode_end(self) -> np.ndarray:
        """Whether an episode ended after each step (bool)."""
        return self._array("episode_end")


@dataclass(frozen=True)
class UpdateEnd:
    """An update (the PPO epochs on one rollout) ended."""

    num_timesteps: int
    iteration: int
    #: The iteration's statistics as logged: losses, approx-KL, clip fraction, explained
    #: variance, learning rate, recent episode return and length, speed (read-only).
    metrics: Mapping[str, float]


@dataclass(frozen=True)
class EvaluationEnd:
    """An evaluation during training ended (``run.eval_interval``)."""

    num_timesteps: int
    mean_return: float
    std_return: float
    #: Each evaluation episode's return and length.
    returns: tuple[float, ...]
    lengths: tuple[int, ...]
    #: What is logged of it (``eval_return``, ``eval_length``, ``eval_best``, ...).
    metrics: Mapping[str, float] = field(default_factory=dict)


class Callback:
    """Base class of users' training callbacks: override the events you need.

    Each event returns ``None`` (go on) or ``False`` (stop training at the end of this
    iteration); raising :class:`StopTraining` does the same. ``self.agent`` is the ``PPO``
    agent being trained (set before ``on_training_start``).
    """

    #: The agent being trained (set by ``PPO.learn``/``PPO.train``).
    agent: Any = None

    def on_training_start(self, event: TrainingStart) -> bool | None:
        return None

    def on_episode_end(self, episode: EpisodeEnd) -> bool | None:
        return None

    def on_rollout_end(self, rollout: RolloutEnd) -> bool | None:
        return None

    def on_update_end(self, update: UpdateEnd) -> bool | None:
        return None

    def on_evaluation_end(self, evaluation: EvaluationEnd) -> bool | None:
        return None

    def on_training_end(self, event: TrainingEnd) -> bool | None:
        return None

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state saved with every checkpoint (a curriculum's level, say); {} by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` when a resumed run starts training."""


class EveryEvent(Callback):
    """Listens to every event and does nothing: what the events themselves cost
    (``ppo-envkit bench --callback ppo_envkit.algo.callbacks:EveryEvent``)."""

    def on_training_start(self, event: TrainingStart) -> bool | None:
        return None

    def on_episode_end(self, episode: EpisodeEnd) -> bool | None:
        return None

    def on_rollout_end(self, rollout: RolloutEnd) -> bool | None:
        return None

    def on_update_end(self, update: UpdateEnd) -> bool | None:
        return None

    def on_evaluation_end(self, evaluation: EvaluationEnd) -> bool | None:
        return None

    def on_training_end(self, event: TrainingEnd) -> bool | None:
        return None


class CallbackList(Callback):
    """Several callbacks as one; each event goes to each in order (all of them, even after
    one asked to stop)."""

    def __init__(self, callbacks: Iterable[Callback]):
        self.callbacks = list(callbacks)

    def _all(self, method: str, event: Any) -> bool | None:
        stop = False
        for callback in self.callbacks:
            try:
                stop = getattr(callback, method)(event) is False or stop
            except StopTraining:
                stop = True
        return False if stop else None

    def on_training_start(self, event: TrainingStart) -> bool | None:
        return self._all("on_training_start", event)

    def on_episode_end(self, episode: EpisodeEnd) -> bool | None:
        return self._all("on_episode_end", episode)

    def on_rollout_end(self, rollout: RolloutEnd) -> bool | None:
        return self._all("on_rollout_end", rollout)

    def on_update_end(self, update: UpdateEnd) -> bool | None:
        return self._all("on_update_end", update)

    def on_evaluation_end(self, evaluation: EvaluationEnd) -> bool | None:
        return self._all("on_evaluation_end", evaluation)

    def on_training_end(self, event: TrainingEnd) -> bool | None:
        return self._all("on_training_end", event)

    def state_dict(self) -> dict[str, Any]:
        return {str(i): c.state_dict() for i, c in enumerate(self.callbacks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, callback in enumerate(self.callbacks):
            if str(i) in state:
                callback.load_state_dict(state[str(i)])


def overrides(callback: Callback | None, method: str) -> bool:
    """Whether ``callback`` does something in ``method`` (the base class's does nothing):
    the trainer skips preparing events nobody listens to (per-episode infos, say)."""
    if callback is None:
        return False
    if isinstance(callback, CallbackList):
        return any(overrides(c, method) for c in callback.callbacks)
    bound = getattr(callback, method, None)
    return getattr(bound, "__func__", bound) is not getattr(Callback, method)


def fire(callback: Callback | None, method: str, event: Any) -> bool:
    """Run one event; True when it asks to stop (returned False, or raised StopTraining)."""
    if callback is None:
        return False
    try:
        return getattr(callback, method)(event) is False
    except StopTraining:
        return True


def read_only(metrics: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(dict(metrics))


__all__ = [
    "Callback",
    "CallbackList",
    "EpisodeEnd",
    "EvaluationEnd",
    "EveryEvent",
    "RolloutEnd",
    "StopTraining",
    "TrainingEnd",
    "TrainingStart",
    "UpdateEnd",
    "fire",
    "overrides",
    "read_only",
]
