"""``ppo-envkit export``: an agent as one ONNX file, preprocessing included; ``--check`` runs
it in onnxruntime against the agent's own actions in its environment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import add_env_module_arg, console, load_user_envs, require_agent_env

NAME = "export"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help='write an agent as an ONNX model (needs: pip install -e ".[export]")',
        description="Write the agent's deterministic policy, from raw observation to the action the "
        "environment receives (flattening and normalization included), as one ONNX graph.",
    )
    p.add_argument("agent", metavar="AGENT_OR_RUN_DIR")
    p.add_argument(
        "-o", "--output", metavar="MODEL.onnx", help="output file (default: ./NAME.onnx, NAME the agent's)"
    )
    p.add_argument(
        "--distribution",
        action="store_true",
        help="also output the action distribution (probs, or mean and std)",
    )
    p.add_argument("--value", action="store_true", help="also output the critic's value")
    p.add_argument(
        "--check",
        action="store_true",
        help="run the model in onnxruntime on observations from the environment and compare with "
        "the agent's actions",
    )
    p.add_argument(
        "--check-steps", type=int, default=1000, help="observations --check records (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the episodes --check plays (default 0)")
    add_env_module_arg(p)


def run(args: argparse.Namespace) -> int:
    from ..agent import PPO

    if args.check_steps < 1:
        raise ConfigError(f"--check-steps must be >= 1, got {args.check_steps}")
    agent = PPO.load(args.agent)
    output = Path(args.output) if args.output else Path(f"{Path(args.agent).resolve().name}.onnx")
    if output.suffix.lower() != ".onnx":
        raise ConfigError(f"-o {output}: the output is an ONNX model; give a file name ending in .onnx")
    if args.check:  # before writing anything: the environment must be there to check
        load_user_envs(args.env_module)
        require_agent_env(agent)
    path = agent.export_onnx(output, distribution=args.distribution, value=args.value)
    console.print(f"wrote {path}", highlight=False)
    if args.check:
        result = agent.check_onnx(path, steps=args.check_steps, seed=args.seed)
        console.print(f"[green]check passed[/]: {result.summary()}", highlight=False)
    return 0
