"""Per-episode seeding and bookkeeping that make training resumable exactly.

Environment state (a Box2D world, say) cannot be saved in general. But an episode
is fully determined by the seed of its reset and the actions taken since, so:

* :class:`ReplayableEpisodes`, the outermost wrapper of every training
  environment, seeds episode ``k`` of copy ``i`` from ``(base_seed_i, k)``;
* :class:`EpisodeTracker`, in the learner, remembers the actions of each
  copy's current episode, plus episode returns and lengths for logging;
* on resume, each copy resets with its episode's seed and replays those actions,
  inside its own worker process when vectorization is asynchronous.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np

from ..errors import ObservationError

#: Episodes longer than this are not kept for replay; such a copy restarts its episode on resume.
MAX_REPLAY_STEPS = 100_000
#: Finished episodes a copy keeps for :meth:`ReplayableEpisodes.take_finished` (older ones are
#: dropped: a copy nobody reads, such as an evaluation copy, keeps no more than this).
MAX_KEPT_EPISODES = 10_000
#: One change of the training copies while training: ``[kind, name, args]``, kind ``"set"``
#: (``args == [value]``) or ``"call"`` (a method's positional arguments), JSON-ready.
EnvChange = list[Any]
#: The info key of an environment's own per-step numbers (``info["metrics"] = {"drag": 0.3}``).
METRICS_KEY = "metrics"


def episode_seed(base_seed: int, episode: int) -> int:
    """Seed of episode ``episode`` of a copy whose first reset used ``base_seed``."""
    if episode == 0:
        return int(base_seed)
    return int(np.random.SeedSequence([int(base_seed), int(episode)]).generate_state(1)[0] & 0x7FFFFFFF)


class _EpisodeMetrics:
    """Per-episode metrics of one environment copy: each key of ``info["metrics"]`` averaged
    over the episode's steps that gave it, and each of ``info_keywords``' value at the
    episode's last step; kept with the episode's index (and its last info, when asked) until
    :meth:`take_finished`."""

    episode: int

    def _init_metrics(self) -> None:
        #: Plain info keys whose value at an episode's last step is kept (``run.info_keywords``).
        self.info_keywords: tuple[str, ...] = ()
        #: Whether finished episodes keep their last step's info (for ``on_episode_end``).
        self.keep_final_info = False
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._has_metrics = False
        self._finished: deque[tuple[int, dict[str, float], dict[str, Any] | None]] = deque(
            maxlen=MAX_KEPT_EPISODES
        )

    def _step_metrics(self, result: tuple[Any, ...]) -> None:
        info = result[4]
        metrics = info.get(METRICS_KEY) if info else None
        if metrics is not None:
            self._add_metrics(metrics)
        if (result[2] or result[3]) and (self._has_metrics or self.info_keywords or self.keep_final_info):
            self._finish(info)

    def _add_metrics(self, metrics: Any) -> None:
        """Add one step's ``info["metrics"]`` to the episode's sums."""
        if not isinstance(metrics, dict):
            raise TypeError(
                f'info["{METRICS_KEY}"] must be a dict of numbers (name -> value), '
                f"not {type(metrics).__name__}"
            )
        self._has_metrics = True
        sums, counts = self._sums, self._counts
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise TypeError(
                    f'info["{METRICS_KEY}"]["{key}"] must be a number, not {type(value).__name__}'
                ) from None
            sums[key] = sums.get(key, 0.0) + number
            counts[key] = counts.get(key, 0) + 1

    def _finish(self, info: dict[str, Any]) -> None:
        """An episode ended: keep its per-episode metrics (and its last info, when asked)."""
        values = {key: self._sums[key] / self._counts[key] for key in self._sums}
        for key in self.info_keywords:
            value = info.get(key)
            if value is not None:
                try:
                    values[key] = float(value)
                except (TypeError, ValueError):
                    raise TypeError(
                        f'info["{key}"] (run.info_keywords) must be a number at an episode\'s end, '
                        f"not {type(value).__name__}"
                    ) from None
        self._sums.clear()
        self._counts.clear()
        self._finished.append((self.episode, values, dict(info) if self.keep_final_info else None))

    def take_finished(self) -> list[tuple[int, dict[str, float], dict[str, Any] | None]]:
        """``(episode index, per-episode metrics, last info or None)`` of each episode finished
        since the last call (the training copies' owner calls it once per rollout).

        Per-episode metrics: each key of ``info["metrics"]`` averaged over the episode's steps
        that gave it; each ``info_keywords`` key's value at the episode's last step."""
        finished = list(self._finished)
        self._finished.clear()
        return finished


class EpisodeMetrics(gym.Wrapper, _EpisodeMetrics):
    """The per-episode metrics alone (evaluation copies, which need no replay)."""

    def __init__(self, env: gym.Env, info_keywords: tuple[str, ...] = ()):
        super().__init__(env)
        self.episode = -1
        self._init_metrics()
        self.info_keywords = tuple(info_keywords)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self.episode = 0 if seed is not None else self.episode + 1
        self._sums.clear()
        self._counts.clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        result = self.env.step(action)
        self._step_metrics(result)
        return result


class ReplayableEpisodes(gym.Wrapper, _EpisodeMetrics):
    """Reseeds every reset deterministically and can rebuild an episode by replaying actions.

    With ``seed_every_episode=False`` only the first reset (and a resume's) is seeded: for an
    environment whose seeded reset is expensive (the ALE reloads its ROM, about 0.1 s, on every
    seeded reset); its later episodes follow from the first seed and every action since, so a
    resume cannot rebuild the episode in progress and starts a new one instead."""

    def __init__(self, env: gym.Env, seed_every_episode: bool = True):
        super().__init__(env)
        self.seed_every_episode = seed_every_episode
        self.base_seed: int | None = None
        self.episode = -1
        self.steps = 0
        self.pending_replay: tuple[Any, ...] | None = None
        self._init_metrics()
        space = env.observation_space
        # Box observations are checked on every step (a tuple compare): a wrong shape would
        # otherwise surface as "Output array is the wrong shape" deep inside the vector env.
        self._shape = space.shape if isinstance(space, gym.spaces.Box) else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self.base_seed, self.episode = int(seed), 0
        else:
            if self.base_seed is None:
                self.base_seed = int(np.random.SeedSequence().generate_state(1)[0] & 0x7FFFFFFF)
            self.episode += 1
        self.steps = 0
        self._sums.clear()
        self._counts.clear()
        reseed = self.seed_every_episode or self.episode == 0
        obs, info = self.env.reset(
            seed=episode_seed(self.base_seed, self.episode) if reseed else None, options=options
        )
        self._check(obs, "reset()")
        return obs, info

    def step(self, action: Any):
        result = self.env.step(action)
        self.steps += 1
        if self._shape is not None and np.shape(result[0]) != self._shape:
            self._check(result[0], "step()")
        self._step_metrics(result)
        return result

    @property
    def agent_layout(self) -> Any:
        """The agent spaces of a several-agent environment
        (:func:`~ppo_envkit.environments.agent_stack.agent_spaces`; None for one agent): asked
        through the vector of copies (``get_attr``), which reaches worker processes too."""
        from .agent_stack import agent_spaces

        return agent_spaces(self.env)

    def _check(self, obs: Any, call: str) -> None:
        if self._shape is not None and np.shape(obs) != self._shape:
            spec = self.env.spec
            name = spec.id if spec is not None else type(self.env.unwrapped).__name__
            raise ObservationError(
                f"environment {name}: {call} returned an observation of shape {np.shape(obs)} "
                f"(step {self.steps} of episode {self.episode}), but its observation_space is "
                f"{self.env.observation_space} (shape {self._shape}); return arrays of that shape "
                "on every step"
            )

    def apply_change(self, change: EnvChange) -> None:
        """Apply one change of the environment (:data:`EnvChange`): ``["set", name, [value]]``
        sets an attribute the environment (or one of its wrappers) has; ``["call", name, args]``
        calls its method."""
        kind, name, args = change
        if kind == "set":
            if not self.env.set_wrapper_attr(name, args[0], force=False):
                raise AttributeError(
                    f"env_set({name!r}, ...): the environment has no attribute {name!r} "
                    f"({type(self.env.unwrapped).__name__}); env_set changes an existing attribute"
                )
        elif kind == "call":
            method = self.env.get_wrapper_attr(name)
            if not callable(method):
                raise TypeError(f"env_call({name!r}, ...): the environment's {name!r} is not a method")
            method(*args)
        else:
            raise ValueError(f"unknown environment change {kind!r}")

    def replay_pending(self) -> Any:
        """Reset to the pending ``(base_seed, episode, actions, before, during)`` and replay;
        returns the observation. The changes ``before`` the episode are applied before its reset,
        each of ``during`` (``(steps into the episode, change)``) where it came."""
        if self.pending_replay is None:
            raise RuntimeError("no replay was set (set_attr('pending_replay', ...) first)")
        base_seed, episode, actions, *changes = self.pending_replay
        before, during = changes if changes else ([], [])
        self.pending_replay = None
        for change in before:
            self.apply_change(change)
        self.base_seed, self.episode = int(base_seed), int(episode)
        obs, _ = self.env.reset(seed=episode_seed(self.base_seed, self.episode))
        self.steps = 0
        self._sums.clear()  # rebuilt by the replay
        self._counts.clear()
        composite = isinstance(self.action_space, gym.spaces.Tuple | gym.spaces.Dict)
        upcoming = list(during)
        for step, action in enumerate(actions):
            while upcoming and upcoming[0][0] <= step:
                self.apply_change(upcoming.pop(0)[1])
            if composite:  # (histories hold composite actions flattened: heads' history_rows)
                action = gym.spaces.unflatten(self.action_space, action)
            obs, _, terminated, truncated, _ = self.step(action)
            if (terminated or truncated) and step != len(actions) - 1:
                raise RuntimeError(
                    "replaying the saved episode ended it early: the environment is not "
                    "deterministic given its seed and actions"
                )
        for _, change in upcoming:  # made after the last action
            self.apply_change(change)
        return obs


class EpisodeTracker:
    """Actions of each copy's current episode, episode indices, and finished-episode stats."""

    def __init__(
        self,
        num_envs: int,
        base_seed: int,
        action_shape: tuple[int, ...],
        action_dtype: Any,
        window: int = 20,
        replay: bool = True,
    ):
        """``replay=False``: the copies' episodes are not determined by their own seeds
        (``env.seed_every_episode=false``), so no actions are kept and a resume starts every copy
        on a new episode."""
        self.num_envs = num_envs
        self.replay = replay
        self.base_seeds = np.arange(num_envs, dtype=np.int64) + int(base_seed)
        self.episodes = np.zeros(num_envs, dtype=np.int64)
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.recent_returns: deque[float] = deque(maxlen=window)
        self.recent_lengths: deque[int] = deque(maxlen=window)
        #: Per-episode values of the environment's metrics (``info["metrics"]``, ``run.info_keywords``),
        #: the last ``window`` episodes that gave each key, in the order they ended.
        self.recent_metrics: dict[str, deque[float]] = {}
        self.window = window
        self.finished = 0
        self._action_shape = tuple(action_shape)
        self._dtype = np.dtype(action_dtype)
        self._history = np.zeros((1024, num_envs, *self._action_shape), self._dtype)
        self._size = 0  # rows used in _history
        self._start = np.zeros(num_envs, dtype=np.int64)  # row where each current episode began
        self.replayable = np.full(num_envs, replay, dtype=bool)
        #: Every change made to the copies while training, in order (a curriculum's steps).
        self.changes: list[EnvChange] = []
        #: Per copy: ``(steps into its current episode, index in changes)`` of the changes made
        #: during its current episode (a replay makes them at the same steps).
        self.episode_changes: list[list[tuple[int, int]]] = [[] for _ in range(num_envs)]

    def record(self, actions: np.ndarray, rewards: np.ndarray, dones: np.ndarray) -> list[tuple[float, int]]:
        """Record one vector step; returns ``(return, length)`` of episodes that just ended."""
        if self._size == len(self._history):
            self._compact()
        self._history[self._size] = actions
        self._size += 1
        self.returns += rewards
        self.lengths += 1
        ended: list[tuple[float, int]] = []
        if dones.any():
            for i in np.flatnonzero(dones):
                ended.append((float(self.returns[i]), int(self.lengths[i])))
            self.recent_returns.extend(r for r, _ in ended)
            self.recent_lengths.extend(n for _, n in ended)
            self.finished += len(ended)
            for i in np.flatnonzero(dones):
                if self.episode_changes[i]:
                    self.episode_changes[i] = []
            self.returns[dones] = 0.0
            self.lengths[dones] = 0
            self.episodes[dones] += 1
            self._start[dones] = self._size
            self.replayable[dones] = self.replay
        return ended

    def note_change(self, change: EnvChange) -> None:
        """A change made to every copy now (between two vector steps)."""
        self.changes.append(change)
        index = len(self.changes) - 1
        for i in range(self.num_envs):
            self.episode_changes[i].append((int(self.lengths[i]), index))

    def prune_changes(self, name: str, keep: int) -> None:
        """Forget the changes called ``name`` that no copy can need any more: of those made
        before every copy's current episode began, all but the last ``keep``. For a change that
        adds a member to a bounded pool whose oldest member leaves (self-play snapshots), the
        pruned log builds the same pool, and the checkpoint stays bounded however long the run."""
        first = min((copy[0][1] if copy else len(self.changes)) for copy in self.episode_changes)
        named = [k for k in range(first) if self.changes[k][1] == name]
        drop = set(named[: max(0, len(named) - keep)])
        if not drop:
            return
        remap: dict[int, int] = {}
        kept: list[EnvChange] = []
        for k, change in enumerate(self.changes):
            if k not in drop:
                remap[k] = len(kept)
                kept.append(change)
        self.changes = kept
        self.episode_changes = [[(pos, remap[k]) for pos, k in copy] for copy in self.episode_changes]

    def add_metrics(self, values: dict[str, float]) -> None:
        """One finished episode's metrics (see :meth:`ReplayableEpisodes.take_finished`)."""
        for key, value in values.items():
            recent = self.recent_metrics.get(key)
            if recent is None:
                recent = self.recent_metrics[key] = deque(maxlen=self.window)
            recent.append(value)

    def _compact(self) -> None:
        """Drop rows no current episode needs; grow when every row is still needed."""
        too_long = self.lengths > MAX_REPLAY_STEPS
        self.replayable[too_long] = False
        live = self._start[self.replayable]
        keep_from = int(live.min()) if live.size else self._size
        kept = self._history[keep_from : self._size]
        capacity = len(self._history)
        if len(kept) > capacity // 2:
            capacity *= 2
        history = np.zeros((capacity, self.num_envs, *self._action_shape), self._dtype)
        history[: len(kept)] = kept
        self._history, self._size = history, len(kept)
        self._start = np.maximum(self._start - keep_from, 0)

    def current_actions(self, i: int) -> np.ndarray | None:
        """Actions of copy ``i``'s current episode, or None if it is too long to replay."""
        if not self.replayable[i]:
            return None
        return self._history[self._start[i] : self._size, i].copy()

    # ---------------------------------------------------------------- state for checkpoints

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-ready scalars, arrays) describing the tracker exactly."""
        arrays: dict[str, np.ndarray] = {
            "returns": self.returns.copy(),
            "lengths": self.lengths.copy(),
            "episodes": self.episodes.copy(),
            "base_seeds": self.base_seeds.copy(),
            "recent_returns": np.asarray(self.recent_returns, dtype=np.float64),
            "recent_lengths": np.asarray(self.recent_lengths, dtype=np.int64),
        }
        metric_keys = sorted(self.recent_metrics)
        for k, key in enumerate(metric_keys):
            arrays[f"metrics.{k}"] = np.asarray(self.recent_metrics[key], dtype=np.float64)
        replayable = []
        for i in range(self.num_envs):
            actions = self.current_actions(i)
            replayable.append(actions is not None)
            if actions is not None:
                arrays[f"actions.{i}"] = actions
        meta = {
            "finished": self.finished,
            "replayable": replayable,
            "window": self.recent_returns.maxlen,
            "metrics": metric_keys,
            "changes": [list(c) for c in self.changes],
            "episode_changes": [[list(c) for c in copy] for copy in self.episode_changes],
            "action_shape": list(self._action_shape),
        }
        return meta, arrays

    def load_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Restore the state written by :meth:`state`."""
        if "action_shape" in meta:  # (several agents: [A, ...], known once the copies exist)
            self._action_shape = tuple(int(d) for d in meta["action_shape"])
        self.returns[:] = arrays["returns"]
        self.lengths[:] = arrays["lengths"]
        self.episodes[:] = arrays["episodes"]
        self.base_seeds[:] = arrays["base_seeds"]
        self.recent_returns = deque(arrays["recent_returns"].tolist(), maxlen=meta["window"])
        self.recent_lengths = deque(arrays["recent_lengths"].tolist(), maxlen=meta["window"])
        self.finished = int(meta["finished"])
        self.window = int(meta["window"])
        self.changes = list(meta.get("changes", []))
        self.episode_changes = [
            [(int(p), int(k)) for p, k in copy] for copy in meta.get("episode_changes", [[]] * self.num_envs)
        ]
        self.recent_metrics = {
            key: deque(arrays[f"metrics.{k}"].tolist(), maxlen=self.window)
            for k, key in enumerate(meta.get("metrics", []))
        }
        stored = [arrays[f"actions.{i}"] if meta["replayable"][i] else None for i in range(self.num_envs)]
        longest = max((len(a) for a in stored if a is not None), default=0)
        self._history = np.zeros((max(1024, 2 * longest), self.num_envs, *self._action_shape), self._dtype)
        self._size = longest
        for i, actions in enumerate(stored):
            self.replayable[i] = actions is not None
            if actions is None:
                self._start[i] = longest
            else:
                self._history[longest - len(actions) : longest, i] = actions.astype(self._dtype, copy=False)
                self._start[i] = longest - len(actions)

    def replay_plan(self) -> list[tuple[Any, ...]]:
        """``(base_seed, episode, actions, changes before it, changes during it)`` per copy that
        rebuilds its current episode.

        A copy whose episode was too long to keep starts a new episode instead.
        """
        plans = []
        for i in range(self.num_envs):
            actions = self.current_actions(i)
            if actions is None:
                self.episodes[i] += 1
                self.returns[i], self.lengths[i] = 0.0, 0
                self._start[i] = self._size
                self.replayable[i] = self.replay
                self.episode_changes[i] = []
                actions = np.zeros((0, *self._action_shape), self._dtype)
            during = self.episode_changes[i]
            first = during[0][1] if during else len(self.changes)
            plans.append(
                (
                    int(self.base_seeds[i]),
                    int(self.episodes[i]),
                    actions,
                    self.changes[:first],
                    [(pos, self.changes[k]) for pos, k in during],
                )
            )
        return plans
