"""``ppo-envkit envs list`` and ``envs check``: registered environments, and the checker's findings."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from ..errors import ConfigError
from .common import add_env_module_arg, add_set_arg, load_user_envs, out, print_report

if TYPE_CHECKING:  # imported where used: building the parser of every command stays cheap
    import gymnasium as gym

    from ..environments.registry import EnvInfo

NAME = "envs"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("envs", help="list registered environments, or check one")
    envs_sub = p.add_subparsers(dest="envs_command", metavar="{list,check}")
    lp = envs_sub.add_parser("list", help="registered environments, user ones first")
    lp.add_argument("pattern", nargs="?", help="only ids containing this text (case-insensitive)")
    lp.add_argument("--user", action="store_true", help="only user environments")
    lp.add_argument(
        "--spaces", action="store_true", help="also build built-in environments to show their spaces (slower)"
    )
    add_env_module_arg(lp)
    cp = envs_sub.add_parser("check", help="run the environment checker; exit status 1 on errors")
    cp.add_argument("env_id", nargs="?", help="environment id (default: every user environment)")
    cp.add_argument(
        "--action-space",
        choices=["discrete", "continuous"],
        help="check only this variant (default: the environment and each variant it declares)",
    )
    cp.add_argument("--steps", type=int, default=None, help="random steps to take (default 1000)")
    cp.add_argument("--seed", type=int, default=0, help="seed of resets and random actions")
    cp.add_argument("--quick", action="store_true", help="only the quick part that train runs")
    add_set_arg(
        cp,
        "check the environment as these settings build it: env.kwargs.NAME=VALUE, env.wrappers=[...], "
        "env.max_episode_steps=N (repeatable)",
    )
    add_env_module_arg(cp)


def _preset_text(info: EnvInfo, with_presets: set[str]) -> str:
    """The preset ``train`` would pick (per variant: ``discrete|continuous``)."""
    from ..presets import preset_for_env

    if isinstance(info.preset, str):
        return info.preset
    if isinstance(info.preset, dict):
        return "|".join(info.preset.get(k, "-") for k in ("discrete", "continuous"))
    if info.id not in with_presets:
        return ""
    if info.variants:
        return "|".join(preset_for_env(v.env_id, v.kwargs) or "-" for v in info.variants.values())
    return preset_for_env(info.id, {}) or ""


def _ids_with_presets() -> set[str]:
    from ..presets import preset_env, preset_paths

    envs = (preset_env(path) for path in preset_paths().values())
    from ..config import split_env_id

    return {split_env_id(str(env.get("id")))[1] for env in envs if env is not None}


def _short_space(space: gym.Space) -> str:
    """A compact form for tables: ``Box(-1..1, (2,))``, ``Dict(courier, loaded)``."""
    import numpy as np
    from gymnasium import spaces

    from ..spaces import describe_space

    if isinstance(space, spaces.Box):
        low, high = np.unique(space.low), np.unique(space.high)
        bounds = f" in {low[0]:g}..{high[0]:g}" if len(low) == 1 and len(high) == 1 else ""
        return f"Box{space.shape}{bounds}"
    if isinstance(space, spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, spaces.Dict):
        return f"Dict({', '.join(space.spaces)})"
    if isinstance(space, spaces.Tuple):
        return f"Tuple({', '.join(_short_space(s) for s in space.spaces)})"
    return describe_space(space)


def _spaces_text(info: EnvInfo) -> tuple[str, str]:
    import gymnasium as gym

    from ..environments.lookup import env_spaces

    try:
        obs_space, act_space = env_spaces(info.id)
    except Exception as exc:  # missing optional dependencies, broken user code
        missing = isinstance(exc, ImportError | gym.error.DependencyNotInstalled)
        reason = "missing dependency" if missing else escape(type(exc).__name__)
        return "[dim]unavailable[/]", f"[dim]{reason}[/]"
    return escape(_short_space(act_space)), escape(_short_space(obs_space))


def _agents_text(info: EnvInfo) -> tuple[str, str, str] | None:
    """(actions, observations, agents) of a PettingZoo environment, one agent's spaces
    (``+ mask`` under the dict convention); None for a Gymnasium one."""
    import gymnasium as gym

    from ..environments.multiagent_check import summarize_agents

    try:
        summary = summarize_agents(info.id)
    except Exception as exc:  # missing optional dependencies, broken user code: _spaces_text says
        missing = isinstance(exc, ImportError | gym.error.DependencyNotInstalled)
        return None if not missing else ("[dim]unavailable[/]", "[dim]missing dependency[/]", "")
    if summary is None:
        return None
    obs = _short_space(summary.observation_space) + (" + mask" if summary.masked else "")
    return escape(_short_space(summary.action_space)), escape(obs), escape(summary.text())


def _variants_text(info: EnvInfo) -> str:
    v = info.variants
    if not v:
        return ""
    d, c = v["discrete"], v["continuous"]
    how = " (convention)" if (info.variants_from or "").startswith("by convention") else ""
    if d.env_id == c.env_id == info.id and list(d.kwargs) == list(c.kwargs) and len(d.kwargs) == 1:
        (key,) = d.kwargs
        return escape(f"{key}={d.kwargs[key]}|{c.kwargs[key]}{how}")
    parts = []
    for name, variant in v.items():
        target = "" if variant.env_id == info.id else variant.env_id
        args = ", ".join(f"{k}={a!r}" for k, a in variant.kwargs.items())
        parts.append(f"{name}: {' '.join(p for p in (target, args) if p) or 'this id'}")
    return escape("; ".join(parts) + how)


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..environments.lookup import list_envs

    envs = list_envs(user_only=args.user, discover=False)
    if args.pattern:
        envs = [e for e in envs if args.pattern.lower() in e.id.lower()]
    with_presets = _ids_with_presets()
    several = {info.id: _agents_text(info) for info in envs if info.user}
    several = {k: v for k, v in several.items() if v is not None}
    table = Table(title="environments (* = yours)", title_justify="left", box=None, padding=(0, 1))
    table.add_column("id", no_wrap=True)
    columns = ("actions", "observations", *(("agents",) if several else ()), "variants", "preset", "solved")
    for column in columns:
        table.add_column(column, overflow="fold")
    n_user = 0
    for info in envs:
        n_user += info.user
        agents: tuple[str, ...] = ()
        if info.id in several:
            action, obs, agents_text = several[info.id]
            agents = (agents_text,)
        elif info.user or args.spaces:
            action, obs = _spaces_text(info)
        else:
            action = obs = "[dim]-[/]"
        if several and not agents:
            agents = ("",)
        threshold = "" if info.reward_threshold is None else f"{info.reward_threshold:g}"
        name = f"[bold cyan]* {escape(info.id)}[/]" if info.user else f"  {escape(info.id)}"
        table.add_row(
            name,
            action,
            obs,
            *agents,
            _variants_text(info),
            escape(_preset_text(info, with_presets)),
            threshold,
        )
    stdout = out()
    stdout.print(table)
    note = "" if args.spaces else "; built-in spaces: --spaces"
    stdout.print(f"{n_user} user and {len(envs) - n_user} built-in environments{note}")
    return 0


def _targets(env_id: str, action_space: str | None) -> list[tuple[str, dict[str, Any], str | None]]:
    """(id, kwargs, expected variant) to check: the env as registered, then its other variants."""
    from ..environments.lookup import current_variant, env_info, resolve_variant

    if action_space:
        v = resolve_variant(env_id, action_space)
        return [(v.env_id, dict(v.kwargs), action_space)]
    info = env_info(env_id)
    if not info.variants:
        return [(env_id, {}, None)]
    default = current_variant(env_id)
    out = [(env_id, {}, default)]
    for name, v in info.variants.items():
        if name != default:
            out.append((v.env_id, dict(v.kwargs), name))
    return out


#: What ``envs check --set`` may set: how the environment is built.
CHECK_SETTINGS = ("env.kwargs", "env.wrappers", "env.max_episode_steps")


def _check_settings(overrides: list[str]) -> Any:
    """The ``EnvConfig`` that ``envs check --set ...`` describes (only :data:`CHECK_SETTINGS`)."""
    from ..config import TrainConfig
    from ..environments.wrappers import check_wrappers

    for item in overrides:
        key = item.partition("=")[0].strip()
        if not any(key == k or key.startswith(k + ".") for k in CHECK_SETTINGS):
            raise ConfigError(
                f"envs check --set {key}: only how the environment is built can be set here "
                f"({', '.join(CHECK_SETTINGS)})"
            )
    env = TrainConfig().with_overrides(list(overrides)).env
    check_wrappers(env.wrappers)
    return env


def _cmd_check(args: argparse.Namespace) -> int:
    from ..environments.checker import FULL_STEPS, check_environment
    from ..environments.discovery import registered_by
    from ..environments.lookup import env_info, list_envs
    from ..environments.multiagent_check import check_pettingzoo
    from ..environments.registry import EnvNotFoundError, ensure_registered

    if args.env_id:
        ensure_registered(args.env_id)
        ids = [args.env_id]
    else:
        ids = [e.id for e in list_envs(user_only=True, discover=False)]
        if args.env_module:  # those its modules registered, not those of packages imported otherwise
            ids = [i for i in ids if registered_by(i) is not None] or ids
        if not ids:
            raise EnvNotFoundError(
                "no user environments found: give an id, load your module with --env-module FILE.py, "
                "or put it in ./envs/"
            )
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    settings = _check_settings(args.overrides)
    failed = False
    for env_id in ids:
        several = check_pettingzoo(env_id, settings.kwargs, steps=args.steps or FULL_STEPS, seed=args.seed)
        if several is not None:  # a PettingZoo environment: its own API and several agents
            print_report(several, details=args.debug)
            failed |= not several.ok
            continue
        info = env_info(env_id)
        if info.variants:
            variants = ", ".join(
                f"{name} ({', '.join(f'{k}={v!r}' for k, v in variant.kwargs.items()) or variant.env_id})"
                for name, variant in info.variants.items()
            )
            out().print(escape(f"{env_id}: variants {variants}; {info.variants_from}"))
        for target, kwargs, expect in _targets(env_id, args.action_space):
            report = check_environment(
                target,
                {**settings.kwargs, **kwargs},  # a variant's own arguments select it
                quick=args.quick,
                steps=args.steps,
                seed=args.seed,
                expect=expect,
                max_episode_steps=settings.max_episode_steps,
                wrappers=settings.wrappers,
            )
            print_report(report, details=args.debug)
            failed |= not report.ok
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    load_user_envs(args.env_module if args.envs_command else [])
    if args.envs_command == "check":
        return _cmd_check(args)
    if args.envs_command in (None, "list"):
        if args.envs_command is None:
            args.pattern, args.user, args.spaces = None, False, False
        return _cmd_list(args)
    raise ConfigError(f"unknown envs command {args.envs_command!r}")
