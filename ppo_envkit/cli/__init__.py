"""The ``ppo-envkit`` command (also ``python -m ppo_envkit``): one module per command.

Each command module has ``NAME``, ``add_parser(subparsers)`` and ``run(args) -> exit
status``, and imports what it needs (torch, pygame) only inside ``run``, so that every
command starts fast. A new command is a new module added to :data:`COMMANDS`.

Known failures (bad settings, unknown environments, unreadable agents, non-finite
values) print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from ..errors import ConfigError, brief
from . import bench, envs, evaluate, export, new_env, play, plot, replay, train, tune
from .common import console, debugging, known_errors

#: The commands, in the order ``--help`` lists them.
COMMANDS = {
    module.NAME: module
    for module in (train, evaluate, replay, play, export, plot, tune, envs, new_env, bench)
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppo-envkit", description="PPO for your own Gymnasium environments."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def _one_line_warnings() -> None:
    """Warnings of ours that are about the user's files (a preset that is not one) print as one
    ``warning: ...`` line, not with Python's file, line and source line."""
    from ..presets import PresetWarning

    show = warnings.showwarning

    def showwarning(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, PresetWarning):
            console.print(f"[yellow]warning[/]: {escape(str(message))}", soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _one_line_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed, recorded in agents' provenance
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    except Exception as exc:
        if debugging(args) or not isinstance(exc, known_errors()):
            raise
        kind = "invalid settings" if isinstance(exc, ConfigError) else "error"
        text = brief(exc, limit=None) or type(exc).__name__  # one line, whatever the message
        console.print(f"[red]{kind}[/]: {escape(text)}", soft_wrap=True)
        return 2 if isinstance(exc, ConfigError) else 1


__all__ = ["COMMANDS", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
