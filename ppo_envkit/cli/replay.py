"""``ppo-envkit replay``: watch an agent in the pygame viewer, or record it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import add_env_module_arg, add_mode_args, console, load_user_envs, require_agent_env

NAME = "replay"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="watch an agent in a pygame window (keys: F1), or record it",
        description="Watch an agent act in a pygame window with an overlay of what it thinks, "
        "or record the same to a video. Press F1 (or ?) in the window for the keys.",
    )
    p.add_argument("agent", metavar="AGENT_OR_RUN_DIR", help="an agent directory or a run directory")
    p.add_argument(
        "--episodes", type=int, help="stop after N episodes (default: until you quit; 1 with --headless)"
    )
    p.add_argument("--fps", type=float, help="environment steps per second (default: the env's render_fps)")
    p.add_argument("--record", metavar="FILE", help="record to FILE.mp4 or FILE.gif (with the overlay)")
    p.add_argument("--headless", action="store_true", help="no window: record as fast as possible")
    p.add_argument(
        "--checkpoint",
        metavar="NAME_OR_PATH",
        help="a checkpoint of the run instead of its final agent: a name from RUN_DIR/checkpoints, "
        "a step count, 'first', 'latest', or a path",
    )
    p.add_argument(
        "--compare",
        metavar="OTHER",
        help="play a second agent side by side on the same seeds (an agent or run directory, "
        "or a checkpoint name of this run)",
    )
    add_mode_args(
        p,
        stochastic="start with sampled actions (default: the mode the agent records, as eval; key D toggles)",
        deterministic="start with the most likely actions (default: the mode the agent records; "
        "key D toggles)",
    )
    p.add_argument("--seed", type=int, default=0, help="episode k resets with seed S + k (default 0)")
    p.add_argument("--no-hud", action="store_true", help="start with the overlay hidden (key H toggles)")
    p.add_argument(
        "--screenshot-dir", default=".", metavar="DIR", help="where key S saves screenshots (default .)"
    )
    add_env_module_arg(p)


def resolve_checkpoint(run_dir: str | Path, name: str) -> Path:
    """A checkpoint of ``run_dir`` by directory name, step count, ``first``/``latest``, or a path."""
    from ..errors import AgentFileError
    from ..io.checkpoint import checkpoint_dirs, resolve_agent_path

    candidate = Path(name)
    if candidate.exists():
        return resolve_agent_path(candidate)
    run = Path(run_dir)
    if not (run / "checkpoints").is_dir() and (run.parent / "checkpoints").is_dir():
        run = run.parent  # given RUN_DIR/agent
    found = checkpoint_dirs(run)
    if not found:
        raise AgentFileError(f"--checkpoint {name}: {run} has no checkpoints (expected {run}/checkpoints/)")
    if name in ("first", "earliest"):
        return found[0]
    if name in ("latest", "last"):
        return found[-1]
    for path in found:
        if path.name == name or (name.isdigit() and path.name == f"step_{int(name):010d}"):
            return path
    names = ", ".join(p.name for p in found)
    raise AgentFileError(f"--checkpoint {name}: no such checkpoint in {run}; available: {names}")


def _resolve_compare(main: str, other: str) -> Path:
    from ..io.checkpoint import resolve_agent_path

    if Path(other).exists():
        return resolve_agent_path(other)
    return resolve_checkpoint(main, other)


def start_mode(chosen: str | None, agent: Any) -> str:
    """The mode replay starts in: the one chosen on the command line, else the one the agent
    records for its evaluations (as ``eval`` plays), deterministic when it records none."""
    from ..state import evaluation_mode

    return chosen or evaluation_mode(agent.state)


def run(args: argparse.Namespace) -> int:
    from ..agent import PPO
    from ..viewer import Viewer

    if args.headless and not args.record:
        raise ConfigError("--headless needs --record FILE.mp4 or FILE.gif (there is no window to watch)")
    if args.episodes is not None and args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    if args.fps is not None and not args.fps > 0:
        raise ConfigError(f"--fps must be > 0, got {args.fps}")
    if args.record:
        from ..viewer.recorder import check_record_path

        check_record_path(args.record)
    # pygame's audio start-up can print warnings on machines without sound; the viewer is silent.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    load_user_envs(args.env_module)
    agent = PPO.load(resolve_checkpoint(args.agent, args.checkpoint) if args.checkpoint else args.agent)
    compare = PPO.load(_resolve_compare(args.agent, args.compare)) if args.compare else None
    for a in (agent, compare):
        if a is not None:
            require_agent_env(a)
    viewer = Viewer(
        agent,
        compare=compare,
        episodes=args.episodes,
        fps=args.fps,
        seed=args.seed,
        deterministic=start_mode(args.mode, agent) == "deterministic",
        record=args.record,
        headless=args.headless,
        hud=not args.no_hud,
        screenshot_dir=args.screenshot_dir,
        log=lambda message: console.print(message, highlight=False, markup=False),
    )
    result = viewer.run()  # a ViewerError is reported in one line by the command line's handler
    for label, returns in zip(result.labels, result.returns, strict=True):
        if returns:
            mean = sum(returns) / len(returns)
            console.print(f"{label}: mean return {mean:.1f} over {len(returns)} episodes", markup=False)
    return 0
