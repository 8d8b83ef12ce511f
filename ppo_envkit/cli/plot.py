"""``ppo-envkit plot``: learning curves of one or more runs as a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import console

NAME = "plot"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="learning curves of one or more runs as a PNG")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with progress.csv)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE.png",
        help="output file (default: RUN_DIR/curves.png for one run, ./curves.png for several)",
    )
    p.add_argument("--title", help="figure title")


def run(args: argparse.Namespace) -> int:
    from ..io.plot import default_output, plot_runs

    output = Path(args.output) if args.output else default_output(args.run_dirs)
    if output.suffix.lower() != ".png":
        raise ConfigError(f"-o {output}: the output is a PNG; give a file name ending in .png")
    path = plot_runs(args.run_dirs, output, title=args.title)
    console.print(f"wrote {path}", highlight=False)
    return 0
