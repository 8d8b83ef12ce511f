"""``train --resume RUN_DIR``: the latest good checkpoint, with the settings the user asked for.

Resuming is explicit about settings. What may change between training calls
(:data:`ppo_envkit.live_settings.MUTABLE`: step sizes, coefficients, length, evaluation,
checkpoints) is taken from ``--set``, ``--total-timesteps`` and edits to the run's
``config.yaml``, and echoed; a flag or an edit that would change anything else (the
environment, the network, the copies, the seed) is refused in one line that names it,
before anything is loaded into the run. Nothing the user wrote is ignored or overwritten
silently.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError, quoted
from .common import console

#: Flags of ``train`` that describe a new run, with the setting each would change.
_NEW_RUN_FLAGS = {
    "preset": "--preset",
    "config": "--config",
    "seed": "--seed",
    "num_envs": "--num-envs",
    "processes": "--processes",
    "action_space": "--action-space",
    "run_dir": "--run-dir",
}


def resume_run(args: argparse.Namespace) -> tuple[Any, str]:
    """The agent of ``args.resume``'s latest good checkpoint, its settings updated as asked;
    and the run directory."""
    from ..io.checkpoint import checkpoint_dirs

    run_dir = args.resume
    given = [flag for name, flag in _NEW_RUN_FLAGS.items() if getattr(args, name, None) is not None]
    if given:
        raise ConfigError(
            f"--resume continues the run in {quoted(run_dir)} with its own environment, network, "
            f"copies and seed: {', '.join(given)} cannot be changed there (start a new run for that; "
            "--set KEY=VALUE and --total-timesteps change what may change)"
        )
    checkpoints = checkpoint_dirs(run_dir)
    if not checkpoints:
        where = quoted(run_dir)
        raise ConfigError(f"--resume {where}: no checkpoint found in {where}/checkpoints")
    agent, checkpoints = _resume_latest_good(checkpoints, args.device)
    stored = agent.config
    if args.env_id and args.env_id != stored.env.id:
        agent.close()
        raise ConfigError(
            f"the run in {quoted(run_dir)} trains {stored.env.id}, not {args.env_id}: "
            f"leave ENV_ID out to continue it, or start a new run for {args.env_id}"
        )
    try:
        requested = _requested_settings(args, stored, Path(run_dir))
    except ConfigError:
        agent.close()
        raise
    agent.config = requested
    console.print(
        f"resuming {stored.env.id} from {quoted(checkpoints[-1])} at step {agent.num_timesteps}",
        highlight=False,
    )
    return agent, run_dir


def _requested_settings(args: argparse.Namespace, stored: Any, run_dir: Path) -> Any:
    """The stored settings with the run's ``config.yaml`` edits, ``--total-timesteps`` and
    ``--set`` applied; a ConfigError names whatever may not change. Each change is echoed."""
    from ..config import TrainConfig, as_stored_before
    from ..live_settings import changed_keys, flat_settings, settings_change

    config, sources = stored, {}
    edited = run_dir / "config.yaml"
    if edited.is_file():
        from_file = as_stored_before(TrainConfig.from_yaml(edited))  # a run directory of an older version
        for key in changed_keys(stored, from_file):
            sources[key] = f"{edited} (edited)"
        config = from_file
    if args.total_timesteps is not None:
        config = config.with_overrides({"run.total_timesteps": args.total_timesteps})
        sources["run.total_timesteps"] = "--total-timesteps"
    if args.overrides:
        before = config
        config = config.with_overrides(list(args.overrides))
        sources.update({key: "--set" for key in changed_keys(before, config)})
    try:
        changed = settings_change(stored, config)
    except ConfigError as exc:
        where = sorted({sources[key] for key in changed_keys(stored, config) if key in sources})
        raise ConfigError(f"{exc} (from {', '.join(where)})" if where else str(exc)) from None
    old, new = flat_settings(stored), flat_settings(config)
    for key in changed:
        console.print(f"resume: {key} {old[key]!r} -> {new[key]!r} ({sources.get(key, 'settings')})")
    return config


def _resume_latest_good(checkpoints: list[Path], device: str | None) -> tuple[Any, list[Path]]:
    """The newest checkpoint that loads; a corrupt one (damaged on disk, say) is reported and
    the one before it is tried. Returns the agent and the checkpoints up to the one used."""
    from ..agent import PPO
    from ..errors import AgentFileError

    for i in range(len(checkpoints) - 1, -1, -1):
        try:
            return PPO.resume(checkpoints[i], device=device), checkpoints[: i + 1]
        except AgentFileError as exc:
            if i == 0:
                raise
            console.print(f"[yellow]warning[/]: skipping checkpoint {quoted(checkpoints[i].name)}: {exc}")
    raise AssertionError("unreachable")


__all__ = ["resume_run"]
