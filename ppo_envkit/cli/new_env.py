"""``ppo-envkit new-env NAME``: scaffold an environment in ./envs, its test and a preset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.markup import escape

from .common import console

NAME = "new-env"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("new-env", help="scaffold an environment in ./envs, its test and a preset")
    p.add_argument("name", help="name of the environment, e.g. GridWorld (id GridWorld-v0)")
    p.add_argument("--dir", default=".", help="project folder to write into (default: the current one)")


def run(args: argparse.Namespace) -> int:
    from ..environments.scaffold import scaffold

    created = scaffold(args.name, args.dir)
    for path in created.files:
        console.print(f"created {escape(str(path))}")
    lines = [
        f"ppo-envkit envs check {created.env_id}",
        f"ppo-envkit train {created.env_id}",
        f"ppo-envkit train {created.env_id} --action-space continuous",
        f"python -m pytest tests/{created.test_file.name}",
    ]
    where = "" if Path(args.dir).resolve() == Path.cwd() else f", from {args.dir}"
    console.print(f"next (./envs is found automatically{where}):")
    for line in lines:
        console.print(f"  {escape(line)}")
    return 0
