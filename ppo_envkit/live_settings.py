"""Which settings may change between two training calls of one agent, and which may not.

An agent that has trained has a network, spaces and environment copies with episodes
under way: settings that shape those cannot change without starting again. The rest
(step sizes, coefficients, how long to train, evaluation, checkpointing) may change
between ``learn()`` calls and when a run is resumed. This is the one place that says
which is which; :func:`settings_change` is asked by the trainer before every training
call and by ``train --resume``.
"""

from __future__ import annotations

from typing import Any

from .config import TrainConfig
from .errors import ConfigError

#: Settings that may change between training calls (dotted keys; a section name covers it all).
MUTABLE: tuple[str, ...] = (
    "ppo.minibatch_size",
    "ppo.n_epochs",
    "ppo.learning_rate",
    "ppo.anneal_lr",
    "ppo.gae_lambda",
    "ppo.clip_coef",
    "ppo.clip_vloss",
    "ppo.vf_clip_coef",
    "ppo.ent_coef",
    "ppo.vf_coef",
    "ppo.max_grad_norm",
    "ppo.norm_adv",
    "ppo.target_kl",
    "run.total_timesteps",
    "run.analytic_gradients",
    "run.compile",
    "run.run_dir",
    "run.checkpoint_interval",
    "run.keep_checkpoints",
    "run.eval_interval",
    "run.eval_episodes",
    "run.stop_at",
    "run.eval_video",
    "run.wandb",
    "run.wandb_project",
    "run.wandb_entity",
    "run.wandb_group",
    "run.wandb_tags",
)


def flat_settings(config: TrainConfig) -> dict[str, Any]:
    """Every setting by dotted key (``env.kwargs`` and lists as one value each)."""
    return {
        f"{section}.{key}": value
        for section, values in config.model_dump(mode="json").items()
        for key, value in values.items()
    }


def changed_keys(old: TrainConfig, new: TrainConfig) -> list[str]:
    """The dotted keys whose values differ, in the settings' order."""
    before, after = flat_settings(old), flat_settings(new)
    return [key for key in after if before.get(key) != after[key]]


def is_mutable(key: str) -> bool:
    return key in MUTABLE


def settings_change(old: TrainConfig, new: TrainConfig) -> list[str]:
    """The keys ``new`` changes from ``old``; a :class:`ConfigError` naming every key that may
    not change (with both values) when there is one."""
    changed = changed_keys(old, new)
    frozen = [key for key in changed if not is_mutable(key)]
    if frozen:
        before, after = flat_settings(old), flat_settings(new)
        what = ", ".join(f"{key} ({_short(before[key])} -> {_short(after[key])})" for key in frozen)
        raise ConfigError(
            f"cannot change {what} of an agent that has trained: they shape its network, spaces, "
            "environment copies or random streams. Train a new agent for that; between training "
            "calls only these may change: " + ", ".join(MUTABLE)
        )
    return changed


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["MUTABLE", "changed_keys", "flat_settings", "is_mutable", "settings_change"]
