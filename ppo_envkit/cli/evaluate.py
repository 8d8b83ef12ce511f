"""``ppo-envkit eval``: the mean return of an agent over whole episodes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .common import add_env_module_arg, add_mode_args, load_user_envs, require_agent_env

NAME = "eval"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate an agent over whole episodes")
    p.add_argument("agent", metavar="AGENT_OR_RUN_DIR")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="number of episodes (default 10; with --opponent: games per seat, default 100)",
    )
    p.add_argument(
        "--opponent",
        default=None,
        metavar="random|pool|MODULE:FUNCTION|AGENT_DIR",
        help="turn-based games: win/draw/loss rates from each seat against a random legal player, the run's "
        "snapshot pool, a callable opponent(observation, action_mask, rng) or another agent",
    )
    add_mode_args(
        p,
        stochastic="sample actions (default: the mode the agent records, deterministic if none)",
        deterministic="take the most likely action (default: the mode the agent records)",
    )
    p.add_argument(
        "--no-compare",
        action="store_true",
        help="play only the chosen mode (by default the other mode plays the same episodes too, and a "
        "line says when it scores clearly better)",
    )
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


def run(args: argparse.Namespace) -> int:
    from ..agent import PPO
    from ..algo.evaluator import compare_modes, comparison_line
    from ..io.runlog import return_decimals
    from ..state import evaluation_mode

    load_user_envs(args.env_module)
    if args.opponent is not None:
        return _games(args)
    args.episodes = 10 if args.episodes is None else args.episodes
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    agent = PPO.load(args.agent)
    require_agent_env(agent)
    recorded = evaluation_mode(agent.state)
    mode = args.mode or recorded
    result = agent.evaluate(
        args.episodes, deterministic=mode == "deterministic", seed=args.seed, num_envs=args.num_envs
    )
    comparison = None
    if not args.no_compare:
        other = agent.evaluate(
            args.episodes, deterministic=mode != "deterministic", seed=args.seed, num_envs=args.num_envs
        )
        comparison = compare_modes(result, other)
    numbers = (result.mean_return, result.std_return, result.min_return, result.max_return)
    places = return_decimals(*numbers)
    if args.json:
        out = result.to_dict()
        out["mode"] = mode
        out["agent_mode"] = recorded
        out["agent"] = str(agent.path)
        out["num_timesteps"] = agent.num_timesteps
        if comparison is not None:
            out["comparison"] = comparison
        print(json.dumps(out), flush=True)
    else:
        mean, std, low, high = (f"{v:.{places}f}" for v in numbers)
        why = " (the agent's mode)" if args.mode is None and recorded == "stochastic" else ""
        print(
            f"{result.env_id}: mean return {mean} +- {std} over {result.episodes} {mode} episodes{why} "
            f"(min {low}, max {high}, mean length {result.mean_length:.0f})",
            flush=True,
        )
        if result.metrics:  # the environment's own (info["metrics"], run.info_keywords)
            print("  " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()), flush=True)
        line = None if comparison is None else comparison_line(comparison, places)
        if line is not None and comparison is not None and comparison["better"] != mode:
            flag = f"--{comparison['better']}"
            print(f"note: {line}; evaluate with {flag}", flush=True)
    if args.write_result:  # after printing: a failed write (a full disk) loses no computed result
        from ..io.checkpoint import update_agent_meta

        summary = {k: v for k, v in result.to_dict().items() if k not in ("returns", "lengths")}
        summary["command"] = f"ppo-envkit eval AGENT --episodes {args.episodes} --seed {args.seed} --{mode}"
        update_agent_meta(agent.path, "evaluation", summary)
    return 0


def _games(args: argparse.Namespace) -> int:
    """``eval --opponent``: a turn-based game's outcomes from each seat."""
    from pathlib import Path

    from ..agent import PPO

    games = 100 if args.episodes is None else args.episodes
    if games < 1:
        raise ConfigError(f"--episodes must be >= 1, got {games}")
    agent = PPO.load(args.agent)
    require_agent_env(agent)
    run_dir = Path(args.agent) if not (Path(args.agent) / "agent.json").exists() else None
    result = agent.play(args.opponent, games, seed=args.seed, run_dir=run_dir)
    if args.json:
        print(
            json.dumps({**result.to_dict(), "agent": str(agent.path), "num_timesteps": agent.num_timesteps})
        )
    else:
        print(f"{agent.config.env.id}: {result.line()}", flush=True)
    return 0
