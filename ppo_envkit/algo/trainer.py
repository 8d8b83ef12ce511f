"""``Trainer``: the training loop. One iteration reads top to bottom in :meth:`Trainer._iterate`:

1. ``Collector.collect()`` steps the environment copies ``ppo.n_steps`` times;
2. ``RolloutBuffer.compute_advantages()`` runs GAE;
3. ``Learner.update()`` runs the PPO epochs;
4. counters, metrics, the run logger (progress, CSV, TensorBoard, checkpoints), callbacks.

Around it: the state captured at the start of every iteration, saved as the last good
checkpoint when an iteration fails with a non-finite value or is interrupted with Ctrl-C,
and the checkpoint state itself (:meth:`state`, :meth:`load_state`).

The trainer works on the agent's policy, generator and counters; it receives a
:class:`~ppo_envkit.parallel.collectives.Collectives` and never asks how many ranks
there are beyond logging it.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..environments.lookup import env_info
from ..errors import ActionMaskError, EnvironmentFailed, NonFiniteError, ObservationError, TrainingInterrupted
from ..parallel.collectives import Collectives
from ..parallel.ranks import share_training_state
from ..parallel.shm import RankFailed, SharedMemoryCollectives
from .collector import Collector
from .context import RankContext
from .evaluation import EvalSchedule
from .learner import Learner
from .optim import FlatAdam

if TYPE_CHECKING:
    from ..agent import PPO
    from ..io.runlog import RunLogger

Callback = Callable[["PPO", dict[str, float]], Any]

#: Rank ``r`` (> 0) samples from its own stream: ``seed + RANK_SEED_STRIDE * r +
#: ITERATION_SEED_STRIDE * iteration``. Distinct primes keep (rank, iteration) pairs apart.
RANK_SEED_STRIDE = 7919
ITERATION_SEED_STRIDE = 104729


class Trainer:
    """Trains ``agent`` as one rank of ``collectives``: environments, loop, checkpoint state."""

    def __init__(self, agent: PPO, collectives: Collectives, optimizer: FlatAdam | None = None):
        # A weak reference: the agent owns its trainer, and a cycle would keep both (and the
        # other training processes they end with the agent) alive until the garbage collector runs.
        self._agent = weakref.ref(agent)
        self.context = RankContext(agent.policy, agent.config, agent.generator, collectives)
        self.collector = Collector(self.context)
        self.learner = Learner(self.context, optimizer)
        self._captured: dict[str, Any] | None = None
        #: Other ranks' episodes and random streams from a loaded checkpoint, for the forked ranks.
        self.rank_states: dict[int, tuple[dict[str, Any], dict[str, torch.Tensor]]] = {}
        self.attach(collectives)

    @property
    def agent(self) -> PPO:
        agent = self._agent()
        if agent is None:
            raise RuntimeError("the agent of this trainer no longer exists")
        return agent

    def attach(self, collectives: Collectives) -> None:
        """Train as one rank of ``collectives`` from now on (a rank other than 0 draws its own
        random stream; observation statistics are shared from their current values)."""
        size, cfg = collectives.size, self.agent.config
        if size > 1 and cfg.minibatch_size % size:
            raise ValueError(
                f"ppo.minibatch_size={cfg.minibatch_size} is the combined minibatch of all "
                f"{size} ranks and must be divisible by the number of ranks"
            )
        self.context.collectives = collectives
        self.collector.share_obs_stats()
        if collectives.rank != 0:
            self.reseed()
        if size > 1:
            self.agent.metadata["distributed"] = {"world_size": size}
        else:
            self.agent.metadata.pop("distributed", None)

    @property
    def collectives(self) -> Collectives:
        return self.context.collectives

    def reseed(self) -> None:
        """This rank's own sampling stream, from the seed, its rank and the iteration."""
        agent = self.agent
        rank = self.collectives.rank
        agent.generator.manual_seed(
            agent.config.run.seed + RANK_SEED_STRIDE * rank + ITERATION_SEED_STRIDE * agent.iteration
        )

    def prepare(self) -> None:
        """Build the environment copies now (else the first :meth:`train` does)."""
        self._configure()
        self.collector.start(self.agent.iteration, self.agent.num_timesteps)
        if self.collector.next_masks is not None:  # kept in agent.json (the ONNX export reads it)
            self.agent.metadata["action_masks"] = True

    def _configure(self) -> None:
        """Take the agent's current settings (they may change between training calls)."""
        config = self.agent.config
        self.context.config = config

    # ----------------------------------------------------------------------------- the loop

    def train(self, callback: Callback | None = None, logger: RunLogger | None = None) -> None:
        """Train until ``agent.target_timesteps``, until ``callback`` returns False, or until an
        evaluation reaches ``run.stop_at``."""
        agent = self.agent
        self.prepare()
        self._post_state()
        evaluation = self._evaluation()
        if logger is not None:
            logger.start(agent)
        try:
            while agent.num_timesteps < agent.target_timesteps:
                metrics = self._iterate()
                if evaluation is not None:
                    final = agent.num_timesteps >= agent.target_timesteps
                    metrics.update(evaluation.after_iteration(agent, metrics, final))
                if logger is not None:
                    logger.log_iteration(agent, metrics)
                stop = callback is not None and callback(agent, metrics) is False
                stop = stop or (evaluation is not None and evaluation.reached)
                if self.collectives.rank0_decides(stop):  # every rank stops at the same iteration
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
            _note(exc, f"ppo-envkit saved the last good checkpoint: {saved}")
            raise
        finally:
            if evaluation is not None:
                evaluation.close()
        if self.collectives.size > 1:
            identical = self.collectives.weights_identical(agent.policy)
            agent.metadata["distributed"]["weights_identical_across_ranks"] = identical
            if not identical:
                raise RuntimeError("ranks ended with different weights: training went out of step")
        if logger is not None:
            logger.finish(agent)

    def _evaluation(self) -> EvalSchedule | None:
        """This call's evaluations: rank 0's, when ``run.eval_interval`` is not 0."""
        config = self.agent.config
        if self.collectives.rank != 0 or config.run.eval_interval == 0:
            return None
        threshold = env_info(config.env.id).reward_threshold
        return EvalSchedule(config, threshold, self.agent.num_timesteps)

    def _iterate(self) -> dict[str, float]:
        """One iteration: collect, advantages, update; returns the metrics to log."""
        agent = self.agent
        ppo = agent.config.ppo
        self._captured = self.capture()
        start = time.perf_counter()
        rollout = self.collector.collect(agent.num_timesteps)
        collect_time = time.perf_counter() - start
        rollout.compute_advantages(ppo.gamma, ppo.gae_lambda)
        progress = agent.num_timesteps / max(agent.target_timesteps, 1)
        where = f"in update {agent.iteration + 1} (after {agent.num_timesteps} steps)"
        stats = self.learner.update(rollout, progress, where)
        elapsed = time.perf_counter() - start
        batch = rollout.size * self.collectives.size
        agent.num_timesteps += batch
        agent.iteration += 1
        metrics = stats.metrics()
        metrics.update(
            sps=batch / elapsed,
            collect_sps=batch / max(collect_time, 1e-9),
            **self.collector.episode_metrics(),
        )
        agent.last_metrics = metrics
        self._post_state()
        return metrics

    # ----------------------------------------------------------------------------- state

    def state(self, ranks: bool = True) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Everything besides the weights needed to resume exactly: counters, optimizer,
        random stream, episodes and reward-scaling returns (``trainer.json`` + tensors); with
        ``ranks``, also the other forked ranks' episodes and streams at this iteration."""
        agent = self.agent
        optimizer_meta, tensors = self.learner.optimizer_state()
        episodes_meta, episode_tensors = self.collector.state()
        tensors = {**tensors, **episode_tensors, "rng": agent.generator.get_state().clone()}
        meta = {
            "num_timesteps": agent.num_timesteps,
            "iteration": agent.iteration,
            "target_timesteps": agent.target_timesteps,
            "optimizer": optimizer_meta,
            "episodes": episodes_meta,
        }
        if ranks:
            meta["ranks"] = {}
            for rank, (rank_meta, rank_tensors) in self._other_ranks_states().items():
                meta["ranks"][str(rank)] = rank_meta
                tensors.update({f"rank{rank}.{name}": value for name, value in rank_tensors.items()})
        return meta, tensors

    def _mailboxes(self) -> Any:
        group = getattr(self.collectives, "group", None)
        return getattr(group, "mailboxes", None)

    def _post_state(self) -> None:
        """A forked rank other than 0 posts its episodes and random stream at this iteration
        boundary, where rank 0 can read them for a checkpoint (:mod:`..parallel.mailbox`)."""
        mailboxes = self._mailboxes()
        rank = self.collectives.rank
        if mailboxes is None or rank == 0:
            return
        episodes_meta, tensors = self.collector.state()
        tensors = {**tensors, "rng": self.agent.generator.get_state().clone()}
        mailboxes.post(rank, self.agent.iteration, {"episodes": episodes_meta}, tensors)

    def _other_ranks_states(self) -> dict[int, tuple[dict[str, Any], dict[str, torch.Tensor]]]:
        """Rank 0: each forked rank's state at the current iteration boundary, from its mailbox
        (even if the rank has died since), else as loaded from a checkpoint. A rank whose state
        is in neither is left out: its copies then start fresh episodes on resume."""
        mailboxes = self._mailboxes()
        if mailboxes is None or self.collectives.rank != 0:
            return dict(self.rank_states)
        group, found = self.collectives.group, {}
        for rank in range(1, self.collectives.size):
            state = mailboxes.read(rank, self.agent.iteration, lambda: group.alive)
            if state is None:
                state = self.rank_states.get(rank)
            if state is not None:
                found[rank] = state
        return found

    def load_state(self, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state`. The random stream and episodes in it are rank 0's; another
        rank draws its own stream and starts fresh episodes."""
        agent = self.agent
        agent.num_timesteps = int(meta["num_timesteps"])
        agent.iteration = int(meta["iteration"])
        agent.target_timesteps = int(meta["target_timesteps"])
        self.learner.load_optimizer_state(meta["optimizer"], tensors)
        if self.collectives.rank == 0:
            agent.generator.set_state(tensors["rng"])
            self.collector.load_state(meta["episodes"], tensors)
            self.rank_states = {}
            for rank, rank_meta in (meta.get("ranks") or {}).items():
                prefix = f"rank{rank}."
                own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
                self.rank_states[int(rank)] = (rank_meta, own)
        else:
            self.reseed()

    def take_rank_state(self) -> None:
        """A forked rank: continue from its own episodes and random stream of the loaded
        checkpoint (inherited from rank 0's trainer), if it holds them."""
        state = self.rank_states.pop(self.collectives.rank, None)
        self.rank_states = {}
        if state is not None:
            meta, tensors = state
            self.collector.load_state(meta["episodes"], tensors)
            self.agent.generator.set_state(tensors["rng"])

    def capture(self) -> dict[str, Any]:
        """Everything needed to resume exactly from the start of the coming iteration."""
        policy = {k: v.detach().clone() for k, v in self.agent.policy.state_dict().items()}
        return {"policy": policy, "trainer": self.state(ranks=False)}

    def _save_after_failure(self, logger: RunLogger | None) -> Path | None:
        """:meth:`save_captured`, for a failed iteration; a failure to save is reported, not raised
        over the error that stopped training."""
        try:
            return self.save_captured(logger)
        except Exception as exc:
            if logger is not None:
                logger.console.print(f"[red]could not save the last good checkpoint[/]: {exc}")
            return None

    def save_captured(self, logger: RunLogger | None) -> Path | None:
        """Restore the state captured at the start of the failed iteration, and save it."""
        if self._captured is None:
            return None
        self.agent.policy.load_state_dict(self._captured["policy"])
        # The environments ran past the captured state: load_state closes them, and the next
        # training call rebuilds them by replay.
        self.load_state(*self._captured["trainer"])
        return logger.save_checkpoint(self.agent) if logger is not None else None

    def close(self) -> None:
        self.collector.close()


def _note(exc: BaseException, text: str) -> None:
    """Add ``text`` to the traceback's end (Python 3.11+; 3.10 shows the traceback alone)."""
    if hasattr(exc, "add_note"):
        exc.add_note(text)


def serve_as_rank(
    agent: PPO,
    collectives: SharedMemoryCollectives,
    optimizer: FlatAdam,
    rank_states: dict[int, tuple[dict[str, Any], dict[str, torch.Tensor]]] | None = None,
) -> None:
    """The body of a forked ``run.processes`` rank (in its own process): train in step with
    rank 0 with environment copies of its own, then wait for rank 0's next training call,
    until rank 0 ends the ranks. ``optimizer`` is rank 0's as forked, so that its state
    matches (that of a resumed run, say)."""
    trainer = Trainer(agent, collectives, optimizer)
    trainer.rank_states = dict(rank_states or {})
    trainer.take_rank_state()
    try:
        trainer.train()
        while share_training_state(collectives, agent, trainer.learner.optimizer):
            trainer.train()
    finally:
        trainer.close()


__all__ = ["ITERATION_SEED_STRIDE", "RANK_SEED_STRIDE", "Callback", "Trainer", "serve_as_rank"]
