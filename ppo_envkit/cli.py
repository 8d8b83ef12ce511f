"""The ``ppo-envkit`` command (also ``python -m ppo_envkit``).

Known failures (bad settings, unknown environments, unreadable agents, non-finite
values) print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from .config import ConfigError, TrainConfig

console = Console(stderr=True, highlight=False, soft_wrap=True)

#: Exceptions reported in one line (without --debug). Filled lazily to keep start-up fast.
_KNOWN_ERRORS: tuple[type[BaseException], ...] = ()

_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}
_PARSER_BUILDERS: list[Callable[[Any], None]] = []


def command(
    name: str,
) -> Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]]:
    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        _COMMANDS[name] = fn
        return fn

    return register


def parser_builder(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    _PARSER_BUILDERS.append(fn)
    return fn


def add_env_module_arg(p: argparse.ArgumentParser) -> None:
    """``--env-module``, shared by every command that builds environments."""
    p.add_argument(
        "--env-module",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or .py file that registers environments (repeatable)",
    )


def add_set_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


# ----------------------------------------------------------------------------- train


@parser_builder
def _train_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an agent; writes a run directory")
    p.add_argument("env_id", nargs="?", help="environment id, e.g. LunarLander-v3 (optional with --resume)")
    p.add_argument(
        "--preset", help="named preset from agents/ (default: the preset written for ENV_ID, if any)"
    )
    p.add_argument("--config", help="YAML config file (sections env, policy, ppo, run)")
    add_set_arg(p, "override one setting, e.g. --set ppo.learning_rate=1e-3 (repeatable)")
    p.add_argument("--total-timesteps", type=int, help="environment steps to train for")
    p.add_argument("--seed", type=int, help="seed for environments and torch")
    p.add_argument("--num-envs", type=int, help="environment copies stepped together")
    p.add_argument(
        "--processes",
        type=int,
        help="training processes on this machine, splitting the copies (run.processes; one per core)",
    )
    p.add_argument(
        "--action-space",
        choices=["discrete", "continuous"],
        help="pick the discrete or continuous variant of the environment",
    )
    p.add_argument("--run-dir", help="output directory (default: runs/ENV-TIMESTAMP)")
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="torch device")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    add_env_module_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_train_config(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """Defaults < preset < --config file < flags < --set. Returns (config, preset name used)."""
    from .presets import load_preset, preset_for_env
    from .registry import registered_preset, resolve_variant

    env_id: str | None = args.env_id
    env_kwargs: dict[str, Any] = {}
    if args.action_space is not None and env_id:
        # the variant the environment declares: kwargs (continuous=True) and/or another id
        variant = resolve_variant(env_id, args.action_space)
        env_id, env_kwargs = variant.env_id, dict(variant.kwargs)
    preset = args.preset
    if preset is None and args.config is None and env_id:
        preset = registered_preset(env_id, args.action_space) or preset_for_env(env_id, env_kwargs)
    config = load_preset(preset) if preset else TrainConfig()
    if args.config:
        from .config import load_config

        config = load_config(args.config)
    overrides: dict[str, Any] = {}
    if env_id:
        if env_id != config.env.id:
            overrides["env.kwargs"] = {}
        overrides["env.id"] = env_id
    for key, value in env_kwargs.items():
        overrides[f"env.kwargs.{key}"] = value
    for flag, key in (
        ("total_timesteps", "run.total_timesteps"),
        ("seed", "run.seed"),
        ("num_envs", "env.num_envs"),
        ("processes", "run.processes"),
        ("device", "run.device"),
        ("run_dir", "run.run_dir"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    config = config.with_overrides(overrides)
    if args.overrides:
        config = config.with_overrides(list(args.overrides))
    return config, preset


def _default_run_dir(env_id: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{env_id.replace('/', '_')}-{stamp}")


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .checkpoint import checkpoint_dirs
    from .logging import RunLogger

    rank, world_size = distributed.world()  # under torchrun, rank 0 alone logs and saves
    console.quiet = rank != 0
    from .envs_cli import load_user_envs, preflight_check
    from .ppo import PPO, TrainingInterrupted

    load_user_envs(args.env_module)
    if args.resume:
        checkpoints = checkpoint_dirs(args.resume)
        if not checkpoints:
            raise ConfigError(f"--resume {args.resume}: no checkpoint found in {args.resume}/checkpoints")
        agent = PPO.resume(checkpoints[-1], device=args.device)
        if args.total_timesteps is not None:
            agent.target_timesteps = args.total_timesteps
            agent.config = agent.config.with_overrides({"run.total_timesteps": args.total_timesteps})
        run_dir = args.resume
        console.print(f"resuming {agent.config.env.id} from {checkpoints[-1]} at step {agent.num_timesteps}")
    else:
        if not args.env_id:
            raise ConfigError("train needs ENV_ID (or --resume RUN_DIR)")
        config, preset = resolve_train_config(args)
        if not preflight_check(config, args.action_space):  # the quick checker, for user environments
            return 1
        if config.run.run_dir is None:
            config = config.with_overrides({"run.run_dir": _default_run_dir(config.env.id)})
        run_dir = config.run.run_dir
        agent = PPO(config=config)
        agent.metadata["provenance"] = {
            "command": "ppo-envkit " + " ".join(shlex.quote(a) for a in args.argv),
            "preset": preset,
            "seed": config.run.seed,
        }
        used = (
            f"preset '{preset}'"
            if preset
            else ("config " + args.config if args.config else "default settings")
        )
        console.print(f"training {config.env.id} with {used}; run directory: {run_dir}")
    cfg = agent.config
    logger = None
    if rank == 0:
        logger = RunLogger(
            run_dir,
            progress=not args.no_progress,
            console=console,
            checkpoint_interval=cfg.run.checkpoint_interval,
            keep_checkpoints=cfg.run.keep_checkpoints,
            resume=bool(args.resume),
        )
    if world_size > 1 and rank == 0:
        console.print(f"distributed: {world_size} ranks, {world_size * cfg.env.num_envs} environment copies")
    elif cfg.run.processes > 1:
        console.print(
            f"{cfg.run.processes} training processes, {agent.local_num_envs} of the "
            f"{cfg.env.num_envs} environment copies each"
        )
    started = time.perf_counter()
    try:
        if args.resume:
            agent.train(logger=logger)
        else:
            agent.learn(cfg.run.total_timesteps, logger=logger)
    except TrainingInterrupted as exc:
        console.print(f"[yellow]interrupted[/]: checkpoint saved to {exc.checkpoint}")
        console.print(f"continue with: ppo-envkit train --resume {run_dir}")
        return 130
    finally:
        agent.close()
        distributed.shutdown()
    if world_size > 1 and rank != 0:
        exit_now(0)
    wall = time.perf_counter() - started
    ret = agent.last_metrics.get("episode_return", float("nan"))
    console.print(
        f"done: {agent.num_timesteps} steps in {wall:.0f}s; recent training return {ret:.1f}; "
        f"agent saved to {Path(run_dir) / 'agent'}"
    )
    console.print(f"evaluate: ppo-envkit eval {run_dir} --episodes 100")
    console.print(f"watch it:  ppo-envkit replay {run_dir}")
    if world_size > 1:
        exit_now(0)
    return 0


def exit_now(code: int) -> None:
    """Exit a torchrun rank without running C++ static destructors.

    Everything is saved and closed by now; under load, tearing down gloo's threads at
    interpreter exit sometimes ends in ``std::terminate`` (SIGABRT), which torchrun
    would report as a failed run.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# ----------------------------------------------------------------------------- eval


@parser_builder
def _eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate an agent over whole episodes")
    p.add_argument("agent", metavar="AGENT_OR_RUN_DIR")
    p.add_argument("--episodes", type=int, default=10, help="number of episodes (default 10)")
    p.add_argument("--stochastic", action="store_true", help="sample actions instead of the most likely one")
    p.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes")
    p.add_argument(
        "--num-envs", type=int, default=None, help="environment copies (default min(episodes, 16))"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_env_module_arg(p)
    p.add_argument(
        "--write-result",
        action="store_true",
        help="record the result (and this command) as 'evaluation' in the agent's agent.json",
    )


@command("eval")
def cmd_eval(args: argparse.Namespace) -> int:
    from .envs_cli import load_user_envs, require_agent_env
    from .evaluate import evaluate
    from .ppo import PPO

    load_user_envs(args.env_module)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    agent = PPO.load(args.agent)
    require_agent_env(agent)
    result = evaluate(
        agent, args.episodes, deterministic=not args.stochastic, seed=args.seed, num_envs=args.num_envs
    )
    if args.write_result:
        from .checkpoint import update_agent_meta

        summary = {k: v for k, v in result.to_dict().items() if k not in ("returns", "lengths")}
        summary["command"] = f"ppo-envkit eval AGENT --episodes {args.episodes} --seed {args.seed}" + (
            " --stochastic" if args.stochastic else ""
        )
        update_agent_meta(agent.path, "evaluation", summary)
    if args.json:
        out = result.to_dict()
        out["agent"] = str(agent.path)
        out["num_timesteps"] = agent.num_timesteps
        print(json.dumps(out))
    else:
        mode = "stochastic" if args.stochastic else "deterministic"
        print(
            f"{result.env_id}: mean return {result.mean_return:.2f} +- {result.std_return:.2f} over "
            f"{result.episodes} {mode} episodes (min {result.min_return:.1f}, max {result.max_return:.1f}, "
            f"mean length {result.mean_length:.0f})"
        )
    return 0


# ----------------------------------------------------------------------------- entry point


#: Modules that add commands with @command / @parser_builder (imported when the parser is built).
COMMAND_MODULES = ("ppo_envkit.envs_cli", "ppo_envkit.viewer_cli", "ppo_envkit.bench")


def _import_command_modules() -> None:
    import importlib
    import importlib.util

    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    _import_command_modules()
    parser = argparse.ArgumentParser(
        prog="ppo-envkit", description="PPO for your own Gymnasium environments."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for build in _PARSER_BUILDERS:
        build(sub)
    return parser


def _known_errors() -> tuple[type[BaseException], ...]:
    from gymnasium.error import Error as GymError

    from .checkpoint import AgentFileError
    from .ppo import NonFiniteError
    from .registry import EnvNotFoundError
    from .spaces import UnsupportedSpaceError

    return (
        ConfigError,
        AgentFileError,
        NonFiniteError,
        EnvNotFoundError,
        UnsupportedSpaceError,
        GymError,
        FileNotFoundError,
        ValueError,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed, recorded in agents' provenance
    if args.command is None:
        parser.print_help()
        return 2
    debug = args.debug or bool(os.environ.get("PPO_ENVKIT_DEBUG"))
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception as exc:
        if debug or not isinstance(exc, _known_errors()):
            raise
        kind = "invalid settings" if isinstance(exc, ConfigError) else "error"
        console.print(f"[red]{kind}[/]: {exc}", soft_wrap=True)
        return 2 if isinstance(exc, ConfigError) else 1


if __name__ == "__main__":
    sys.exit(main())
