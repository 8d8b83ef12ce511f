"""``ppo-envkit train``: resolve the settings, check a user environment, train, write a run directory."""

from __future__ import annotations

import argparse
import math
import shlex
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..errors import ConfigError, quoted
from .common import (
    add_env_module_arg,
    add_set_arg,
    console,
    env_module_flags,
    exit_now,
    load_user_envs,
    print_report,
)

if TYPE_CHECKING:
    from ..config import TrainConfig

NAME = "train"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train an agent; writes a run directory")
    p.add_argument(
        "env_id",
        nargs="?",
        help="environment id, e.g. LunarLander-v3, or module:id for another package's "
        "(minigrid:MiniGrid-DoorKey-5x5-v0); optional with --resume",
    )
    p.add_argument(
        "--preset",
        help="named preset from agents/ (default: the preset written for ENV_ID, if any; "
        "'defaults': the library's defaults even so)",
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
    p.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="a ppo_envkit.Callback subclass (made with no arguments) or a function returning one; "
        "MODULE is a module or a .py file, imported as --env-module is (repeatable; give it again "
        "with --resume: a callback's state_dict() comes back from the checkpoint)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_train_config(args: argparse.Namespace) -> tuple[TrainConfig, str | None]:
    """Defaults < preset < --config file < flags < --set. Returns (config, preset name used)."""
    from ..config import TrainConfig, explicitly_set, split_env_id
    from ..environments.ids import with_module
    from ..environments.lookup import registered_preset, resolve_variant
    from ..presets import DEFAULTS, load_preset, preset_for_env

    env_id: str | None = args.env_id
    env_kwargs: dict[str, Any] = {}
    if args.action_space is not None and env_id:
        # the variant the environment declares: kwargs (continuous=True) and/or another id
        variant = resolve_variant(env_id, args.action_space)
        env_id, env_kwargs = with_module(env_id, variant.env_id), dict(variant.kwargs)
    preset = args.preset
    if preset is None and args.config is None and env_id:
        preset = registered_preset(env_id, args.action_space) or preset_for_env(env_id, env_kwargs)
    if preset == DEFAULTS:
        preset = None  # the library's defaults, even where a preset exists for ENV_ID
    config = load_preset(preset) if preset else TrainConfig()
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
    overrides: dict[str, Any] = {}
    if env_id:
        module, bare = split_env_id(env_id)
        preset_module, preset_bare = split_env_id(config.env.id)
        generic = preset is not None and not explicitly_set(config, "env.id")  # atari, mujoco: any task
        if bare != preset_bare and not generic:  # another environment: its arguments are not for this one
            overrides["env.kwargs"] = {}
            overrides["env.wrappers"] = []
        elif module is None and preset_module is not None:
            env_id = config.env.id  # the preset says which module registers it
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


def preflight_check(
    config: TrainConfig, action_space: str | None = None, modules: Sequence[str] = ()
) -> bool:
    """The quick checker before training a user environment; False (after printing why) on errors.
    ``modules``: the ``--env-module`` values, which the suggested ``envs check`` needs too; the
    suggested command checks the same environment: its ``env.kwargs``, wrappers and time limit."""
    check = f"ppo-envkit envs check {quoted(config.env.id)}{env_set_flags(config)}{env_module_flags(modules)}"
    from ..environments.lookup import current_variant, env_info, is_user_env

    env_id = config.env.id
    if not is_user_env(env_id):
        return True
    from ..environments.checker import check_environment

    expect = action_space or (
        current_variant(env_id, config.env.kwargs) if env_info(env_id).variants else None
    )
    report = check_environment(
        env_id,
        config.env.kwargs,
        quick=True,
        seed=config.run.seed,
        max_episode_steps=config.env.max_episode_steps,
        expect=expect,
        wrappers=config.env.wrappers,
    )
    if report.errors:
        print_report(report, to=console)
        console.print(f"[red]not training[/]: fix the errors above (full check: {escape(check)})")
        return False
    if report.warnings:
        n = len(report.warnings)
        console.print(
            f"[yellow]{n} warning{'s' * (n > 1)}[/] from the environment check (details: {escape(check)})"
        )
    return True


def env_set_flags(config: TrainConfig) -> str:
    """`` --set KEY=VALUE`` for the environment settings that ``envs check`` takes (``env.kwargs``,
    ``env.wrappers``, ``env.max_episode_steps``), where they differ from the defaults."""
    import yaml

    def flow(value: Any) -> str:
        return (
            yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        )

    def wrapper(spec: Any) -> str:  # module:Class, or {module:Class: {keyword: value}}
        return f"{{{spec.name}: {flow(spec.kwargs)}}}" if spec.kwargs else spec.name

    env = config.env
    flags = [f"env.kwargs.{key}={flow(value)}" for key, value in env.kwargs.items()]
    if env.wrappers:
        flags.append(f"env.wrappers=[{', '.join(wrapper(w) for w in env.wrappers)}]")
    if env.max_episode_steps is not None:
        flags.append(f"env.max_episode_steps={env.max_episode_steps}")
    return "".join(f" --set {quoted(flag)}" for flag in flags)


def load_callbacks(targets: Sequence[str]) -> Any:
    """The ``--callback`` objects (None without any): each ``MODULE:NAME`` names a Callback
    subclass or a function, called with no arguments, that gives a Callback."""
    if not targets:
        return None
    from ..algo.callbacks import Callback, CallbackList
    from ..environments.discovery import import_named

    made = []
    for target in targets:
        named = import_named(target)
        if not callable(named):
            raise ConfigError(f"--callback {target}: {type(named).__name__} is not a class or a function")
        callback = named()
        if not isinstance(callback, Callback):
            raise ConfigError(
                f"--callback {target}: gave a {type(callback).__name__}, not a ppo_envkit.Callback "
                "(subclass ppo_envkit.Callback)"
            )
        made.append(callback)
    return made[0] if len(made) == 1 else CallbackList(made)


def _default_run_dir(env_id: str) -> str:
    from ..config import split_env_id

    stamp = time.strftime("%Y%m%d-%H%M%S")
    return str(Path("runs") / f"{split_env_id(env_id)[1].replace('/', '_')}-{stamp}")


def stop_like_ctrl_c() -> Callable[[], None]:
    """SIGTERM (``kill``, ``docker stop``, a scheduler preempting the job), SIGHUP (a closed
    terminal, a dropped SSH session) and SIGQUIT (Ctrl-\\) stop training the way Ctrl-C does:
    the last good checkpoint is saved and the resume command printed. The first of these
    signals (Ctrl-C included) makes the process ignore the others from then on, so that a
    second one cannot break the save (or the shutdown after it). Ctrl-C keeps Python's handling
    where it is ignored (jobs started in the background). Worker processes ignore all of them
    (:func:`~ppo_envkit.parallel.lifeline.ignore_terminal_signals`).

    Returns a function that puts the previous handlers back, unless a signal came (called when
    a command ends inside a longer-lived process, such as a test or a notebook)."""
    from ..parallel.lifeline import TERMINAL_SIGNALS

    received: list[int] = []

    def interrupt(signum: int, _frame: Any) -> None:
        received.append(signum)
        for other in TERMINAL_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {}
    for signum in TERMINAL_SIGNALS:
        if signum == signal.SIGINT and signal.getsignal(signum) is not signal.default_int_handler:
            continue  # ignored (a background job) or the user's own handler
        previous[signum] = signal.signal(signum, interrupt)

    def restore() -> None:
        if not received:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    return restore


def say(*lines: str) -> None:
    """Print after training stopped; the terminal may be gone (SIGHUP), which loses nothing."""
    try:
        for line in lines:
            console.print(line)
    except OSError:
        pass


def run(args: argparse.Namespace) -> int:
    from ..agent import PPO
    from ..errors import TrainingInterrupted
    from ..io.runlog import RunLogger
    from ..parallel import launched_by_torchrun, local_processes
    from ..parallel.torchrun import shutdown, world

    rank, world_size = world()  # under torchrun, rank 0 alone logs and saves
    restore_signals = stop_like_ctrl_c()
    console.quiet = rank != 0
    load_user_envs(args.env_module)
    callback = load_callbacks(args.callback)
    modules = env_module_flags(args.env_module)  # the commands suggested below need them too
    if args.resume:
        from .resume import resume_run

        agent, run_dir = resume_run(args)
    else:
        if not args.env_id:
            raise ConfigError("train needs ENV_ID (or --resume RUN_DIR)")
        config, preset = resolve_train_config(args)
        from ..environments.wrappers import check_wrappers

        check_wrappers(config.env.wrappers)  # a bad name or argument: one line, before anything is built
        # the quick checker, for user environments
        if not preflight_check(config, args.action_space, args.env_module):
            return 1
        if config.run.run_dir is None:
            config = config.with_overrides({"run.run_dir": _default_run_dir(config.env.id)})
        run_dir = config.run.run_dir
        agent = PPO(config=config)
        agent.record_provenance(
            command="ppo-envkit " + " ".join(shlex.quote(a) for a in args.argv),
            preset=preset,
            seed=config.run.seed,
        )
        used = (
            f"preset '{preset}'"
            if preset
            else ("config " + args.config if args.config else "default settings")
        )
        console.print(f"training {config.env.id} with {used}; run directory: {quoted(run_dir)}")
        if agent.image_defaults:  # the policy sees images and these keys were left unset
            cfg = agent.config.model_dump()
            chosen = ", ".join(f"{k}={cfg[k.split('.')[0]][k.split('.')[1]]}" for k in agent.image_defaults)
            console.print(f"image observations: the image defaults {chosen} (docs/defaults.md)")
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
    if launched_by_torchrun() and rank == 0:
        console.print(f"distributed: {world_size} ranks, {world_size * cfg.env.num_envs} environment copies")
    elif local_processes(cfg) > 1:
        console.print(
            f"{cfg.run.processes} training processes, {agent.local_num_envs} of the "
            f"{cfg.env.num_envs} environment copies each"
        )
    started = time.perf_counter()
    try:
        if args.resume:
            agent.train(callback=callback, logger=logger, target_timesteps=args.total_timesteps)
        else:
            agent.learn(cfg.run.total_timesteps, callback=callback, logger=logger)
    except TrainingInterrupted as exc:
        say(
            f"[yellow]interrupted[/]: checkpoint saved to {quoted(exc.checkpoint)}",
            f"continue with: ppo-envkit train --resume {quoted(run_dir)}{modules}",
        )
        return 130
    finally:
        agent.close()
        if logger is not None:
            logger.close()  # unlocks the run directory (a killed run leaves its PID in the lock)
        shutdown()
        restore_signals()
    if world_size > 1 and rank != 0:
        exit_now(0)
    wall = time.perf_counter() - started
    ret = agent.last_metrics.get("episode_return", float("nan"))
    from ..io.runlog import return_decimals

    recent = (  # nan: no training episode has ended yet (episodes longer than the run)
        f"recent training return {ret:.{return_decimals(ret)}f}"
        if math.isfinite(ret)
        else "no training episode ended yet"
    )
    console.print(
        f"done: {agent.num_timesteps} steps in {wall:.0f}s; {recent}; "
        f"agent saved to {quoted(Path(run_dir) / 'agent')}"
    )
    if "eval_return" in agent.last_metrics:
        m = agent.last_metrics
        stop_at = cfg.run.stop_at
        reached = (
            " (reached run.stop_at)"
            if stop_at is not None and agent.num_timesteps < agent.target_timesteps
            else ""
        )
        from ..io.runlog import return_decimals

        places = return_decimals(m["eval_return"], m["eval_return_std"])
        episodes = int(m.get("eval_episodes", cfg.run.eval_episodes))
        mode = (
            " stochastic"
            if m.get("eval_stochastic")
            else (" deterministic" if "eval_stochastic" in m else "")
        )
        console.print(
            f"final evaluation: mean return {m['eval_return']:.{places}f} +- "
            f"{m['eval_return_std']:.{places}f} over {episodes}{mode} episodes{reached}; "
            f"best agent: {quoted(Path(run_dir) / 'best')}"
        )
        from ..algo.evaluator import comparison_line

        record = agent.state.eval_mode or {}
        line = comparison_line(record, places)
        if line is not None and record.get("mode") == "stochastic":  # deterministic is the usual mode
            console.print(
                f"note: {line}; the agent records it: eval uses {agent.state.eval_mode['mode']} play"
            )
    if agent.trained_by_self_play:  # a turn-based game: rates against a player, and a human
        games = "--opponent random --episodes 500"
        console.print(f"evaluate: ppo-envkit eval {quoted(run_dir)} {games}{modules}")
        console.print(f"play it:   ppo-envkit play {quoted(run_dir)}{modules}")
    else:
        console.print(f"evaluate: ppo-envkit eval {quoted(run_dir)} --episodes 100{modules}")
    console.print(f"watch it:  ppo-envkit replay {quoted(run_dir)}{modules}")
    if world_size > 1:
        exit_now(0)
    return 0
