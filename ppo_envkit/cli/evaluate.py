"""``ppo-envkit eval``: the mean return of an agent over whole episodes."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from .common import add_env_module_arg, load_user_envs, require_agent_env

NAME = "eval"


def add_parser(sub: Any) -> None:
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


def run(args: argparse.Namespace) -> int:
    from ..agent import PPO

    load_user_envs(args.env_module)
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}")
    agent = PPO.load(args.agent)
    require_agent_env(agent)
    result = agent.evaluate(
        args.episodes, deterministic=not args.stochastic, seed=args.seed, num_envs=args.num_envs
    )
    if args.json:
        out = result.to_dict()
        out["agent"] = str(agent.path)
        out["num_timesteps"] = agent.num_timesteps
        print(json.dumps(out), flush=True)
    else:
        mode = "stochastic" if args.stochastic else "deterministic"
        print(
            f"{result.env_id}: mean return {result.mean_return:.2f} +- {result.std_return:.2f} over "
            f"{result.episodes} {mode} episodes (min {result.min_return:.1f}, max {result.max_return:.1f}, "
            f"mean length {result.mean_length:.0f})",
            flush=True,
        )
    if args.write_result:  # after printing: a failed write (a full disk) loses no computed result
        from ..io.checkpoint import update_agent_meta

        summary = {k: v for k, v in result.to_dict().items() if k not in ("returns", "lengths")}
        summary["command"] = f"ppo-envkit eval AGENT --episodes {args.episodes} --seed {args.seed}" + (
            " --stochastic" if args.stochastic else ""
        )
        update_agent_meta(agent.path, "evaluation", summary)
    return 0
