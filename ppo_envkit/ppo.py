"""The ``PPO`` agent: collect a rollout, compute GAE, update, repeat; save and load.

One training iteration, top to bottom:

1. :meth:`PPO._collect` steps ``num_envs`` environment copies ``n_steps`` times
   with the current policy, storing normalized observations, the stored form of
   actions, log-probabilities and values (detached, at collection time), scaled
   rewards, and V(final observation) wherever an episode was truncated.
2. :meth:`RolloutBuffer.finish` computes GAE (no bootstrap past termination,
   bootstrap from the final observation past truncation).
3. :meth:`PPO._update` runs ``n_epochs`` passes of shuffled minibatches over the
   clipped surrogate objective with an entropy bonus and a value loss.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector.utils import concatenate, create_empty_array

from . import checkpoint as ckpt
from . import distributed, fastgrad
from .config import TrainConfig
from .episodes import EpisodeTracker
from .localgroup import LocalGroup, RankFailed
from .normalize import RunningMeanStd
from .policy import ActorCritic
from .registry import env_info, make_env, make_vec_env, modules_providing
from .rollout import RolloutBuffer, loss_advantages
from .spaces import describe_space, space_from_data, space_to_data, spaces_match

METRICS = (
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "clip_fraction",
    "loss",
)


class NonFiniteError(RuntimeError):
    """An observation, reward or loss was NaN or infinite."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; a checkpoint was saved first (``checkpoint`` attribute)."""

    def __init__(self, checkpoint: Path | None):
        super().__init__(f"training interrupted; checkpoint saved to {checkpoint}")
        self.checkpoint = checkpoint


def resolve_device(name: str) -> torch.device:
    """The torch device for ``run.device``; under torchrun each rank takes its own GPU if there are enough."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device=cuda but no CUDA device is available; use cpu or auto")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device(name)


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    var = target.var()
    return float("nan") if var == 0 else float(1.0 - (target - pred).var() / var)


class PPO:
    """Proximal Policy Optimization with a head chosen from the action space.

    ``PPO("LunarLander-v3", config=TrainConfig(...))`` or ``PPO.from_preset("lunarlander")``;
    then :meth:`learn`, :meth:`predict`, :meth:`save`, :meth:`load`.
    """

    def __init__(
        self,
        env: str | None = None,
        config: TrainConfig | None = None,
        *,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        device: str | None = None,
    ):
        config = config if config is not None else TrainConfig()
        if env is not None and env != config.env.id:
            config = config.with_overrides({"env.id": env})
        if device is not None:
            config = config.with_overrides({"run.device": device})
        self.config = config
        self.device = resolve_device(config.run.device)
        if config.run.torch_threads:
            torch.set_num_threads(config.run.torch_threads)
        if observation_space is None or action_space is None:
            probe = make_env(config.env.id, config.env.kwargs, max_episode_steps=config.env.max_episode_steps)
            observation_space, action_space = probe.observation_space, probe.action_space
            probe.close()
        self.observation_space = observation_space
        self.action_space = action_space
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.run.seed)
            self.policy = ActorCritic(
                observation_space, action_space, config.policy, config.env, config.ppo.gamma
            )
        self.policy.to(self.device)
        # fused: one kernel for every parameter (a third of a small-network step otherwise)
        self.optimizer = torch.optim.Adam(
            self.policy.parameters(), lr=config.ppo.learning_rate, eps=config.ppo.adam_eps, fused=True
        )
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.run.seed)
        self.num_timesteps = 0
        self.iteration = 0
        self.target_timesteps = config.run.total_timesteps
        self.metadata: dict[str, Any] = {}
        self.last_metrics: dict[str, float] = {}
        self.envs = None
        self.tracker: EpisodeTracker | None = None
        self._obs: torch.Tensor | None = None
        self._returns: torch.Tensor | None = None
        self._buffer: RolloutBuffer | None = None
        self._captured: dict[str, Any] | None = None
        # ranks > 1: statistics shared at the last merge, and this rank's rows since then
        self._obs_base: torch.Tensor | None = None
        self._obs_pending: RunningMeanStd | None = None
        self.rank, self.world_size = 0, 1
        # run.processes > 1: the forked ranks, kept between training calls, and the settings they know
        self._helpers: LocalGroup | None = None
        self._helpers_config: dict[str, Any] | None = None
        self._helpers_finalizer: weakref.finalize | None = None
        self.path: Path | None = None  # where load() found the agent
        self._stored_action_names: list[str] | None = None

    # ----------------------------------------------------------------------------- creation

    @classmethod
    def from_preset(
        cls,
        name: str,
        env: str | None = None,
        overrides: dict[str, Any] | list[str] | None = None,
        **kwargs: Any,
    ) -> PPO:
        """An agent configured by a preset from ``agents/`` (``cartpole``, ``lunarlander``, ...)."""
        from .presets import load_preset

        config = load_preset(name)
        if overrides:
            config = config.with_overrides(overrides)
        return cls(env, config=config, **kwargs)

    # ----------------------------------------------------------------------------- acting

    @torch.inference_mode()
    def predict(self, obs: Any, deterministic: bool = True) -> np.ndarray:
        """Action(s) for raw environment observation(s), in the environment's format.

        A single observation gives a single action; a batch gives a batch.
        """
        batched = self.policy.flattener.is_batched(obs)
        x = self.policy.obs_norm(self.policy.obs_to_tensor(obs, batched=batched))
        action, _, _, _ = self.policy.act(x, deterministic=deterministic, generator=self.generator)
        env_action = self.policy.head.to_env(action)
        return env_action if batched else env_action[0]

    @torch.inference_mode()
    def policy_step(self, obs: Any, deterministic: bool = True) -> dict[str, Any]:
        """One single-observation decision with what the policy thinks (for viewers)."""
        x = self.policy.obs_norm(self.policy.obs_to_tensor(obs, batched=False))
        action, logp, value, params = self.policy.act(
            x, deterministic=deterministic, generator=self.generator
        )
        return {
            "action": self.policy.head.to_env(action)[0],
            "raw_action": action[0].cpu().numpy(),
            "log_prob": float(logp[0]),
            "value": float(value[0]),
            **{k: v[0] for k, v in self.policy.head.describe(params).items()},
        }

    # ----------------------------------------------------------------------------- training

    def learn(
        self,
        total_timesteps: int | None = None,
        *,
        callback: Callable[[PPO, dict[str, float]], bool | None] | None = None,
        logger: Any = None,
    ) -> PPO:
        """Train for ``total_timesteps`` more environment steps (default: ``run.total_timesteps``).

        ``callback(agent, metrics)`` runs after every iteration; returning False stops.
        ``logger`` (a :class:`~ppo_envkit.logging.RunLogger`) writes progress and checkpoints.
        """
        steps = self.config.run.total_timesteps if total_timesteps is None else int(total_timesteps)
        if steps < 1:
            raise ValueError("total_timesteps must be >= 1")
        self.target_timesteps = self.num_timesteps + steps
        return self.train(callback=callback, logger=logger)

    def train(self, callback: Callable[..., Any] | None = None, logger: Any = None) -> PPO:
        """Train until ``target_timesteps`` (set by :meth:`learn`, or restored by :meth:`resume`).

        Setting ``target_timesteps`` to a planned run length and stopping early from
        ``callback`` trains a run in pieces; the learning-rate schedule follows the plan.
        """
        try:
            processes = self._local_processes
            if processes == 1:
                self._end_one_process_group()
                self._setup_distributed()
                self._train_here(callback, logger)
            else:
                if self.device.type != "cpu":
                    raise ValueError(
                        f"run.processes={processes} trains on the CPU: forked processes cannot share "
                        f"a {self.device.type} context; set run.processes=1, or use torchrun for GPUs"
                    )
                self._train_with_helpers(processes, callback, logger)
        finally:
            if logger is not None:
                logger.close()
        return self

    def _train_with_helpers(self, processes: int, callback: Callable[..., Any] | None, logger: Any) -> None:
        """Rank 0 of ``run.processes``. The other ranks are forked by the first call and wait
        between calls, so that a run trained in pieces goes on exactly as one call would (their
        environments keep their episodes and random streams). They end with :meth:`close`, with
        this object, with a change of settings, or when training raises."""
        settings = self.config.model_dump()  # includes run.processes
        if self._helpers is not None and (self._helpers_config != settings or not self._helpers.alive):
            self._end_helpers()
        fresh = self._helpers is None
        if fresh:
            self._helpers, self._helpers_config = LocalGroup(processes, self._collective_bytes()), settings
            self._helpers_finalizer = weakref.finalize(self, _end_helper_ranks, self._helpers)
            self.rank, self.world_size = 0, processes
            self.metadata["distributed"] = {"world_size": processes}
        group = self._helpers
        try:
            with distributed.using(group):
                if fresh:
                    group.spawn(lambda rank: self._train_as_helper(rank, group))
                else:
                    self._share_trainer_state(group, _TRAIN)
                self._train_here(callback, logger)
        except BaseException:
            self._end_helpers(failed=True)
            raise

    def helpers_peak_rss_mb(self) -> float:
        """Peak resident memory of the other ``run.processes`` ranks while they run (0 otherwise)."""
        return self._helpers.peak_rss_mb() if self._helpers is not None else 0.0

    def _share_trainer_state(self, group: LocalGroup, command: int) -> bool:
        """Rank 0's ``command`` and, to train, its counters, weights, statistics and optimizer
        state, on every rank (called by every rank; what the other ranks pass is ignored).
        Normally identical already; this keeps the ranks in step if the user changed them."""
        command, self.num_timesteps, self.iteration, self.target_timesteps = _broadcast_command(
            group, command, self.num_timesteps, self.iteration, self.target_timesteps
        )
        if command == _TRAIN:
            optimizer_state = [
                value
                for param in self.policy.parameters()
                for _name, value in sorted(self.optimizer.state[param].items())
                if isinstance(value, torch.Tensor)
            ]
            distributed.broadcast_tensors([*self.policy.state_dict().values(), *optimizer_state])
        return command == _TRAIN

    def _end_one_process_group(self) -> None:
        """``run.processes`` went back to 1 between training calls: train on alone."""
        self._end_helpers()
        if self.world_size > 1 and not distributed.launched_by_torchrun():
            self.rank, self.world_size = 0, 1
            self.metadata.pop("distributed", None)

    def _end_helpers(self, failed: bool = False) -> None:
        """End the waiting ranks of ``run.processes`` (stop them at once if training failed)."""
        group, self._helpers, self._helpers_config = self._helpers, None, None
        if self._helpers_finalizer is not None:
            self._helpers_finalizer.detach()
            self._helpers_finalizer = None
        if group is not None:
            _end_helper_ranks(group, failed)

    def _train_here(self, callback: Callable[..., Any] | None, logger: Any) -> None:
        """Environments, logger, then the training loop, in this process (a lone learner, each
        torchrun rank, or rank 0 of ``run.processes``; the other ranks of that run in
        :meth:`_train_as_helper`)."""
        self._ensure_envs()
        if logger is not None:
            logger.start(self)
        self._train_loop(callback, logger)

    @property
    def _local_processes(self) -> int:
        """``run.processes``, or 1 under torchrun (which starts the ranks itself)."""
        return 1 if distributed.launched_by_torchrun() else self.config.run.processes

    @property
    def local_num_envs(self) -> int:
        """Environment copies this process steps (``env.num_envs`` split over ``run.processes``)."""
        return self.config.env.num_envs // self._local_processes

    @property
    def _rank_batch_size(self) -> int:
        """Samples this rank collects per rollout (``world_size`` times this is the batch)."""
        return self.config.ppo.n_steps * self.local_num_envs

    def _numpy_fast_path(self) -> bool:
        """Whether collection and the update use :mod:`fastgrad` (refreshes its parameter views)."""
        return self.config.run.analytic_gradients and fastgrad.supports(self.policy)

    def _collective_bytes(self) -> int:
        """Shared-memory slot size: room for every gradient and statistics row, with margin."""
        n_params = sum(p.numel() for p in self.policy.parameters())
        rows = self.local_num_envs * max(self.policy.flattener.flat_dim, 1)
        return max(1 << 16, 8 * (n_params + 64), 8 * rows) * 2

    def _train_as_helper(self, rank: int, group: LocalGroup) -> None:
        """Rank ``rank`` of ``run.processes`` (in a forked process): train in step with rank 0,
        then wait for rank 0's next training call, until rank 0 ends the group."""
        self._inherited_envs = self.envs  # rank 0's; never used or closed here
        self.envs = None
        self.rank = rank
        self._helpers = self._helpers_finalizer = None  # rank 0's
        self.generator.manual_seed(self.config.run.seed + 7919 * rank + 104729 * self.iteration)
        self.tracker = None
        self._returns = None
        try:
            self._ensure_envs()
            self._train_loop(None, None)
            while self._share_trainer_state(group, _TRAIN):
                self._train_loop(None, None)
        finally:
            self._close_envs()

    def _setup_distributed(self) -> None:
        """Join a torchrun launch (no-op otherwise): same start weights, own seeds per rank."""
        rank, size = distributed.world()
        if size == 1 or self.world_size == size:
            return
        if self.config.minibatch_size % size:
            raise ValueError(
                f"ppo.minibatch_size={self.config.minibatch_size} is the combined minibatch of all "
                f"{size} ranks and must be divisible by the number of ranks"
            )
        self.rank, self.world_size = rank, size
        distributed.broadcast_module(self.policy)
        # Rank r's sampling noise and environments are its own; a resumed run starts fresh episodes.
        self.generator.manual_seed(self.config.run.seed + 7919 * rank + 104729 * self.iteration)
        self.tracker = None
        self._returns = None
        self.metadata["distributed"] = {"world_size": size}

    def _sync_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's rows, or every rank's (normalization statistics stay identical across ranks)."""
        return distributed.gather_rows(rows) if self.world_size > 1 else rows

    def _update_obs_stats(self, raw: torch.Tensor) -> None:
        """Add observations to the normalization statistics: at once for this rank's rows; the
        other ranks' rows arrive at the end of the rollout (:meth:`_sync_obs_stats`)."""
        norm = self.policy.obs_norm
        if norm.enabled:
            norm.update(raw)
            if self.world_size > 1:
                self._obs_pending.update(raw)

    def _start_obs_sync(self) -> None:
        """Remember the statistics every rank shares now; start collecting this rank's new rows."""
        if self.world_size > 1 and self.policy.obs_norm.enabled:
            rms = self.policy.obs_norm.rms
            self._obs_base = rms.moments().clone()
            self._obs_pending = RunningMeanStd(tuple(rms.mean.shape), epsilon=0.0).to(rms.mean.device)

    def _sync_obs_stats(self) -> bool:
        """One collective per rollout: every rank's statistics become the shared base merged with
        every rank's rows since then, in rank order, so that they are identical again and equal
        those of one learner that saw every row. (Merging once per rollout instead of per step
        keeps the ranks from waiting for each other at every environment step; in between, each
        rank normalizes with the shared statistics plus its own new rows.)"""
        if self.world_size == 1 or not self.policy.obs_norm.enabled:
            return False
        parts = distributed.gather_rows(self._obs_pending.moments()[None])
        self.policy.obs_norm.rms.set_merged(self._obs_base, parts)
        self.policy.obs_norm.refresh()
        self._start_obs_sync()
        return True

    def _train_loop(self, callback: Callable[..., Any] | None, logger: Any) -> None:
        batch = self._rank_batch_size * self.world_size
        try:
            while self.num_timesteps < self.target_timesteps:
                self._captured = self._capture()
                start = time.perf_counter()
                self._collect()
                collect_time = time.perf_counter() - start
                metrics = self._update()
                elapsed = time.perf_counter() - start
                self.num_timesteps += batch
                self.iteration += 1
                metrics.update(
                    sps=batch / elapsed,
                    collect_sps=batch / max(collect_time, 1e-9),
                    **self._episode_metrics(),
                )
                self.last_metrics = metrics
                if logger is not None:
                    logger.log_iteration(self, metrics)
                stop = callback is not None and callback(self, metrics) is False
                if self.world_size > 1:  # every rank must stop at the same iteration
                    stop = distributed.rank0_decides(stop)
                if stop:
                    break
        except (NonFiniteError, RankFailed) as exc:
            if isinstance(exc, RankFailed) and exc.kind != NonFiniteError.__name__:
                raise
            saved = self._save_captured(logger)
            where = f"; last good checkpoint: {saved}" if saved else ""
            message = exc.text if isinstance(exc, RankFailed) else str(exc)
            raise NonFiniteError(f"{message}{where}") from None
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._save_captured(logger)) from None
        if self.world_size > 1:
            identical = distributed.weights_identical(self.policy)
            self.metadata["distributed"]["weights_identical_across_ranks"] = identical
            if not identical:
                raise RuntimeError(
                    "ranks ended with different weights: distributed training went out of step"
                )
        if logger is not None:
            logger.finish(self)

    def _episode_metrics(self) -> dict[str, float]:
        """Recent episode return and length, and finished episodes, over every rank's copies."""
        assert self.tracker is not None
        tracker = self.tracker
        if self.world_size == 1:
            return {
                "episode_return": tracker.mean_recent_return,
                "episode_length": tracker.mean_recent_length,
                "episodes": tracker.finished,
            }
        local = [tracker.finished, len(tracker.recent_returns)]
        local += [float(np.sum(tracker.recent_returns)), float(np.sum(tracker.recent_lengths))]
        finished, count, returns, lengths = distributed.sum_across(
            torch.tensor(local, dtype=torch.float64)
        ).tolist()
        return {
            "episode_return": returns / count if count else float("nan"),
            "episode_length": lengths / count if count else float("nan"),
            "episodes": int(finished),
        }

    def _save_captured(self, logger: Any) -> Path | None:
        """Restore and save the state captured at the start of the failed iteration."""
        if self._captured is None:
            return None
        self.policy.load_state_dict(self._captured["policy"])
        meta, tensors = self._captured["trainer"]
        # The environments ran past the captured state: they are rebuilt by replay on the next learn().
        self._close_envs()
        self._load_trainer_state(meta, tensors)
        return logger.save_checkpoint(self) if logger is not None else None

    def _ensure_envs(self) -> None:
        if self.envs is not None and self.envs.num_envs != self.local_num_envs:
            # env.num_envs or run.processes changed between training calls: new copies, new episodes
            self._close_envs()
            self.tracker, self._returns = None, None
        if self.envs is not None:  # keep this rank's rows not yet merged (set-up, then train)
            if self._obs_pending is None:
                self._start_obs_sync()
            return
        self._start_obs_sync()
        cfg = self.config
        n = self.local_num_envs
        self.envs = make_vec_env(cfg.env.model_copy(update={"num_envs": n}))
        if not spaces_match(self.envs.single_observation_space, self.observation_space) or not spaces_match(
            self.envs.single_action_space, self.action_space
        ):
            self._close_envs()
            raise ValueError(self._mismatch_message(cfg.env.id))
        head = self.policy.head
        sample_env_action = head.to_env(torch.zeros((1, head.storage_dim), device=self.device))
        window = cfg.run.log_window
        if self.tracker is None:
            self.tracker = EpisodeTracker(
                n,
                cfg.run.seed + self.rank * n + self.iteration * n * self.world_size,
                sample_env_action.shape[1:],
                sample_env_action.dtype,
                window,
            )
            # rank r owns the copies that follow the other ranks' copies
            obs, _ = self.envs.reset(seed=cfg.run.seed + self.rank * n + self.iteration * n * self.world_size)
        else:  # resuming or reopening: rebuild every copy's current episode by replay
            obs = self._replay_episodes()
        raw = self._obs_tensor(obs, self.num_timesteps)
        if self._returns is None:
            self._returns = torch.zeros(n, device=self.device)
            self._update_obs_stats(raw)
        self._obs = self.policy.obs_norm(raw)
        self._buffer = RolloutBuffer(
            cfg.ppo.n_steps, n, self.policy.flattener.flat_dim, head.storage_dim, self.device
        )

    def _replay_episodes(self) -> Any:
        assert self.envs is not None and self.tracker is not None
        self.envs.set_attr("pending_replay", self.tracker.replay_plan())
        results = self.envs.call("replay_pending")
        space = self.envs.single_observation_space
        return concatenate(space, list(results), create_empty_array(space, len(results)))

    def _obs_tensor(self, obs: Any, obs_step: int) -> torch.Tensor:
        """Flat float32 observations on the device; non-finite ones are refused (checked in numpy,
        which costs a fraction of the torch check on a small batch)."""
        flat = self.policy.flattener(obs)
        if not np.isfinite(flat).all():
            bad = np.flatnonzero(~np.isfinite(flat).all(1)).tolist()
            raise NonFiniteError(
                f"environment {self.config.env.id} returned a non-finite observation at training step "
                f"{obs_step} (environment copies {bad})"
            )
        return torch.from_numpy(np.ascontiguousarray(flat)).to(self.device)

    @torch.inference_mode()
    def _collect(self) -> None:
        policy, envs, buf, tracker = self.policy, self.envs, self._buffer, self.tracker
        assert envs is not None and buf is not None and tracker is not None and self._obs is not None
        head = policy.head
        gen = self.generator
        device = self.device
        n = self.local_num_envs
        obs = self._obs
        buf.truncated.zero_()
        numpy_forward = self._numpy_fast_path()
        for t in range(buf.n_steps):
            if numpy_forward:  # the same computation at a fraction of the per-step overhead
                action, logp, value = fastgrad.act(policy, obs, gen)
            else:
                action, logp, value, _ = policy.act(obs, generator=gen)
            env_action = head.to_env(action)
            next_obs, reward, terminated, truncated, info = envs.step(env_action)
            done = terminated | truncated
            tracker.record(env_action, reward, done)
            step = self.num_timesteps + (t + 1) * n
            if not np.isfinite(reward).all():
                bad = np.flatnonzero(~np.isfinite(reward)).tolist()
                raise NonFiniteError(
                    f"environment {self.config.env.id} returned a non-finite reward at training step {step} "
                    f"(environment copies {bad})"
                )
            raw = self._obs_tensor(next_obs, step)
            self._update_obs_stats(raw)
            reward_t = torch.from_numpy(reward.astype(np.float32, copy=False)).to(device)
            done_t = torch.from_numpy(done).to(device)
            buf.obs[t] = obs
            buf.actions[t] = action
            buf.logprobs[t] = logp
            buf.values[t] = value
            buf.rewards[t] = policy.reward_scaler(reward_t, self._returns, done_t, self._sync_rows)
            buf.terminated[t] = torch.from_numpy(terminated).to(device)
            buf.episode_end[t] = done_t
            cut = truncated & ~terminated
            if cut.any():
                idx = np.flatnonzero(cut)
                final = self._stack_obs([info["final_obs"][i] for i in idx])
                final_t = self._obs_tensor(final, step)
                idx_t = torch.from_numpy(idx).to(device)
                buf.truncated[t, idx_t] = True
                buf.truncated_values[t, idx_t] = policy.value(policy.obs_norm(final_t))
            obs = policy.obs_norm(raw)
        if self._sync_obs_stats():  # the next rollout starts with the shared statistics
            obs = policy.obs_norm(raw)
        self._obs = obs
        self._last_values = policy.value(obs)

    def _stack_obs(self, items: list[Any]) -> Any:
        space = self.observation_space
        return concatenate(space, items, create_empty_array(space, len(items)))

    def _update(self) -> dict[str, float]:
        cfg = self.config.ppo
        buf = self._buffer
        assert buf is not None
        gae = buf.finish(self._last_values, cfg.gamma, cfg.gae_lambda)
        if cfg.anneal_lr:
            frac = max(0.0, 1.0 - self.num_timesteps / max(self.target_timesteps, 1))
            for group in self.optimizer.param_groups:
                group["lr"] = frac * cfg.learning_rate
        policy, optimizer, gen = self.policy, self.optimizer, self.generator
        params = list(policy.parameters())
        batch_size = self._rank_batch_size
        mb_size = self.config.minibatch_size // self.world_size
        normalize = _global_normalizer if self.world_size > 1 else None
        clip, vclip = cfg.clip_coef, cfg.vf_clip_coef or cfg.clip_coef
        history: list[torch.Tensor] = []
        stopped_early = False
        loss_args = {
            "clip": clip,
            "vclip": vclip if cfg.clip_vloss else None,
            "ent_coef": cfg.ent_coef,
            "vf_coef": cfg.vf_coef,
            "norm_adv": cfg.norm_adv,
            "normalize_advantages": normalize,
        }
        analytic = self._numpy_fast_path()
        for _epoch in range(cfg.n_epochs):
            perm = torch.randperm(batch_size, generator=gen, device=self.device)
            for start in range(0, batch_size, mb_size):
                mb = buf.packed.index_select(0, perm[start : start + mb_size])
                if analytic:  # same loss and gradient, without autograd's per-operation cost
                    losses = fastgrad.ppo_gradients(policy, *buf.split(mb), **loss_args)
                else:
                    losses = ppo_losses(policy, *buf.split(mb), generator=gen, **loss_args)
                    optimizer.zero_grad(set_to_none=True)
                    losses[-1].backward()
                if self.world_size > 1:  # every rank gets the same gradient, loss and KL
                    losses = (*losses[:-1], losses[-1].detach())
                    loss_value, kl = distributed.average_gradients(
                        params, torch.stack([losses[-1], losses[3]])
                    )
                    losses = (*losses[:3], kl, losses[4], loss_value)
                if not bool(torch.isfinite(losses[-1])):
                    raise NonFiniteError(
                        f"non-finite loss in update {self.iteration + 1} (after {self.num_timesteps} steps): "
                        + ", ".join(f"{k}={float(v):.4g}" for k, v in zip(METRICS, losses, strict=False))
                    )
                if cfg.target_kl is not None and float(losses[3]) > cfg.target_kl:
                    stopped_early = True  # SB3's rule: this minibatch's step is not taken
                    break
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
                optimizer.step()
                history.append(torch.stack([v.detach() for v in losses]))
            if stopped_early:
                break
        means = torch.stack(history).mean(0).tolist() if history else [float("nan")] * len(METRICS)
        metrics = dict(zip(METRICS, means, strict=False))
        metrics.update(
            explained_variance=explained_variance(buf.values.reshape(-1), gae["returns"].reshape(-1)),
            learning_rate=self.optimizer.param_groups[0]["lr"],
            gradient_steps=len(history),
            stopped_early=float(stopped_early),
        )
        if hasattr(policy.head, "log_std"):
            metrics["action_std"] = float(policy.head.log_std.detach().exp().mean())
        return metrics

    # ----------------------------------------------------------------------------- state

    def _capture(self) -> dict[str, Any]:
        """Everything needed to resume exactly from the start of the coming iteration."""
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "trainer": self._trainer_state(),
        }

    def _trainer_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        assert self.tracker is not None and self._returns is not None
        opt_meta, tensors = ckpt.optimizer_state(self.optimizer)
        tensors = {k: v.detach().clone() for k, v in tensors.items()}
        tensors["rng"] = self.generator.get_state().clone()
        tensors["reward_returns"] = self._returns.clone()
        track_meta, arrays = self.tracker.state()
        tensors.update(
            {f"episodes.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        )
        meta = {
            "num_timesteps": self.num_timesteps,
            "iteration": self.iteration,
            "target_timesteps": self.target_timesteps,
            "optimizer": opt_meta,
            "episodes": track_meta,
        }
        return meta, tensors

    def _load_trainer_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        self.num_timesteps = int(meta["num_timesteps"])
        self.iteration = int(meta["iteration"])
        self.target_timesteps = int(meta["target_timesteps"])
        ckpt.load_optimizer_state(
            self.optimizer, meta["optimizer"], {k: v.to(self.device) for k, v in tensors.items()}
        )
        self.generator.set_state(tensors["rng"])
        self._returns = tensors["reward_returns"].to(self.device).clone()
        arrays = {
            k.removeprefix("episodes."): v.numpy() for k, v in tensors.items() if k.startswith("episodes.")
        }
        if self.tracker is None:
            sample = self.policy.head.to_env(
                torch.zeros((1, self.policy.head.storage_dim), device=self.device)
            )
            self.tracker = EpisodeTracker(
                self.local_num_envs,
                self.config.run.seed,
                sample.shape[1:],
                sample.dtype,
                self.config.run.log_window,
            )
        self.tracker.load_state(meta["episodes"], arrays)

    @property
    def action_names(self) -> list[str] | None:
        """Names of the discrete actions (registered, or stored with the agent), when they fit the space."""
        names = env_info(self.config.env.id).action_names or self._stored_action_names
        if names and isinstance(self.action_space, spaces.Discrete) and len(names) == self.action_space.n:
            return list(names)
        return None

    def agent_metadata(self) -> dict[str, Any]:
        return {
            "env": {
                "id": self.config.env.id,
                "kwargs": self.config.env.kwargs,
                "max_episode_steps": self.config.env.max_episode_steps,
                "modules": modules_providing(self.config.env.id),
                "action_names": self.action_names,
            },
            "observation_space": space_to_data(self.observation_space),
            "action_space": space_to_data(self.action_space),
            "policy": self.config.policy.model_dump(mode="json"),
            "config": self.config.model_dump(mode="json"),
            "num_timesteps": self.num_timesteps,
            **self.metadata,
        }

    def _agent_files(self) -> dict[str, Any]:
        return ckpt.agent_files(self.policy.state_dict(), self.agent_metadata())

    def save(self, path: str | Path) -> Path:
        """Write an agent directory (``model.safetensors`` + ``agent.json``) atomically."""
        return ckpt.atomic_write_dir(Path(path), self._agent_files())

    def save_checkpoint(self, path: str | Path) -> Path:
        """An agent directory plus the trainer state needed to resume exactly."""
        meta, tensors = self._trainer_state()
        return ckpt.save_checkpoint(Path(path), self._agent_files(), meta, tensors)

    @classmethod
    def load(cls, path: str | Path, device: str | None = "cpu", config_overrides: Any = None) -> PPO:
        """Load an agent directory (or a run directory's final agent). Never unpickles."""
        from .config import ConfigError, validate_config

        path = ckpt.resolve_agent_path(path)
        meta, tensors = ckpt.load_agent_dir(path)
        try:
            config = validate_config(meta["config"])
        except ConfigError as exc:
            raise ckpt.AgentFileError(f"{path}: stored config is invalid: {exc}") from None
        if config_overrides:
            config = config.with_overrides(config_overrides)
        # Nothing named by the file is imported: the spaces are stored as data, and the
        # environment (needed only to act in it) comes from the user's own registrations.
        agent = cls(
            config=config,
            observation_space=space_from_data(meta["observation_space"]),
            action_space=space_from_data(meta["action_space"]),
            device=device,
        )
        try:
            agent.policy.load_state_dict(tensors)
        except RuntimeError as exc:
            raise ckpt.AgentFileError(f"{path}: weights do not fit the stored policy config: {exc}") from None
        agent.num_timesteps = int(meta.get("num_timesteps", 0))
        agent.metadata = {k: meta[k] for k in ("provenance", "evaluation") if k in meta}
        agent.path = path
        agent._stored_action_names = meta["env"].get("action_names")
        return agent

    @classmethod
    def resume(cls, checkpoint_dir: str | Path, device: str | None = None) -> PPO:
        """An agent with its optimizer, RNG, counters and environment episodes restored."""
        checkpoint_dir = Path(checkpoint_dir)
        agent = cls.load(checkpoint_dir, device=device)
        meta, tensors = ckpt.load_trainer_state(checkpoint_dir)
        agent._load_trainer_state(meta, tensors)
        return agent

    def check_env_compatible(self, env: Any) -> None:
        """Raise a clear error if ``env``'s spaces differ from the agent's."""
        obs_space = getattr(env, "single_observation_space", None) or env.observation_space
        act_space = getattr(env, "single_action_space", None) or env.action_space
        if not spaces_match(self.observation_space, obs_space) or not spaces_match(
            self.action_space, act_space
        ):
            raise ValueError(self._mismatch_message(self.config.env.id, obs_space, act_space))

    def _mismatch_message(self, env_id: str, obs_space: Any = None, act_space: Any = None) -> str:
        if obs_space is None and self.envs is not None:
            obs_space, act_space = self.envs.single_observation_space, self.envs.single_action_space
        return (
            f"the agent does not fit environment '{env_id}': the agent was trained with observations "
            f"{describe_space(self.observation_space)} and actions {describe_space(self.action_space)}, "
            f"the environment has observations {describe_space(obs_space)} and actions "
            f"{describe_space(act_space)}"
        )

    def close(self) -> None:
        """Close the environments and end the other training processes (``run.processes``)."""
        self._end_helpers()
        self._close_envs()

    def _close_envs(self) -> None:
        if self.envs is not None:
            self.envs.close()
            self.envs = None


_TRAIN, _EXIT = 1, 0  # rank 0's commands to ranks waiting between training calls


def _broadcast_command(
    group: LocalGroup, command: int, num_timesteps: int = 0, iteration: int = 0, target_timesteps: int = 0
) -> list[int]:
    """Rank 0's command and counters on every rank (one collective, the same layout for all)."""
    values = np.array([command, num_timesteps, iteration, target_timesteps], np.int64)
    return [int(v) for v in group.broadcast(values)]


def _end_helper_ranks(group: LocalGroup, failed: bool = False) -> None:
    """Tell the ranks waiting in :meth:`PPO._share_trainer_state` to exit and reap them; stop
    them at once when training failed (they are not waiting then) or they do not answer."""
    if not group.owned_here:
        return  # a copy of the group in some forked process: the ranks are not its to end
    if not failed:
        try:
            _broadcast_command(group, _EXIT)
        except RankFailed:
            failed = True
    group.close(timeout=0.0 if failed else 10.0)


def ppo_losses(
    policy: ActorCritic,
    obs: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor,
    *,
    clip: float,
    vclip: float | None,
    ent_coef: float,
    vf_coef: float,
    norm_adv: bool,
    generator: torch.Generator | None = None,
    normalize_advantages: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, ...]:
    """(policy loss, value loss, entropy, approx-KL, clip fraction, total loss) for one minibatch.

    ``loss = policy_loss - ent_coef * entropy + vf_coef * value_loss``: entropy is a bonus.
    """
    new_logp, entropy, values = policy.evaluate(obs, actions, generator)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    advantages = loss_advantages(advantages, norm_adv, normalize_advantages)
    policy_loss = torch.max(-advantages * ratio, -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)).mean()
    if vclip is None:
        value_loss = 0.5 * (values - returns).square().mean()
    else:
        clipped = old_values + (values - old_values).clamp(-vclip, vclip)
        value_loss = 0.5 * torch.max((values - returns).square(), (clipped - returns).square()).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss - ent_coef * entropy_mean + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1.0) - log_ratio).mean()
        clip_fraction = ((ratio - 1.0).abs() > clip).to(torch.float32).mean()
    return policy_loss, value_loss, entropy_mean, approx_kl, clip_fraction, loss


def _global_normalizer(advantages: torch.Tensor) -> torch.Tensor:
    """Normalize with the mean and std of the combined minibatch of all ranks."""
    moments = torch.stack(
        [advantages.sum(), advantages.square().sum(), advantages.new_tensor(advantages.numel())]
    )
    total, total_sq, count = distributed.sum_across(moments.detach())
    mean = total / count
    std = ((total_sq - count * mean.square()) / (count - 1).clamp_min(1)).clamp_min(0).sqrt()
    return (advantages - mean) / (std + 1e-8)


__all__ = ["PPO", "NonFiniteError", "TrainingInterrupted", "ppo_losses"]
