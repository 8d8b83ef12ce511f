"""Evaluation of an agent over whole episodes, without the short-episode bias.

Episodes are split evenly across the environment copies in advance (each copy
plays its own quota), so copies that happen to finish short episodes first do
not crowd out long ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ..config import EnvConfig
from ..environments.agent_stack import agent_spaces
from ..environments.episodes import EpisodeMetrics
from ..environments.factory import make_configured_env
from ..environments.masks import require_masks, vector_masks
from ..spaces import require_fits
from .acting import EpisodeActor
from .agent_rows import to_copies, to_rows
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


#: "Clearly better": the difference of the two modes' mean returns is at least this many of its
#: standard errors (Welch's statistic over the episodes; 2.33 is a one-sided 1% test).
CLEARLY_Z = 2.33
#: Episodes of each mode when training ends and the two are compared (at least; fewer cannot
#: tell a policy that loops in half its deterministic episodes from noise).
COMPARE_EPISODES = 20
MODES = ("deterministic", "stochastic")


def _mode(deterministic: bool) -> str:
    return MODES[0] if deterministic else MODES[1]


def compare_modes(first: EvalResult, second: EvalResult) -> dict[str, Any]:
    """Which of two evaluations in different modes scores clearly better, if either does.

    Welch's statistic ``z = (mean_a - mean_b) / sqrt(var_a / n_a + var_b / n_b)`` over the
    episodes' returns (sample variances); a mode is clearly better when ``z >= CLEARLY_Z``
    (with no spread at all, any difference beyond rounding counts). Returns a JSON-ready record:
    both modes' mean, std and episodes, ``z`` (better minus worse; 0 when equal), ``better``
    (the clearly better mode, or None) and ``mode`` (the one to evaluate with: the better one,
    deterministic when neither is)."""
    by_mode = {_mode(r.deterministic): r for r in (first, second)}
    if len(by_mode) != 2:
        raise ValueError("compare_modes takes one deterministic and one stochastic evaluation")
    det, sto = by_mode["deterministic"], by_mode["stochastic"]
    a, b = np.asarray(sto.returns, np.float64), np.asarray(det.returns, np.float64)
    diff = float(a.mean() - b.mean())
    var = (a.var(ddof=1) / len(a) if len(a) > 1 else 0.0) + (b.var(ddof=1) / len(b) if len(b) > 1 else 0.0)
    se = math.sqrt(var)
    tiny = 1e-9 * max(1.0, abs(float(a.mean())), abs(float(b.mean())))
    if se > 0:
        z = diff / se
    else:
        z = 0.0 if abs(diff) <= tiny else math.copysign(math.inf, diff)
    better = None if abs(z) < CLEARLY_Z or abs(diff) <= tiny else ("stochastic" if z > 0 else "deterministic")
    return {
        "mode": better or "deterministic",
        "better": better,
        "z": abs(z) if math.isfinite(z) else None,
        **{
            name: {"mean_return": r.mean_return, "std_return": r.std_return, "episodes": r.episodes}
            for name, r in (("deterministic", det), ("stochastic", sto))
        },
    }


def comparison_line(comparison: dict[str, Any], places: int = 2) -> str | None:
    """One line saying that a mode scores clearly better (None when neither does)."""
    better = comparison.get("better")
    if better not in MODES:
        return None
    other = MODES[1 - MODES.index(better)]
    b, o = comparison[better], comparison[other]
    z = comparison.get("z")
    stat = "no spread in either" if z is None else f"Welch z = {z:.1f}"
    return (
        f"{better} play scores clearly better: {b['mean_return']:.{places}f} +- {b['std_return']:.{places}f} "
        f"against {o['mean_return']:.{places}f} +- {o['std_return']:.{places}f} {other} "
        f"({stat} over {b['episodes']} + {o['episodes']} episodes)"
    )


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
        layout = agent_spaces(self.envs.envs[0])  # several agents: the policy acts per row
        require_fits(self.env.id, policy, self.envs if layout is None else layout)
        actor: Actor = EpisodeActor(
            policy, generator, deterministic
        )  # keeps a recurrent policy's memory per copy
        agents = 1 if layout is None else layout.num_agents
        if layout is not None:
            actor = _AgentRowsActor(actor, agents)
        return self.play(
            actor,
            (policy.head.mask_size or 0) * agents,
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


class _AgentRowsActor:
    """An actor of single agents playing copies that stack ``agents`` of them (``[n, A, ...]``):
    one row per agent (the reward an evaluation reports is the mean over agents)."""

    def __init__(self, actor: Actor, agents: int):
        self.actor, self.agents = actor, agents

    def __call__(self, obs: Any, masks: Any, starts: np.ndarray) -> Any:
        a = self.agents
        rows_masks = None if masks is None else np.asarray(masks).reshape(len(starts) * a, -1)
        actions = self.actor(to_rows(obs, a), rows_masks, np.repeat(starts, a))
        return to_copies(actions, a)


def _episode_metrics(finished: Any, quota: np.ndarray) -> dict[str, float]:
    """Each metric averaged over the counted episodes (copy ``i``'s first ``quota[i]``)."""
    sums: dict[str, list[float]] = {}
    for i, episodes in enumerate(finished):
        for episode, values, _info in episodes:
            if episode < quota[i]:
                for key, value in values.items():
                    sums.setdefault(key, []).append(value)
    return {key: float(np.mean(values)) for key, values in sorted(sums.items())}


__all__ = [
    "CLEARLY_Z",
    "COMPARE_EPISODES",
    "MAX_EVAL_COPIES",
    "MODES",
    "Actor",
    "EvalResult",
    "Evaluator",
    "compare_modes",
    "comparison_line",
]
