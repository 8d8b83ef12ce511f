"""``Trainer``: the training loop. One iteration reads top to bottom in :meth:`Trainer._iterate`:

1. ``Collector.collect()`` steps the environment copies ``ppo.n_steps`` times;
2. ``RolloutBuffer.compute_advantages()`` runs GAE;
3. ``Learner.update()`` runs the PPO epochs;
4. counters, metrics, the run logger (progress, CSV, TensorBoard, checkpoints), callbacks.

Around it: the state captured at the start of every iteration, saved as the last good
checkpoint when an iteration fails with a non-finite value or is interrupted with Ctrl-C,
and the checkpoint state itself (:meth:`Trainer.resume_state`, :meth:`Trainer.load_resume_state`).

The trainer owns the :class:`~ppo_envkit.state.TrainingState` while it trains: it is the one
writer of the counters and of what the agent was trained with. It works on a policy, a
generator and settings handed to it (by the ``PPO`` facade), and on a
:class:`~ppo_envkit.parallel.collectives.Collectives` it does not choose: which processes
train together, and how a forked one runs, is :mod:`ppo_envkit.parallel`'s business.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import TrainConfig
from ..environments.lookup import env_info
from ..errors import (
    ActionMaskError,
    EnvironmentFailed,
    NonFiniteError,
    ObservationError,
    RankFailed,
    TrainingInterrupted,
)
from ..io import checkpoint as ckpt
from ..live_settings import settings_change
from ..parallel.collectives import Collectives, RankState
from ..state import TrainingState
from .callbacks import (
    Callback,
    EpisodeEnd,
    EvaluationEnd,
    RolloutEnd,
    TrainingEnd,
    TrainingStart,
    UpdateEnd,
    fire,
    overrides,
    read_only,
)
from .collector import Collector
from .context import RankContext
from .evaluation import EvalSchedule
from .learner import Learner
from .optim import FlatAdam
from .policy import ActorCritic
from .selfplay import SelfPlayMonitor, snapshot_change

#: Called after every iteration with its metrics; returning False stops training.
IterationCallback = Callable[[dict[str, float]], Any]

#: Rank ``r`` (> 0) samples from its own stream: ``seed + RANK_SEED_STRIDE * r +
#: ITERATION_SEED_STRIDE * iteration``. Distinct primes keep (rank, iteration) pairs apart.
RANK_SEED_STRIDE = 7919
ITERATION_SEED_STRIDE = 104729
#: Games from each seat against a random player at each evaluation of a turn-based game.
GAMES_PER_SEAT = 50


class RunOutput(Protocol):
    """Where a training call reports (``io.runlog.RunLogger`` is the implementation)."""

    def start(self, run: Trainer) -> None: ...

    def log_iteration(self, run: Trainer, metrics: dict[str, float]) -> None: ...

    def save_checkpoint(self, run: Trainer) -> Path | None: ...

    def finish(self, run: Trainer) -> None: ...

    def report(self, text: str) -> None: ...


class Trainer:
    """Trains ``policy`` as one rank of ``collectives``: environments, loop, checkpoint state."""

    def __init__(
        self,
        policy: ActorCritic,
        config: TrainConfig,
        generator: torch.Generator,
        state: TrainingState,
        collectives: Collectives,
        optimizer: FlatAdam | None = None,
    ):
        self.policy, self.generator, self.state = policy, generator, state
        config = config.model_copy(deep=True)  # its own: a setting changed in place is seen as changed
        self.context = RankContext(policy, config, generator, collectives)
        self.collector = Collector(self.context)
        self.learner = Learner(self.context, optimizer)
        self._captured: dict[str, Any] | None = None
        #: The events of the current training call (rank 0 only; see :mod:`.callbacks`).
        self.events: Callback | None = None
        #: A callback's state from a loaded checkpoint, for the next training call's callback.
        self.callback_state: dict[str, Any] | None = None
        #: Changes of the training copies asked for (``PPO.env_set``/``env_call``), made at the
        #: start of the next iteration on every rank (rank 0's requests count).
        self.pending_changes: list[list[Any]] = []
        #: Turn-based games: win rates at evaluations, ratings of the snapshots (rank 0).
        self.selfplay = SelfPlayMonitor()
        #: Other ranks' episodes and random streams from a loaded checkpoint, for the forked ranks.
        self.rank_states: dict[int, RankState] = {}
        self._time_limit_reported = False  # env.time_limit=auto's choice, said once
        self.attach(collectives)

    @property
    def config(self) -> TrainConfig:
        return self.context.config

    def _report_time_limit(self, logger: RunOutput) -> None:
        """Say once what ``env.time_limit=auto`` chose where it is not Gymnasium's meaning of a
        time limit (a PettingZoo environment's game length: terminal)."""
        time_limit = self.collector.time_limit
        if time_limit.ends_task and time_limit.reason and not self._time_limit_reported:
            logger.report(f"time limit: {time_limit.value} (auto: {time_limit.reason})")
        self._time_limit_reported = True

    @property
    def collectives(self) -> Collectives:
        return self.context.collectives

    def apply_settings(self, config: TrainConfig) -> list[str]:
        """Train with ``config`` from now on. Only what may change between training calls may
        differ from the current settings (:func:`~ppo_envkit.config.settings_change` says what);
        anything else is a one-line :class:`~ppo_envkit.errors.ConfigError`. Returns the keys
        that changed."""
        changed = settings_change(self.config, config)
        self.context.config = config.model_copy(deep=True)
        return changed

    def attach(self, collectives: Collectives) -> None:
        """Train as one rank of ``collectives`` from now on (a rank other than 0 draws its own
        random stream; observation statistics are shared from their current values)."""
        size, cfg = collectives.size, self.config
        if size > 1 and cfg.minibatch_size % size:
            raise ValueError(
                f"ppo.minibatch_size={cfg.minibatch_size} is the combined minibatch of all "
                f"{size} ranks and must be divisible by the number of ranks"
            )
        self.context.collectives = collectives
        self.collector.share_obs_stats()
        if collectives.rank != 0:
            self.reseed()
        self.state.distributed = {"world_size": size} if size > 1 else None

    def reseed(self) -> None:
        """This rank's own sampling stream, from the seed, its rank and the iteration."""
        rank = self.collectives.rank
        self.generator.manual_seed(
            self.config.run.seed + RANK_SEED_STRIDE * rank + ITERATION_SEED_STRIDE * self.state.iteration
        )

    def prepare(self) -> None:
        """Build the environment copies now (else the first :meth:`train` does)."""
        self.collector.start(self.state.iteration, self.state.num_timesteps)
        if self.collector.next_masks is not None:  # kept in agent.json (the ONNX export reads it)
            self.state.action_masks = True

    # ----------------------------------------------------------------------------- the loop

    def plan(self, target_timesteps: int) -> None:
        """Train to ``target_timesteps`` steps in all (the learning-rate schedule follows the plan)."""
        self.state.target_timesteps = int(target_timesteps)

    def train(
        self,
        callback: IterationCallback | None = None,
        logger: RunOutput | None = None,
        events: Callback | None = None,
    ) -> None:
        """Train until the planned ``target_timesteps``, until ``callback`` returns False or an
        event of ``events`` asks to stop (:mod:`.callbacks`), or until an evaluation reaches
        ``run.stop_at``. Events fire on rank 0 only; rank 0's decision to stop is every rank's."""
        state = self.state
        self.events = events if self.collectives.rank == 0 else None
        events = self.events
        self.collector.watch_episode_infos(overrides(events, "on_episode_end"))
        self.prepare()
        self._post_state()
        evaluation = self._evaluation()
        if logger is not None:
            self._report_time_limit(logger)
            logger.start(self)
        reason = "steps"
        try:
            stop = False
            if events is not None:
                if self.callback_state is not None:  # saved with the checkpoint this run resumed from
                    events.load_state_dict(self.callback_state)
                self.callback_state = None
                start = TrainingStart(
                    state.num_timesteps, state.iteration, state.target_timesteps, self.collectives.size
                )
                stop = fire(events, "on_training_start", start)
            stopped = self.collectives.rank0_decides(stop)
            if stopped:
                reason = "callback"
            while not stopped and state.num_timesteps < state.target_timesteps:
                metrics, stop = self._iterate(events)
                if evaluation is not None:
                    final = state.num_timesteps >= state.target_timesteps
                    evaluated = evaluation.after_iteration(
                        self.policy, self.generator, state.num_timesteps, final, state.action_masks
                    )
                    state.eval_mode = evaluation.mode_record or state.eval_mode
                    metrics.update(evaluated)
                    if evaluated and self.collector.turn_based:  # a game: the win rate vs a random player
                        metrics.update(
                            self.selfplay.evaluation_metrics(self.policy, self.config, GAMES_PER_SEAT)
                        )
                    if evaluated and events is not None and evaluation.last_result is not None:
                        stop = fire(events, "on_evaluation_end", _evaluation_end(state, evaluation)) or stop
                if logger is not None:
                    logger.log_iteration(self, metrics)
                stop = (callback is not None and callback(metrics) is False) or stop
                reached = evaluation is not None and evaluation.reached
                if self.collectives.rank0_decides(stop or reached):  # every rank stops at the same iteration
                    reason = "callback" if stop else "stop_at"
                    break
        except KeyboardInterrupt:
            raise TrainingInterrupted(self.save_captured(logger)) from None
        except (NonFiniteError, EnvironmentFailed, ObservationError, ActionMaskError, RankFailed) as exc:
            saved = self._save_after_failure(logger)
            where = f"; last good checkpoint: {saved}" if saved else ""
            if isinstance(exc, RankFailed):
                if exc.kind == NonFiniteError.__name__:
                    raise NonFiniteError(f"{exc.text}{where}") from exc
                if exc.kind in (
                    EnvironmentFailed.__name__,
                    ObservationError.__name__,
                    ActionMaskError.__name__,
                ):
                    text = f"{exc.text} (in training process {exc.rank}){where}"
                    raise EnvironmentFailed(text, saved) from exc
                raise RankFailed(exc.rank, exc.kind, f"{exc.text}{where}", exc.trace) from None
            if isinstance(exc, NonFiniteError):
                raise NonFiniteError(f"{exc}{where}") from None
            if isinstance(exc, ActionMaskError):
                raise ActionMaskError(f"{exc}{where}") from None
            raise EnvironmentFailed(f"{exc}{where}", saved) from (exc.__cause__ or exc)
        except Exception as exc:  # a bug, most likely: keep its traceback, but lose no work
            saved = self._save_after_failure(logger)
            if saved is not None:
                _note(exc, f"ppo-envkit saved the last good checkpoint: {saved}")
            elif logger is not None:
                _note(exc, "ppo-envkit could not save a checkpoint (see above); the last on disk is intact")
            raise
        finally:
            if evaluation is not None:
                evaluation.close()
        if self.collectives.size > 1:
            identical = self.collectives.weights_identical(self.policy)
            state.distributed = {**(state.distributed or {}), "weights_identical_across_ranks": identical}
            if not identical:
                raise RuntimeError("ranks ended with different weights: training went out of step")
        if events is not None:
            fire(events, "on_training_end", TrainingEnd(*state.counters().values(), reason))
        if logger is not None:
            logger.finish(self)
        self.events = None

    def _evaluation(self) -> EvalSchedule | None:
        """This call's evaluations: rank 0's, when ``run.eval_interval`` is not 0."""
        config = self.config
        if self.collectives.rank != 0 or config.run.eval_interval == 0:
            return None
        threshold = env_info(config.env.id).reward_threshold
        return EvalSchedule(config, threshold, self.state.num_timesteps, self.state.eval_mode)

    def _iterate(self, events: Callback | None = None) -> tuple[dict[str, float], bool]:
        """One iteration: collect, advantages, update; returns the metrics to log, and whether
        an event asked to stop."""
        state, ppo = self.state, self.config.ppo
        self._captured = self.capture()  # (with the changes asked for, to be made on resume)
        self._make_env_changes()
        start = time.perf_counter()
        rollout = self.collector.collect(state.num_timesteps)
        collect_time = time.perf_counter() - start
        rollout.compute_advantages(ppo.gamma, ppo.gae_lambda)
        batch = rollout.size * self.collectives.size
        stop = False
        if events is not None:
            if self.collector.keep_final_info:
                for step, copy, ret, length, _values, info in self.collector.ended:
                    episode = EpisodeEnd(copy, ret, length, read_only(info or {}), step)
                    stop = fire(events, "on_episode_end", episode) or stop
            view = RolloutEnd(rollout, state.num_timesteps + batch, state.iteration + 1)
            stop = fire(events, "on_rollout_end", view) or stop
        progress = state.num_timesteps / max(state.target_timesteps, 1)
        where = f"in update {state.iteration + 1} (after {state.num_timesteps} steps)"
        stats = self.learner.update(rollout, progress, where)
        elapsed = time.perf_counter() - start
        state.num_timesteps += batch
        state.iteration += 1
        metrics = stats.metrics()
        metrics.update(
            sps=batch / elapsed,
            collect_sps=batch / max(collect_time, 1e-9),
            **self.collector.episode_metrics(),
        )
        state.last_metrics = metrics
        if self.collector.turn_based and state.iteration % self.config.selfplay.snapshot_interval == 0:
            kind, name, args = snapshot_change(self.policy, state.iteration)  # (algo/selfplay.py)
            self.request_env_change(kind, name, args)
            if self.collectives.rank == 0:
                seed = self.config.run.seed + state.iteration
                metrics.update(self.selfplay.snapshot_metrics(args[1], args[2], self.config, seed))
        self._post_state()
        if events is not None:
            update = UpdateEnd(state.num_timesteps, state.iteration, read_only(metrics))
            stop = fire(events, "on_update_end", update) or stop
        return metrics, stop

    # ----------------------------------------------------------------------------- curricula

    def request_env_change(self, kind: str, name: str, args: list[Any]) -> None:
        """Change every training copy (``"set"`` an attribute or ``"call"`` a method) at the start
        of the next iteration, on every rank; the change is part of the run's state (checkpoints
        hold every change made, and where each copy's episode was when it came)."""
        change = [kind, str(name), list(args)]
        try:
            change = json.loads(json.dumps(change))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"env_{kind}({name!r}, ...) takes JSON-ready values (numbers, strings, lists, dicts): {exc}"
            ) from None
        self.pending_changes.append(change)

    def _make_env_changes(self) -> None:
        """Make the requested changes (rank 0's, given to every rank) before this iteration."""
        changes, self.pending_changes = self.pending_changes, []
        collectives = self.collectives
        if collectives.size > 1:
            data = json.dumps(changes).encode() if collectives.rank == 0 and changes else b""
            length = torch.tensor([len(data)], dtype=torch.int64)
            collectives.broadcast(length)
            if int(length[0]) == 0:
                return
            buffer = torch.zeros(int(length[0]), dtype=torch.uint8)
            if collectives.rank == 0:
                buffer.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
            collectives.broadcast(buffer)
            changes = json.loads(bytes(buffer.tolist()).decode())
        if changes:
            self.collector.apply_env_changes(changes)

    # ----------------------------------------------------------------------------- files

    def agent_files(self) -> dict[str, Any]:
        """The files of an agent directory of the policy as it is now."""
        policy = self.policy
        return ckpt.agent_files(
            policy.state_dict(), self.config, policy.observation_space, policy.action_space, self.state
        )

    def checkpoint_files(self) -> dict[str, Any]:
        """The files of a checkpoint: an agent directory plus what resuming exactly needs."""
        return ckpt.checkpoint_files(self.agent_files(), *self.resume_state())

    # ----------------------------------------------------------------------------- state

    def resume_state(self, ranks: bool = True) -> RankState:
        """Everything besides the weights needed to resume exactly: counters, optimizer,
        random stream, episodes and reward-scaling returns (``trainer.json`` + tensors); with
        ``ranks``, also the other forked ranks' episodes and streams at this iteration."""
        optimizer_meta, tensors = self.learner.optimizer_state()
        episodes_meta, episode_tensors = self.collector.state()
        tensors = {**tensors, **episode_tensors, "rng": self.generator.get_state().clone()}
        meta = {**self.state.counters(), "optimizer": optimizer_meta, "episodes": episodes_meta}
        callback_state = self._callback_state()
        if callback_state is not None:
            meta["callback"] = callback_state
        if self.selfplay.ratings or self.selfplay.pool:
            meta["selfplay"] = self.selfplay.state_dict()
        if self.pending_changes:  # asked for during the iteration that just ended
            meta["env_changes_pending"] = [list(c) for c in self.pending_changes]
        if ranks:
            meta["ranks"] = {}
            others = {**self.rank_states, **self.collectives.other_states(self.state.iteration)}
            for rank, (rank_meta, rank_tensors) in sorted(others.items()):
                meta["ranks"][str(rank)] = rank_meta
                tensors.update({f"rank{rank}.{name}": value for name, value in rank_tensors.items()})
        return meta, tensors

    def _callback_state(self) -> dict[str, Any] | None:
        """The callback's state for a checkpoint: one loaded and not yet handed to a callback,
        else the training call's callback's (a JSON copy: it cannot change after capture)."""
        if self.callback_state is not None:
            return self.callback_state
        if self.events is None:
            return None
        state = self.events.state_dict()
        return json.loads(json.dumps(state)) if state else None

    def _own_state(self) -> RankState:
        """This rank's episodes and random stream (what another rank's checkpoint holds of it)."""
        episodes_meta, tensors = self.collector.state()
        return {"episodes": episodes_meta}, {**tensors, "rng": self.generator.get_state().clone()}

    def _post_state(self) -> None:
        """A forked rank other than 0 posts its state at this iteration boundary, where rank 0
        can read it for a checkpoint (:meth:`Collectives.post_state`)."""
        if self.collectives.rank != 0:
            self.collectives.post_state(self.state.iteration, self._own_state)

    def load_resume_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`resume_state`. The random stream and episodes in it are rank 0's;
        another rank draws its own stream and starts fresh episodes."""
        self.state.set_counters(meta["num_timesteps"], meta["iteration"], meta["target_timesteps"])
        self.learner.load_optimizer_state(meta["optimizer"], tensors)
        self.callback_state = meta.get("callback")
        self.pending_changes = [list(c) for c in meta.get("env_changes_pending", [])]
        changes = list(meta["episodes"].get("changes", [])) + self.pending_changes
        self.selfplay.load_state_dict(meta.get("selfplay", {}), changes, self.config.selfplay.pool_size)
        # copies built with fresh episodes (another rank's, under torchrun) start as changed so far
        self.collector.changes_log = list(meta["episodes"].get("changes", []))
        if self.collectives.rank == 0:
            self.generator.set_state(tensors["rng"])
            self.collector.load_state(meta["episodes"], tensors)
            self.rank_states = {}
            for rank, rank_meta in (meta.get("ranks") or {}).items():
                prefix = f"rank{rank}."
                own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
                self.rank_states[int(rank)] = (rank_meta, own)
        else:
            self.reseed()

    def capture(self) -> dict[str, Any]:
        """Everything needed to resume exactly from the start of the coming iteration."""
        policy = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        return {"policy": policy, "trainer": self.resume_state(ranks=False)}

    def _save_after_failure(self, logger: RunOutput | None) -> Path | None:
        """:meth:`save_captured`, for a failed iteration; a failure to save is reported, not raised
        over the error that stopped training."""
        try:
            return self.save_captured(logger)
        except Exception as exc:
            if logger is not None:
                logger.report(f"[red]could not save the last good checkpoint[/]: {exc}")
            return None

    def save_captured(self, logger: RunOutput | None) -> Path | None:
        """Restore the state captured at the start of the failed iteration, and save it."""
        if self._captured is None:
            return None
        self.policy.load_state_dict(self._captured["policy"])
        # The environments ran past the captured state: load_resume_state closes them, and the
        # next training call rebuilds them by replay.
        self.load_resume_state(*self._captured["trainer"])
        return logger.save_checkpoint(self) if logger is not None else None

    # ----------------------------------------------------------------------------- other ranks

    def counters(self) -> dict[str, int]:
        return self.state.counters()

    def set_counters(self, num_timesteps: int, iteration: int, target_timesteps: int) -> None:
        self.state.set_counters(num_timesteps, iteration, target_timesteps)

    def shared_tensors(self) -> list[torch.Tensor]:
        """What rank 0 gives the other ranks before a training call, in one fixed order: the
        weights and statistics, then the optimizer's state per parameter."""
        optimizer = self.learner.optimizer
        optimizer_state = [
            value
            for param in self.policy.parameters()
            for _name, value in sorted(optimizer.state[param].items())
            if isinstance(value, torch.Tensor)
        ]
        return [*self.policy.state_dict().values(), *optimizer_state]

    def rank_trainers(self) -> Callable[[Collectives], Trainer]:
        """Rank 0, before it forks the other ranks: a factory of their trainers (called in each
        forked process). They inherit this trainer's policy, settings, state and optimizer as
        forked (None before the first update: each rank then creates the same fresh one), and
        each its own episodes and random stream of a loaded checkpoint, if it holds them."""
        optimizer = self.learner.created_optimizer
        states, self.rank_states = self.rank_states, {}
        episodes = self.collector.episodes
        changes = list(episodes.changes) if episodes is not None else list(self.collector.changes_log)

        def make(collectives: Collectives) -> Trainer:
            trainer = Trainer(self.policy, self.config, self.generator, self.state, collectives, optimizer)
            trainer.collector.changes_log = changes
            own = states.get(collectives.rank)
            if own is not None:
                meta, tensors = own
                trainer.collector.load_state(meta["episodes"], tensors)
                trainer.generator.set_state(tensors["rng"])
            return trainer

        return make

    def close(self) -> None:
        self.collector.close()


def _evaluation_end(state: TrainingState, evaluation: EvalSchedule) -> EvaluationEnd:
    result = evaluation.last_result
    assert result is not None
    return EvaluationEnd(
        state.num_timesteps,
        result.mean_return,
        result.std_return,
        tuple(result.returns),
        tuple(result.lengths),
        read_only(evaluation.last_metrics),
    )


def _note(exc: BaseException, text: str) -> None:
    """Add ``text`` to the traceback's end (Python 3.11+; 3.10 shows the traceback alone)."""
    if hasattr(exc, "add_note"):
        exc.add_note(text)


__all__ = ["ITERATION_SEED_STRIDE", "RANK_SEED_STRIDE", "IterationCallback", "RunOutput", "Trainer"]
