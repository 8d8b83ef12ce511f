"""Evaluation during training: when to evaluate, what it reports, and when it stops training.

Evaluations play ``run.eval_episodes`` episodes on copies of the environment kept apart from
the training copies, with the same seeds every time, so that successive evaluations compare
the same episodes. They play in the agent's evaluation mode (deterministic unless an earlier
training call found stochastic play clearly better); stochastic evaluations draw from a
generator of their own, seeded alike every time. Evaluations draw nothing from the training
generator and update no statistics: a run's weights are the same with or without them.

The last evaluation of a training call plays both modes (at least
:data:`~.evaluator.COMPARE_EPISODES` episodes each) and compares them with Welch's statistic
(:func:`~.evaluator.compare_modes`); :attr:`EvalSchedule.mode_record` is what the trainer
records in the agent (``eval_mode``), which ``eval`` follows. A policy that loops forever in
half its deterministic episodes (MiniGrid's DoorKey: 0.48 deterministic, 0.95 stochastic) is
then evaluated, kept as best and reported as it plays when sampling.

``run.eval_interval: auto`` keeps evaluation to about 2.5% of the training steps: the next
evaluation comes after ``40 * eval_episodes * (mean length of the last evaluation's
episodes)`` steps, at least :data:`MIN_AUTO_INTERVAL`. There is always one at the end of a
training call. An evaluation step costs more than a training step (a handful of copies
share each forward pass, against 16-64 in training), so its share of the time is larger
than its share of the steps; docs/performance.md gives the measured overhead.
"""

from __future__ import annotations

import math
import time

import torch

from ..config import TrainConfig
from .evaluator import COMPARE_EPISODES, EvalResult, Evaluator, compare_modes
from .policy import ActorCritic

#: ``auto`` evaluates after at least this many steps.
MIN_AUTO_INTERVAL = 10_000
#: ``auto``: training steps per evaluation step (evaluation is then ~2.5% of the steps).
AUTO_STEPS_PER_EVAL_STEP = 40
#: Evaluation episode ``k`` of copy ``i`` resets from ``run.seed + EVAL_SEED_OFFSET + i``,
#: far from the training copies' seeds (``run.seed + copy index``).
EVAL_SEED_OFFSET = 1_000_000


class EvalSchedule:
    """Runs the evaluations of one training call (in rank 0) and tracks the best one."""

    def __init__(
        self,
        config: TrainConfig,
        reward_threshold: float | None,
        start_step: int,
        mode: dict | None = None,
    ):
        run = config.run
        #: The mode evaluations play in (the agent's recorded ``eval_mode``, else deterministic).
        self.deterministic = (mode or {}).get("mode") != "stochastic"
        #: The comparison of both modes made by the last evaluation (for the trainer to record).
        self.mode_record: dict | None = None
        self._compare: Evaluator | None = None
        self.config = config
        self.episodes = run.eval_episodes
        self.seed = run.seed + EVAL_SEED_OFFSET
        self.target = reward_threshold if run.stop_at == "threshold" else run.stop_at
        if run.stop_at == "threshold" and reward_threshold is None:
            raise ValueError(
                f"run.stop_at=threshold, but {config.env.id} declares no reward_threshold; "
                "give a number instead (run.stop_at=200)"
            )
        self.next_at = start_step + (MIN_AUTO_INTERVAL if run.eval_interval == "auto" else run.eval_interval)
        self.last_at: int | None = None
        self.best = -math.inf
        self.reached = False
        self._evaluator: Evaluator | None = None
        #: The last evaluation's episodes and logged metrics (for ``on_evaluation_end``).
        self.last_result: EvalResult | None = None
        self.last_metrics: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.config.run.eval_interval != 0

    def after_iteration(
        self,
        policy: ActorCritic,
        generator: torch.Generator,
        steps: int,
        final: bool,
        trained_with_masks: bool = False,
    ) -> dict[str, float]:
        """The evaluation metrics after ``steps`` training steps (none when no evaluation is due)."""
        if not self.enabled or (steps < self.next_at and not final) or self.last_at == steps:
            return {}
        if self._evaluator is None:
            self._evaluator = Evaluator(
                self.config.env, self.episodes, info_keywords=self.config.run.info_keywords
            )
        start = time.perf_counter()
        extra: dict[str, float] = {}
        if final:
            result = self._final(policy, trained_with_masks)
            extra["eval_stochastic"] = float(not result.deterministic)
            extra["eval_episodes"] = float(result.episodes)
        else:
            result = self._play(self._evaluator, policy, generator, self.deterministic, trained_with_masks)
        self.last_at = steps
        self.next_at = steps + self._interval(result.mean_length)
        improved = result.mean_return > self.best
        self.best = max(self.best, result.mean_return)
        self.reached = self.target is not None and result.mean_return >= self.target
        self.last_result = result
        self.last_metrics = {
            "eval_return": result.mean_return,
            "eval_return_std": result.std_return,
            "eval_length": result.mean_length,
            "eval_best": float(improved),
            "eval_seconds": time.perf_counter() - start,
            **extra,
        }
        return dict(self.last_metrics)

    def _play(
        self,
        evaluator: Evaluator,
        policy: ActorCritic,
        generator: torch.Generator,
        deterministic: bool,
        trained_with_masks: bool,
    ) -> EvalResult:
        if not deterministic:  # sampled from a generator of its own: the same draws every time
            generator = torch.Generator(device=policy.device).manual_seed(self.seed)
        return evaluator.run(
            policy,
            generator,
            deterministic=deterministic,
            seed=self.seed,
            trained_with_masks=trained_with_masks,
        )

    def _final(self, policy: ActorCritic, trained_with_masks: bool) -> EvalResult:
        """Both modes on the same episodes; records the comparison and returns the chosen mode's
        evaluation."""
        if self._compare is None:
            self._compare = Evaluator(
                self.config.env,
                max(self.episodes, COMPARE_EPISODES),
                info_keywords=self.config.run.info_keywords,
            )
        unused = torch.Generator(device=policy.device)
        results = {
            det: self._play(self._compare, policy, unused, det, trained_with_masks) for det in (True, False)
        }
        self.mode_record = compare_modes(results[True], results[False])
        self.deterministic = self.mode_record["mode"] == "deterministic"
        return results[self.deterministic]

    def _interval(self, eval_episode_length: float) -> int:
        """Steps to the next evaluation. ``auto`` scales with the steps the last evaluation took
        (its episodes, not the training ones: a deterministic policy that hovers until the
        time limit plays longer episodes than the sampling one that trains)."""
        interval = self.config.run.eval_interval
        if interval != "auto":
            return int(interval)
        return max(MIN_AUTO_INTERVAL, int(AUTO_STEPS_PER_EVAL_STEP * self.episodes * eval_episode_length))

    def close(self) -> None:
        for evaluator in (self._evaluator, self._compare):
            if evaluator is not None:
                evaluator.close()
        self._evaluator = self._compare = None


__all__ = ["EVAL_SEED_OFFSET", "MIN_AUTO_INTERVAL", "EvalSchedule"]
