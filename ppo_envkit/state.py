"""``TrainingState``: what an agent has been through, as opposed to what it is set to do.

Settings (:class:`~ppo_envkit.config.TrainConfig`) say how to train; the policy holds the
weights and normalization statistics; this holds the rest of an agent's history: its
counters, the plan of the current run, where it came from and what it was trained with.
It is plain data, saved with every agent (``agent.json``) and checkpoint (``trainer.json``).

One owner writes it: the trainer, while training (or the agent file reader, when an agent
is loaded). The ``PPO`` facade and the command line read it; they give the trainer what it
needs to record (the command that started a run, say) through the facade's methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainingState:
    """Counters, plan and provenance of one agent."""

    #: Environment steps trained, summed over every rank.
    num_timesteps: int = 0
    #: Updates done (one per rollout).
    iteration: int = 0
    #: The step count the current run trains to (the learning-rate schedule follows it).
    target_timesteps: int = 0
    #: How the run was started (command, preset, seed), as the command line records it.
    provenance: dict[str, Any] | None = None
    #: The last recorded evaluation (``eval --write-result``).
    evaluation: dict[str, Any] | None = None
    #: Whether the environment gave action masks while training (the ONNX export reads it).
    action_masks: bool = False
    #: Ranks trained with (``world_size``) and whether they ended with identical weights.
    distributed: dict[str, Any] | None = None
    #: The mode evaluations use and why: the comparison of deterministic and stochastic play made
    #: when training last ended (``algo.evaluator.compare_modes``; ``mode`` is the one to use).
    eval_mode: dict[str, Any] | None = None
    #: Names of the discrete actions, as registered with the environment (for viewers).
    action_names: list[str] | None = None
    #: The metrics of the last iteration (not saved: they describe one training call).
    last_metrics: dict[str, float] = field(default_factory=dict, compare=False)

    #: ``agent.json`` keys holding the entries that are only written when set.
    OPTIONAL_KEYS = ("provenance", "evaluation", "action_masks", "distributed", "eval_mode")

    def to_meta(self) -> dict[str, Any]:
        """The entries this state contributes to ``agent.json`` (the counters and what is set)."""
        meta: dict[str, Any] = {"num_timesteps": self.num_timesteps}
        for key in self.OPTIONAL_KEYS:
            value = getattr(self, key)
            if value:
                meta[key] = value
        return meta

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> TrainingState:
        """The state an ``agent.json`` records (counters as checked by the reader)."""
        names = meta.get("env", {}).get("action_names") if isinstance(meta.get("env"), dict) else None
        return cls(
            num_timesteps=int(meta.get("num_timesteps", 0)),
            provenance=_dict_or_none(meta.get("provenance")),
            evaluation=_dict_or_none(meta.get("evaluation")),
            action_masks=meta.get("action_masks") is True,
            distributed=_dict_or_none(meta.get("distributed")),
            eval_mode=_eval_mode(meta.get("eval_mode")),
            action_names=[str(n) for n in names] if isinstance(names, list) else None,
        )

    def counters(self) -> dict[str, int]:
        """The counters, as a checkpoint's ``trainer.json`` holds them."""
        return {
            "num_timesteps": self.num_timesteps,
            "iteration": self.iteration,
            "target_timesteps": self.target_timesteps,
        }

    def set_counters(self, num_timesteps: int, iteration: int, target_timesteps: int) -> None:
        self.num_timesteps, self.iteration = int(num_timesteps), int(iteration)
        self.target_timesteps = int(target_timesteps)


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _eval_mode(value: Any) -> dict[str, Any] | None:
    """A recorded ``eval_mode`` whose ``mode`` is one of the two (anything else: none recorded)."""
    if isinstance(value, dict) and value.get("mode") in ("deterministic", "stochastic"):
        return value
    return None


def evaluation_mode(state: TrainingState) -> str:
    """The mode an agent's evaluations use: the recorded one, deterministic when none is."""
    return state.eval_mode["mode"] if state.eval_mode else "deterministic"


__all__ = ["TrainingState", "evaluation_mode"]
