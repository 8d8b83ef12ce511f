"""What several commands share: the console, common arguments, finding user environments,
and printing checker reports. Imports stay light (no torch) so that every command starts fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from ..errors import quoted

if TYPE_CHECKING:
    from ..environments.findings import CheckReport

#: Messages and progress go to stderr; results (tables, JSON, reports) to stdout.
console = Console(stderr=True, highlight=False, soft_wrap=True)

_STYLE = {"error": "bold red", "warning": "yellow"}


def out() -> Console:
    """Results (tables, reports) go to stdout, unwrapped when piped; messages go to stderr."""
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def env_module_flags(modules: Sequence[str]) -> str:
    """`` --env-module M`` for each module a command was given (shell-quoted): what the commands
    a message suggests need in order to find the same environments, pasted as printed."""
    return "".join(f" --env-module {quoted(module)}" for module in modules)


def add_env_module_arg(p: argparse.ArgumentParser) -> None:
    """``--env-module``, shared by every command that builds environments."""
    p.add_argument(
        "--env-module",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="import a module or .py file that registers environments (repeatable)",
    )


def add_mode_args(p: argparse.ArgumentParser, stochastic: str, deterministic: str) -> None:
    """``--stochastic`` / ``--deterministic`` (one at most), in ``args.mode``: None when neither
    is given (then the mode the agent records applies)."""
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--stochastic", dest="mode", action="store_const", const="stochastic", help=stochastic)
    mode.add_argument(
        "--deterministic", dest="mode", action="store_const", const="deterministic", help=deterministic
    )


def add_set_arg(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable), collected in ``args.overrides``."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def debugging(args: argparse.Namespace) -> bool:
    """``--debug`` or ``PPO_ENVKIT_DEBUG``: show tracebacks."""
    return bool(getattr(args, "debug", False) or os.environ.get("PPO_ENVKIT_DEBUG"))


def exit_now(code: int) -> None:
    """Exit a torchrun rank without running C++ static destructors.

    Everything is saved and closed by now; under load, tearing down gloo's threads at
    interpreter exit sometimes ends in ``std::terminate`` (SIGABRT), which torchrun
    would report as a failed run.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def load_user_envs(modules: Sequence[str] = ()) -> None:
    """Import ``--env-module`` targets (failures are errors), then ``./envs`` and entry points
    (failures are printed as warnings, so that one broken file does not stop other work)."""
    from ..environments.discovery import discover_envs, load_env_module

    for module in modules:
        load_env_module(module)
    for problem in discover_envs():
        console.print(f"[yellow]warning[/]: {escape(problem.message)} (skipped)")


def require_agent_env(agent: Any) -> None:
    """An agent's environment must be registered here (``module:id`` imports its module, by name),
    and its ``env.wrappers`` importable; say which module registered it at training."""
    import gymnasium as gym

    from ..environments.ids import registered_id, split_env_id
    from ..environments.registry import EnvNotFoundError, register_factory
    from ..environments.wrappers import check_wrappers

    env_id = agent.config.env.id
    check_wrappers(agent.config.env.wrappers)  # names of installed wrapper classes, or one line
    if registered_id(env_id) in gym.registry:
        return
    module, bare = split_env_id(env_id)
    if module is not None and register_factory(module, bare) is not None:  # module:factory ids
        return
    modules: list[str] = []
    try:
        meta = json.loads((Path(agent.path) / "agent.json").read_text())
        modules = list(meta.get("env", {}).get("modules") or [])
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    hint = (
        "it was registered by "
        + ", ".join(modules)
        + " when training: pass "
        + " ".join(f"--env-module {m}" for m in modules)
        if modules
        else "pass --env-module with the file that registers it, or put that file in ./envs/"
    )
    raise EnvNotFoundError(f"this agent acts in '{env_id}', which is not registered here; {hint}")


def print_report(report: CheckReport, details: bool = False, to: Console | None = None) -> None:
    """A :class:`~ppo_envkit.environments.findings.CheckReport` with coloured severities."""
    to = to or out()
    style = "bold red" if report.errors else ("yellow" if report.warnings else "green")
    to.print(f"[{style}]{escape(report.summary())}[/]")
    for note in report.notes:
        to.print(f"  [dim]note[/]: {escape(note)}")
    for f in report.errors + report.warnings:
        label = "" if f.source == "ppo-envkit" else f" \\[{f.source}]"
        again = f" ({f.repeats} more time{'s' * (f.repeats > 1)})" if f.repeats else ""
        to.print(f"  [{_STYLE[f.severity]}]{f.severity}{label}[/]: {escape(f.what + again)}")
        to.print(f"    where: {escape(f.where)}")
        to.print(f"    fix:   {escape(f.fix)}")
        if details and f.details:
            to.print(escape(f.details.rstrip()), style="dim")


def known_errors() -> tuple[type[BaseException], ...]:
    """Exceptions reported in one line (without --debug)."""
    from gymnasium.error import Error as GymError

    from ..environments.registry import EnvNotFoundError
    from ..errors import (
        AgentFileError,
        ConfigError,
        EnvironmentFailed,
        EnvWorkerError,
        NonFiniteError,
        RunDirError,
        StorageError,
        ViewerError,
    )
    from ..parallel.shm import RankFailed
    from ..spaces import UnsupportedSpaceError

    return (
        ConfigError,
        AgentFileError,
        NonFiniteError,
        EnvironmentFailed,
        EnvWorkerError,
        RankFailed,
        RunDirError,
        StorageError,
        ViewerError,
        EnvNotFoundError,
        UnsupportedSpaceError,
        GymError,
        OSError,
        ValueError,
    )


__all__ = [
    "add_env_module_arg",
    "add_set_arg",
    "console",
    "debugging",
    "exit_now",
    "known_errors",
    "load_user_envs",
    "out",
    "print_report",
    "require_agent_env",
]
