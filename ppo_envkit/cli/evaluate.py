"""``ppo-envkit eval``: the mean return of an agent over whole episodes."""

from __future__ import annotations

import argparse
import json
import math
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


def return_decimals(*values: float) -> int:
    """Decimals that show the smallest non-zero magnitude among ``values`` to three significant
    digits (2 at least, 6 at most): returns of 0.955 and 0.99 are not both printed as 1.0, and a
    spread of 0.004 is not printed as 0.00."""
    magnitudes = [abs(v) for v in values if v and math.isfinite(v)]
    if not magnitudes:
        return 2
    return min(6, max(2, 2 - math.floor(math.log10(min(magnitudes)))))


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
        numbers = (result.mean_return, result.std_return, result.min_return, result.max_return)
        mean, std, low, high = (f"{v:.{return_decimals(*numbers)}f}" for v in numbers)
        print(
            f"{result.env_id}: mean return {mean} +- {std} over {result.episodes} {mode} episodes "
            f"(min {low}, max {high}, mean length {result.mean_length:.0f})",
            flush=True,
        )
        if result.metrics:  # the environment's own (info["metrics"], run.info_keywords)
            print("  " + ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items()), flush=True)
    if args.write_result:  # after printing: a failed write (a full disk) loses no computed result
        from ..io.checkpoint import update_agent_meta

        summary = {k: v for k, v in result.to_dict().items() if k not in ("returns", "lengths")}
        summary["command"] = f"ppo-envkit eval AGENT --episodes {args.episodes} --seed {args.seed}" + (
            " --stochastic" if args.stochastic else ""
        )
        update_agent_meta(agent.path, "evaluation", summary)
    return 0
