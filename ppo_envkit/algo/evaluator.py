"""Evaluation of an agent over whole episodes, without the short-episode bias.

Episodes are split evenly across the environment copies in advance (each copy
plays its own quota), so copies that happen to finish short episodes first do
not crowd out long ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ..config import EnvConfig
from ..environments.episodes import EpisodeMetrics
from ..environments.factory import make_configured_env
from ..environments.masks import require_masks, vector_masks
from ..spaces import require_fits
from .acting import EpisodeActor
from .policy import ActorCritic

#: Copies an evaluation steps at most (episodes are split among them).
MAX_EVAL_COPIES = 16
#: Plays a batch of copies: (observations, action masks or None, episode starts) -> actions.
Actor = Callable[[Any, Any, np.ndarray], Any]


@dataclass
class EvalResult:
    mean_return: float
    std_return: float
    min_return: float
    max_return: float
    mean_length: float
    episodes: int
    deterministic: bool
    seed: int
    env_id: str
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    #: The environment's own metrics (``info["metrics"]``, ``run.info_keywords``): each key's
    #: per-episode value averaged over the evaluated episodes that gave it.
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Evaluator:
    """Plays whole episodes with an agent on copies of its environment, which stay open
    between evaluations (evaluation during training reuses them)."""

    def __init__(
        self,
        env: EnvConfig,
        episodes: int,
        num_envs: int | None = None,
        info_keywords: Sequence[str] = (),
    ):
        if episodes < 1:
            raise ValueError("episodes must be >= 1")
        self.env, self.episodes = env, episodes
        n = max(1, min(episodes, num_envs or MAX_EVAL_COPIES))

        keywords = tuple(info_keywords)

        def factory() -> Any:
            return EpisodeMetrics(make_configured_env(env), keywords)

        self.envs = SyncVectorEnv([factory] * n, autoreset_mode=AutoresetMode.SAME_STEP)

    def run(
        self,
        policy: ActorCritic,
        generator: torch.Generator,
        *,
        deterministic: bool = True,
        seed: int = 0,
        trained_with_masks: bool = False,
    ) -> EvalResult:
        """``episodes`` episodes of ``policy`` (``generator`` samples stochastic actions); copy
        ``i`` starts from seed ``seed + i``, so every call with the same seed plays the same
        episodes (as far as the policy acts the same). A policy ``trained_with_masks`` is refused
        an environment that gives none (:func:`~ppo_envkit.environments.masks.require_masks`)."""
        require_fits(self.env.id, policy, self.envs)
        actor = EpisodeActor(policy, generator, deterministic)  # keeps a recurrent policy's memory per copy
        return self.play(
            actor,
            policy.head.mask_size or 0,
            deterministic=deterministic,
            seed=seed,
            trained_with_masks=trained_with_masks,
        )

    def play(
        self,
        actor: Actor,
        mask_size: int = 0,
        *,
        deterministic: bool = True,
        seed: int = 0,
        trained_with_masks: bool = False,
    ) -> EvalResult:
        """:meth:`run` with any ``actor(observations, action masks or None, episode starts)``
        giving a batch of actions (another library's model, an exported one...)."""
        envs, episodes = self.envs, self.episodes
        n = envs.num_envs
        quota = np.full(n, episodes // n)
        quota[: episodes % n] += 1
        obs, info = envs.reset(seed=seed)
        envs.call("take_finished")  # (a previous evaluation's)
        masks = vector_masks(info, n, mask_size)
        require_masks(trained_with_masks, self.env, masks)  # a masked agent needs an env with masks
        running = np.zeros(n)
        steps = np.zeros(n, dtype=np.int64)
        returns: list[float] = []
        lengths: list[int] = []
        done_count = np.zeros(n, dtype=np.int64)
        starts = np.ones(n, dtype=bool)
        while (done_count < quota).any():
            actions = actor(obs, masks, starts)
            obs, reward, terminated, truncated, info = envs.step(actions)
            starts = terminated | truncated
            masks = vector_masks(info, n, mask_size)
            running += reward
            steps += 1
            for i in np.flatnonzero(terminated | truncated):
                if done_count[i] < quota[i]:
                    returns.append(float(running[i]))
                    lengths.append(int(steps[i]))
                    done_count[i] += 1
                running[i], steps[i] = 0.0, 0
        arr = np.asarray(returns)
        metrics = _episode_metrics(envs.call("take_finished"), quota)
        return EvalResult(
            mean_return=float(arr.mean()),
            std_return=float(arr.std()),
            min_return=float(arr.min()),
            max_return=float(arr.max()),
            mean_length=float(np.mean(lengths)),
            episodes=len(returns),
            deterministic=deterministic,
            seed=seed,
            env_id=self.env.id,
            returns=returns,
            lengths=lengths,
            metrics=metrics,
        )

    def close(self) -> None:
        self.envs.close()


def _episode_metrics(finished: Any, quota: np.ndarray) -> dict[str, float]:
    """Each metric averaged over the counted episodes (copy ``i``'s first ``quota[i]``)."""
    sums: dict[str, list[float]] = {}
    for i, episodes in enumerate(finished):
        for episode, values, _info in episodes:
            if episode < quota[i]:
                for key, value in values.items():
                    sums.setdefault(key, []).append(value)
    return {key: float(np.mean(values)) for key, values in sorted(sums.items())}


__all__ = ["MAX_EVAL_COPIES", "Actor", "EvalResult", "Evaluator"]
