"""``Collector``: steps this rank's environment copies with the current policy and fills a rollout.

Per environment step it stores the normalized observation, the stored form of the
action, its log-probability and the value (all at collection time, detached), the
scaled reward, the episode flags, and V(final observation) wherever an episode was
truncated (the bootstrap that GAE needs: the vector environment resets on the same
step and reports the real last observation in ``info["final_obs"]``).

It also owns what lives between rollouts: the environment copies and their
episodes (:class:`~ppo_envkit.environments.episodes.EpisodeTracker`, which makes a
resumed run replay each copy's current episode exactly), the running discounted
returns of reward scaling, and the observation the next rollout starts from.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from gymnasium.vector.utils import concatenate, create_empty_array

from ..config import ConfigError, TrainConfig
from ..environments.episodes import EpisodeTracker
from ..environments.failures import describe
from ..environments.masks import vector_masks
from ..environments.multiagent import TimeLimit, resolve_time_limit
from ..errors import ActionMaskError, EnvironmentFailed, NonFiniteError, ObservationError
from ..parallel import copies_per_rank
from ..parallel.collectives import Collectives
from ..parallel.vectorize import make_vec_env
from ..spaces import require_fits
from .agent_rows import collect_rows, to_rows
from .context import RankContext
from .normalize import ObsNormalizer, RunningMeanStd
from .pipelined import collect_pipelined
from .recurrent import Memory
from .rollout import RolloutBuffer
from .selfplay import ADD_SNAPSHOT, configure_copies


class Collector:
    """Fills a :class:`RolloutBuffer` from this rank's share of ``env.num_envs`` copies."""

    def __init__(self, context: RankContext):
        self.context = context
        self.policy = context.policy
        self.envs: Any = None
        self.episodes: EpisodeTracker | None = None
        self.reward_returns: torch.Tensor | None = None  # per copy, for reward scaling
        self.next_obs: torch.Tensor | None = None  # normalized; where the next rollout starts
        self.next_masks: torch.Tensor | None = None  # the action masks in force there (None: no masks)
        self.memory: Memory | None = None  # recurrent policies: each copy's state, and episode starts
        self.rollout: RolloutBuffer | None = None
        self._obs_sync: _SharedObsStats | None = None
        #: Several agents (a PettingZoo parallel environment): agents per copy, the rollout's
        #: rows being ``num_envs * agents`` (see :mod:`.agent_rows`); None for one agent.
        self.agents: int | None = None
        self.next_valid: np.ndarray | None = None  # several agents: the rows live for next_obs
        #: Episodes that ended in the last rollout, in step order: ``(training step, copy over
        #: all ranks, return, length, per-episode metrics, last info or None)``.
        self.ended: list[tuple[int, int, float, int, dict[str, float], dict[str, Any] | None]] = []
        #: Whether ended episodes keep their last step's info (someone listens to episode ends).
        self.keep_final_info = False
        self._metric_keys_hash: tuple[tuple[str, ...], int] = ((), 0)
        #: Changes made to the copies so far, for copies built with fresh episodes (after a
        #: resume on a rank whose episodes the checkpoint does not hold, or new copies).
        self.changes_log: list[Any] = []
        #: Whether the copies are a turn-based game (self-play snapshots join their pools).
        self.turn_based = False
        #: What a time limit means for the copies (``env.time_limit``, ``auto`` resolved by
        #: where they come from: PettingZoo or Gymnasium), known once they are built.
        self.time_limit = TimeLimit("bootstrap")
        self.share_obs_stats()

    @property
    def config(self) -> TrainConfig:
        return self.context.config

    @property
    def num_envs(self) -> int:
        """The copies this rank steps."""
        return copies_per_rank(self.config)

    def share_obs_stats(self) -> None:
        """Share observation statistics with the context's ranks from their current values on
        (every rank must call this from the same statistics: rank 0 before it forks the others)."""
        collectives = self.context.collectives
        shared = collectives.size > 1 and self.policy.obs_norm.enabled
        self._obs_sync = _SharedObsStats(self.policy.obs_norm, collectives) if shared else None

    # ----------------------------------------------------------------------------- environments

    def start(self, iteration: int, num_timesteps: int) -> None:
        """Build the environment copies if needed: fresh episodes, or, after :meth:`load_state`,
        each copy's current episode rebuilt by replaying its actions.

        Rank ``r`` of ``size`` owns the ``n`` copies after the other ranks' copies, and copies
        built after ``iteration`` iterations (settings changed mid-run) take seeds no earlier
        copy used: copy ``i`` resets first with ``seed + (iteration * size + r) * n + i``.
        """
        n = self.num_envs
        if self.envs is not None and self.envs.num_envs != n:
            # env.num_envs or run.processes changed between training calls: new copies, new episodes
            if self.episodes is not None:
                self.changes_log = list(self.episodes.changes)
            self.close()
            self.episodes, self.reward_returns, self.memory = None, None, None
        if self.envs is not None:
            return
        cfg = self.config
        try:
            self.envs = make_vec_env(cfg.env.model_copy(update={"num_envs": n}))
        except (ConfigError, ObservationError):
            raise
        except Exception as exc:
            raise EnvironmentFailed(describe(exc, cfg.env.id, "while being built")) from exc
        try:
            layout = self.envs.get_attr("agent_layout")[0]  # several agents: the policy sees rows
            require_fits(cfg.env.id, self.policy, self.envs if layout is None else layout)
            self.agents = None if layout is None else layout.num_agents
            if self.agents is not None and self.policy.recurrent:
                raise ConfigError("recurrent policies (policy.recurrent) do not support several agents yet")
        except ValueError:
            self.close()
            raise
        self.time_limit = resolve_time_limit(cfg.env.time_limit, getattr(self.envs, "metadata", None))
        try:  # a turn-based game's copies get the selfplay settings (algo/selfplay.py)
            self.turn_based = configure_copies(self.envs, cfg, self.policy)
        except ConfigError:
            self.close()
            raise
        if cfg.run.info_keywords:
            self.envs.set_attr("info_keywords", [tuple(cfg.run.info_keywords)] * n)
        if self.keep_final_info:
            self.envs.set_attr("keep_final_info", True)
        try:
            if self.episodes is None:
                rank, size = self.context.collectives.rank, self.context.collectives.size
                first_seed = cfg.run.seed + rank * n + iteration * n * size
                self.episodes = self._new_tracker(first_seed)
                for change in self.changes_log:  # the copies as changed so far, before their first reset
                    self.envs.call("apply_change", change)
                self.episodes.changes = list(self.changes_log)
                obs, _ = self.envs.reset(seed=first_seed)
            else:
                obs = self._replay_episodes()
            self.next_masks = self._current_masks()
            if self.agents is not None:
                self.next_valid = np.concatenate(self.envs.get_attr("active_agents"))
                obs = to_rows(obs, self.agents)
        except (ObservationError, ActionMaskError):
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise EnvironmentFailed(describe(exc, cfg.env.id, "in reset()")) from exc
        raw = self._obs_tensor(obs, num_timesteps)
        rows = n * (self.agents or 1)  # several agents: a row per agent of every copy
        if self.reward_returns is None:
            self.reward_returns = torch.zeros(rows, device=self.policy.device)
            live = raw if self.next_valid is None else raw[torch.from_numpy(self.next_valid).to(raw.device)]
            self._add_obs_stats(live)
        if self.policy.recurrent and self.memory is None:  # new episodes (else: restored with them)
            self.memory = self.policy.initial_memory(n)
        self.next_obs = self.policy.obs_norm(raw)
        self.rollout = RolloutBuffer(
            cfg.ppo.n_steps,
            rows,
            self.policy.flattener.flat_dim,
            self.policy.head.storage_dim,
            self.policy.device,
            mask_dim=0 if self.next_masks is None else self.next_masks.shape[1],
            state_dim=self.policy.state_size,
            sequence_length=cfg.ppo.sequence_length if self.policy.recurrent else 1,
            image_ranges=self.policy.flattener.image_ranges(),
            agent_rows=self.agents is not None,
        )

    def apply_env_changes(self, changes: list[Any]) -> None:
        """Make ``changes`` (:data:`~ppo_envkit.environments.episodes.EnvChange`) to every copy
        now, between two rollouts; the episodes remember where, so that a resumed run replays
        them at the same steps."""
        assert self.envs is not None and self.episodes is not None
        for change in changes:
            try:
                self.envs.call("apply_change", change)
            except (AttributeError, TypeError, ValueError):
                raise
            except Exception as exc:
                raise EnvironmentFailed(
                    describe(
                        exc, self.config.env.id, f"in {change[0]} {change[1]!r} (a change while training)"
                    )
                ) from exc
            self.episodes.note_change(change)
        if self.turn_based:  # snapshots that left every copy's pool: the checkpoint stays bounded
            self.episodes.prune_changes(ADD_SNAPSHOT, self.config.selfplay.pool_size)

    def watch_episode_infos(self, keep: bool) -> None:
        """Keep (or stop keeping) each ended episode's last info, for ``on_episode_end``."""
        if keep != self.keep_final_info:
            self.keep_final_info = keep
            if self.envs is not None:
                self.envs.set_attr("keep_final_info", keep)

    def _current_masks(self) -> torch.Tensor | None:
        """The action masks of the copies' current observations (after a reset or a replay),
        or None when the environment gives none (or ``env.action_masks`` is off)."""
        assert self.envs is not None
        if self.config.env.action_masks == "off":
            return None
        masks = list(self.envs.get_attr("current_action_mask"))
        if all(m is None for m in masks):
            return None
        if any(m is None for m in masks):
            raise ActionMaskError(f"environment {self.config.env.id} gave action masks to some copies only")
        # (masks of an action space that cannot be masked were refused by the ActionMasks wrapper)
        stacked = np.stack(masks)
        if self.agents is not None:  # [n, A * k] (one flat mask per copy) as a row per agent
            stacked = stacked.reshape(len(masks) * self.agents, -1)
        return torch.from_numpy(stacked).to(self.policy.device)

    def _new_tracker(self, first_seed: int) -> EpisodeTracker:
        head = self.policy.head
        sample = head.history_rows(head.to_env(torch.zeros((1, head.storage_dim), device=self.policy.device)))
        shape = sample.shape[1:]
        if self.agents is not None:  # several agents: each copy's actions are [A, ...]
            shape = (self.agents, *shape)
        return EpisodeTracker(
            self.num_envs,
            first_seed,
            shape,
            sample.dtype,
            self.config.run.log_window,
            replay=self.config.env.seed_every_episode,
        )

    def _replay_episodes(self) -> Any:
        assert self.envs is not None and self.episodes is not None
        self.envs.set_attr("pending_replay", self.episodes.replay_plan())
        return self._stack_obs(list(self.envs.call("replay_pending")))

    def store_decision(
        self,
        buf: RolloutBuffer,
        t: int,
        decision: tuple[Any, Any, Any, Any],
        masks: Any,
        info: Any,
        step: int,
    ) -> Any:
        """Store step ``t``'s ``(observation, action, log-prob, value)`` and the mask it was taken
        under, in the single- and the several-agent loop alike; returns the next step's masks
        (read from ``info``; None without masks)."""
        obs, action, logp, value = decision
        buf.store_obs(t, obs)
        buf.actions[t] = action
        if masks is not None:
            buf.masks[t] = masks
            masks = self._step_masks(info, step)
        buf.logprobs[t] = logp
        buf.values[t] = value
        return masks

    def _stack_obs(self, items: list[Any]) -> Any:
        space = self.policy.observation_space
        if self.agents is not None:  # several agents: the copies' [A, ...] stacks
            space = self.envs.single_observation_space
        return concatenate(space, items, create_empty_array(space, len(items)))

    def _stack_agent_obs(self, items: list[Any]) -> Any:
        """Observations of single agents (rows) as one batch."""
        space = self.policy.observation_space
        return concatenate(space, items, create_empty_array(space, len(items)))

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None

    # ----------------------------------------------------------------------------- collecting

    def _obs_tensor(self, obs: Any, obs_step: int) -> torch.Tensor:
        """Flat float32 observations on the device; non-finite ones are refused (checked in numpy,
        which costs a fraction of the torch check on a small batch)."""
        flat = self.policy.flattener(obs)
        if not np.isfinite(flat).all():
            raise NonFiniteError(
                f"environment {self.config.env.id} returned a non-finite observation at training step "
                f"{obs_step:,} ({self._copies(~np.isfinite(flat).all(1))})"
            )
        return torch.from_numpy(np.ascontiguousarray(flat)).to(self.policy.device)

    def _copies(self, mask: np.ndarray) -> str:
        """``environment copies 8-15 of 16`` for this rank's ``mask``, numbered across all ranks."""
        collectives = self.context.collectives
        first = collectives.rank * self.num_envs
        index = (first + np.flatnonzero(mask)).tolist()
        total = self.num_envs * collectives.size
        if len(index) > 1 and index == list(range(index[0], index[-1] + 1)):
            named = f"{index[0]}-{index[-1]}"
        else:
            named = ", ".join(map(str, index[:10])) + (", ..." if len(index) > 10 else "")
        copy = "copy" if len(index) == 1 else "copies"
        return f"environment {copy} {named} of {total}"

    def _add_obs_stats(self, raw: torch.Tensor) -> None:
        """Add observations to the normalization statistics (and to this rank's rows to share)."""
        norm = self.policy.obs_norm
        if norm.enabled:
            norm.update(raw)
            if self._obs_sync is not None:
                self._obs_sync.add(raw)

    def collect(self, num_timesteps: int) -> RolloutBuffer:
        """One rollout of ``ppo.n_steps`` steps per copy; ``num_timesteps`` (before it) names
        training steps in error messages. Call :meth:`start` first."""
        with self.policy.acting_with_fixed_weights():  # (no gradients; the CNN's training dtype)
            return self._collect(num_timesteps)

    def _collect(self, num_timesteps: int) -> RolloutBuffer:
        if self.agents is not None:  # several agents: rows of one shared policy
            return collect_rows(self, num_timesteps)
        policy, envs, buf, episodes = self.policy, self.envs, self.rollout, self.episodes
        assert envs is not None and buf is not None and episodes is not None and self.next_obs is not None
        head, gen = policy.head, self.context.generator
        n = self.num_envs
        obs, masks, memory = self.next_obs, self.next_masks, self.memory
        buf.truncated.zero_()
        ended: list[tuple[int, int, int, float, int]] = []  # step, copy, episode index, return, length
        backend = self.context.backend()  # the numpy fast path where it serves, else the policy's modules
        if memory is None and masks is None and len(getattr(envs, "parts", ())) == 2:
            return collect_pipelined(self, backend, num_timesteps)  # (the ALE's vector, in halves)
        for t in range(buf.n_steps):
            if memory is not None:  # the state before this step, and whether it starts an episode
                buf.states[t] = memory.state
                buf.starts[t] = memory.starts
            action, logp, value = backend.act(obs, gen, masks, memory)  # (memory moves on by this step)
            env_action = head.to_env(action)
            step = num_timesteps + (t + 1) * n * self.context.collectives.size  # all ranks' copies
            result = self.step_envs(env_action, step)
            raw = self._obs_tensor(result[0], step)
            self._add_obs_stats(raw)
            masks = self.store_step(t, (obs, action, logp, value), env_action, result, masks, step, ended)
            obs = policy.obs_norm(raw)
        self.next_masks = masks
        self.finish_rollout(raw, ended)
        return buf

    def store_step(
        self,
        t: int,
        decision: tuple[Any, Any, Any, Any],
        env_action: Any,
        result: tuple[Any, ...],
        masks: torch.Tensor | None,
        step: int,
        ended: list[tuple[int, int, int, float, int]],
    ) -> torch.Tensor | None:
        """Store step ``t`` of every copy: the ``decision`` ``(normalized obs, action, log-prob,
        value)`` it was taken with, the environment's ``result`` ``(next obs, reward, terminated,
        truncated, info)``, and V(final observation) where an episode was cut; record it in the
        episodes (``ended`` collects those that ended). Returns the next step's masks."""
        policy, buf, memory, device = self.policy, self.rollout, self.memory, self.policy.device
        assert buf is not None
        _, reward, terminated, truncated, info = result
        done = terminated | truncated
        self.record_step(self.policy.head.history_rows(env_action), reward, done, step, ended)
        if self.time_limit.ends_task:  # env.time_limit (resolved): a time limit ends the task, no bootstrap
            terminated = done
        reward_t = torch.from_numpy(reward.astype(np.float32, copy=False)).to(device)
        done_t = torch.from_numpy(done).to(device)
        masks = self.store_decision(buf, t, decision, masks, info, step)
        gather_returns = self.context.collectives.gather_rows
        buf.rewards[t] = policy.reward_scaler(reward_t, self.reward_returns, done_t, gather_returns)
        buf.terminated[t] = torch.from_numpy(terminated).to(device)
        buf.episode_end[t] = done_t
        cut = truncated & ~terminated
        if cut.any():
            idx = np.flatnonzero(cut)
            final_t = self._obs_tensor(self._stack_obs([info["final_obs"][i] for i in idx]), step)
            idx_t = torch.from_numpy(idx).to(device)
            buf.truncated[t, idx_t] = True
            # V(final observation), from the memory that has seen the episode up to it
            final_memory = None if memory is None else memory.select(idx_t)
            buf.truncated_values[t, idx_t] = policy.value(policy.obs_norm(final_t), final_memory)
        if memory is not None:  # copies whose episode ended start a new one: reset before it
            memory.starts = done_t
        return masks

    def finish_rollout(self, raw: torch.Tensor, ended: list[tuple[int, int, int, float, int]]) -> None:
        """After a rollout's last step (``raw``: the observations it ended on, not normalized):
        share observation statistics, keep where the next rollout starts, the last values, and
        the episodes that ended."""
        policy, buf = self.policy, self.rollout
        assert buf is not None
        if self._obs_sync is not None:  # the next rollout starts with the shared statistics
            self._obs_sync.merge()
        obs = policy.obs_norm(raw)
        self.next_obs = obs
        buf.last_values.copy_(policy.value(obs, self.memory))
        self._finish_episodes(ended, self.context.collectives.rank * self.num_envs)

    def _finish_episodes(self, ended: list[tuple[int, int, int, float, int]], first_copy: int) -> None:
        """Pair the episodes that ended in this rollout with what their copies kept of them
        (their metrics, their last info), in step order; add the metrics to the window."""
        assert self.envs is not None and self.episodes is not None
        kept: dict[tuple[int, int], tuple[dict[str, float], dict[str, Any] | None]] = {}
        for i, finished in enumerate(self.envs.call("take_finished")):
            for episode, values, info in finished:
                kept[(i, episode)] = (values, info)
        self.ended = []
        for step, i, episode, ret, length in ended:
            values, info = kept.get((i, episode), ({}, None))
            if values:
                self.episodes.add_metrics(values)
            self.ended.append((step, first_copy + i, ret, length, values, info))

    def record_step(
        self,
        history: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        step: int,
        ended: list[tuple[int, int, int, float, int]],
    ) -> None:
        """Record one vector step of the copies in their episodes (``history``: the actions as
        the episodes keep them); append ``(step, copy, episode, return, length)`` of each episode
        that ended to ``ended``; refuse a non-finite reward."""
        assert self.episodes is not None
        episodes = self.episodes
        if done.any():
            idx = np.flatnonzero(done)
            numbers = episodes.episodes[idx].tolist()
            finished = episodes.record(history, reward, done)
            for i, k, (ret, length) in zip(idx.tolist(), numbers, finished, strict=True):
                ended.append((step, i, k, ret, length))
        else:
            episodes.record(history, reward, done)
        if not np.isfinite(reward).all():
            raise NonFiniteError(
                f"environment {self.config.env.id} returned a non-finite reward at training step "
                f"{step:,} ({self._copies(~np.isfinite(reward))})"
            )

    def step_envs(self, env_action: Any, step: int) -> tuple[Any, ...]:
        """``envs.step(env_action)``; a failure of the environment's code becomes one error that
        names the environment and training ``step``."""
        assert self.envs is not None
        return self.env_call(step, self.envs.step, env_action)

    def env_call(self, step: int, call: Any, *args: Any) -> Any:
        """``call(*args)`` on the copies (a step, or half of one); a failure of the environment's
        code becomes one error that names the environment and training ``step``."""
        try:
            return call(*args)
        except ObservationError:
            raise
        except ActionMaskError as exc:
            raise self._mask_error(exc, step) from None
        except Exception as exc:
            raise EnvironmentFailed(
                describe(exc, self.config.env.id, f"in step() at training step {step:,}")
            ) from exc

    def _mask_error(self, exc: ActionMaskError, step: int) -> ActionMaskError:
        """``exc`` (from the masks wrapper or the vector info), naming the environment and step."""
        return ActionMaskError(f"environment {self.config.env.id} at training step {step:,}: {exc}")

    def _step_masks(self, info: dict[str, Any], step: int) -> torch.Tensor:
        """The masks of the observations a step returned (a copy whose episode ended: its reset's)."""
        size = (self.policy.head.mask_size or 0) * (self.agents or 1)  # several agents: [A * k] per copy
        try:
            masks = vector_masks(info, self.num_envs, size)
            if masks is not None and self.agents is not None:
                masks = masks.reshape(self.num_envs * self.agents, -1)
        except ActionMaskError as exc:
            raise self._mask_error(exc, step) from None
        if masks is None:
            raise ActionMaskError(
                f"environment {self.config.env.id} gave no action mask at training step {step:,}, "
                "but did before; give one with every reset and step"
            )
        return torch.from_numpy(masks).to(self.policy.device)

    def episode_metrics(self) -> dict[str, float]:
        """Recent episode return and length, and finished episodes, over every rank's copies."""
        assert self.episodes is not None
        episodes = self.episodes
        local = [episodes.finished, len(episodes.recent_returns)]
        local += [float(np.sum(episodes.recent_returns)), float(np.sum(episodes.recent_lengths))]
        finished, count, returns, lengths = self.context.collectives.sum(
            torch.tensor(local, dtype=torch.float64)
        ).tolist()
        metrics = {
            "episode_return": returns / count if count else float("nan"),
            "episode_length": lengths / count if count else float("nan"),
            "episodes": int(finished),
        }
        metrics.update(self._env_metrics())
        return metrics

    def _env_metrics(self) -> dict[str, float]:
        """The environment's own per-episode metrics (``info["metrics"]``, ``run.info_keywords``),
        averaged over each key's recent episodes, as ``metrics/KEY``. Over every rank when all
        ranks have seen the same keys (one collective checks that); else this rank's own."""
        assert self.episodes is not None
        recent = self.episodes.recent_metrics
        keys = tuple(sorted(recent))
        local = [v for key in keys for v in (float(np.sum(recent[key])), float(len(recent[key])))]
        collectives = self.context.collectives
        if collectives.size > 1:
            if self._metric_keys_hash[0] != keys:
                self._metric_keys_hash = (keys, zlib.crc32("\0".join(keys).encode()))
            code = float(self._metric_keys_hash[1])
            agreed = collectives.all_reduce(torch.tensor([code, -code], dtype=torch.float64), "max")
            if keys and float(agreed[0]) == -float(agreed[1]):
                local = collectives.sum(torch.tensor(local, dtype=torch.float64)).tolist()
        return {
            f"metrics/{key}": local[2 * k] / local[2 * k + 1] if local[2 * k + 1] else float("nan")
            for k, key in enumerate(keys)
        }

    # ----------------------------------------------------------------------------- state

    def state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """This rank's episodes and reward-scaling returns, for a checkpoint."""
        assert self.episodes is not None and self.reward_returns is not None
        meta, arrays = self.episodes.state()
        tensors = {f"episodes.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        tensors["reward_returns"] = self.reward_returns.clone()
        if self.memory is not None:
            tensors["memory.state"] = self.memory.state.clone()
            tensors["memory.starts"] = self.memory.starts.clone()
        return meta, tensors

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`; the copies are rebuilt by replay at the next :meth:`start`."""
        self.close()
        self.reward_returns = tensors["reward_returns"].to(self.policy.device).clone()
        self.memory = None
        if "memory.state" in tensors:
            device = self.policy.device
            self.memory = Memory(
                tensors["memory.state"].to(device).clone(), tensors["memory.starts"].to(device).clone()
            )
        arrays = {
            k.removeprefix("episodes."): v.numpy() for k, v in tensors.items() if k.startswith("episodes.")
        }
        if self.episodes is None:
            self.episodes = self._new_tracker(self.config.run.seed)
        self.episodes.load_state(meta, arrays)


class _SharedObsStats:
    """Observation statistics kept identical across ranks with one collective per rollout.

    Each rank adds its own rows at once (and remembers them); at the end of a rollout every
    rank merges the statistics shared at the last merge with every rank's new rows, in rank
    order, which gives the statistics of all rows, the same on every rank. (Merging per
    environment step instead would make the ranks wait for each other at every step.)
    """

    def __init__(self, norm: ObsNormalizer, collectives: Collectives):
        self.norm, self.collectives = norm, collectives
        self.restart()

    def restart(self) -> None:
        """Share the current statistics; no rows pending. Every rank must start from the same
        statistics (rank 0 calls this before it forks the others)."""
        rms = self.norm.rms
        self.base = rms.moments().clone()
        self.pending = RunningMeanStd(tuple(rms.mean.shape), epsilon=0.0).to(rms.mean.device)

    def add(self, raw: torch.Tensor) -> None:
        self.pending.update(raw)

    def merge(self) -> None:
        parts = self.collectives.gather_rows(self.pending.moments()[None])
        self.norm.rms.set_merged(self.base, parts)
        self.norm.refresh()
        self.restart()


__all__ = ["Collector"]
