"""``ppo-envkit bench``: environment step rate vs training throughput, start-up, peak memory.

The measurements (:mod:`ppo_envkit.cli.measure`) each run in a fresh process; this module
chooses them and prints the table (or one JSON object).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .common import add_set_arg, console

NAME = "bench"

#: How the PPO gradient is computed, for ``--gradients``: settings applied to the preset.
GRADIENTS = {
    "analytic": ["run.analytic_gradients=true", "run.compile=false"],
    "autograd": ["run.analytic_gradients=false", "run.compile=false"],
    "compile": ["run.analytic_gradients=false", "run.compile=true"],
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="measure environment and training throughput (steps/s, peak memory)")
    p.add_argument(
        "--preset",
        action="append",
        default=None,
        help="preset(s) to train (repeatable; default: lunarlander and zoo-lunarlander)",
    )
    p.add_argument("--env", default=None, help="environment id for the raw step rate (default: the preset's)")
    p.add_argument("--steps", type=int, default=100_000, help="training steps per preset (default 100000)")
    p.add_argument("--env-steps", type=int, default=50_000, help="steps for the raw env rate (default 50000)")
    add_set_arg(p, "override a setting of every preset")
    p.add_argument(
        "--gradients",
        nargs="+",
        choices=sorted(GRADIENTS),
        default=["analytic"],
        help="how to compute the PPO gradient, each measured (default analytic: the numpy fast path; "
        "autograd: plain torch; compile: autograd with torch.compile, compile time included)",
    )
    p.add_argument(
        "--ranks",
        type=int,
        default=1,
        help="also train each preset with this many torchrun processes sharing its environment copies "
        "(same combined batch) and report the speed-up over one process",
    )
    p.add_argument(
        "--startup",
        action="store_true",
        help="also measure 'ppo-envkit train' from launch to its first environment step",
    )
    p.add_argument(
        "--callback",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="also train each preset with these callbacks (as train --callback), alternating with "
        "runs without, and report the ratio (ppo_envkit.algo.callbacks:EveryEvent listens to "
        "every event and does nothing)",
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="with --callback: rounds of (without, with) (default 1)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..presets import load_preset
    from .measure import in_fresh_process, machine, raw_env_rate, time_to_first_step, train_rate

    presets = args.preset or ["lunarlander", "zoo-lunarlander"]
    configs = {name: load_preset(name).with_overrides(list(args.overrides)) for name in presets}
    first = configs[presets[0]]
    env_id = args.env or first.env.id
    kwargs = dict(first.env.kwargs) if args.env is None else {}
    rows: list[dict[str, Any]] = []
    say = (lambda *_: None) if args.json else console.print
    say(f"measuring {env_id} raw step rate (random actions) ...")
    single = in_fresh_process(raw_env_rate, env_id, kwargs, 1, args.env_steps, args.seed)
    rows.append({"what": f"{env_id} raw env, 1 copy", **single})
    vec = in_fresh_process(raw_env_rate, env_id, kwargs, first.env.num_envs, args.env_steps, args.seed)
    rows.append({"what": f"{env_id} raw sync vector env, {first.env.num_envs} copies", **vec})

    def train(name: str, label: str, overrides: list[str], callbacks: Sequence[str] = ()) -> dict[str, Any]:
        say(f"training preset {name}{label} for {args.steps} steps ...")
        result = in_fresh_process(
            train_rate, name, [*args.overrides, *overrides], args.steps, args.seed, list(callbacks)
        )
        result["ratio_to_raw_env"] = result["steps_per_s"] / single["steps_per_s"]
        rows.append({"what": f"train preset {name}{label}", "preset": name, **result})
        return result

    for name in presets:
        if args.callback:  # rounds of (without, with), side by side: the callbacks' cost
            ratios = []
            for _ in range(max(1, args.repeat)):
                plain = train(name, ", no callbacks", [])
                with_cb = train(name, f", callbacks {' '.join(args.callback)}", [], args.callback)
                ratios.append(with_cb["steps_per_s"] / plain["steps_per_s"])
                rows[-1]["ratio_to_no_callbacks"] = ratios[-1]
            shown = ", ".join(f"{r:.3f}" for r in ratios)
            say(f"{name}: steps/s with callbacks / without, per round: {shown}")
            continue
        for gradients in args.gradients:
            label = "" if args.gradients == ["analytic"] else f", {gradients}"
            result = train(name, label, GRADIENTS[gradients])
            rows[-1]["processes"] = configs[name].run.processes
        if configs[name].run.processes > 1:  # what the preset's extra training processes bring
            alone = train(name, ", 1 process", ["run.processes=1"])
            rows[-1]["processes"] = 1
            rows[-2]["speedup_over_one_process"] = result["steps_per_s"] / alone["steps_per_s"]
        if args.ranks > 1:
            from .measure import train_rate_ranks

            say(f"training preset {name} with {args.ranks} ranks for {args.steps} steps ...")
            multi = train_rate_ranks(name, list(args.overrides), args.steps, args.seed, args.ranks)
            multi["ratio_to_raw_env"] = multi["steps_per_s"] / single["steps_per_s"]
            multi["speedup_over_one_rank"] = multi["steps_per_s"] / result["steps_per_s"]
            rows.append({"what": f"train preset {name}, {args.ranks} ranks", "preset": name, **multi})
    if args.startup:
        name = presets[0]
        say(f"timing 'ppo-envkit train {env_id} --preset {name}' to its first environment step ...")
        argv = ["train", env_id, "--preset", name, "--total-timesteps", "1", "--no-progress"]
        argv += [item for override in args.overrides for item in ("--set", override)]
        timing = time_to_first_step(env_id, argv)
        rows.append({"what": f"start-up: train --preset {name}, to the first env step", **timing})
    report = {"env_id": env_id, "machine": machine(), "results": rows}
    if args.json:
        print(json.dumps(report))
        return 0
    _print_table(report)
    return 0


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    rows = report["results"]
    table = Table(title=f"ppo-envkit bench ({report['machine']})")
    columns = ["measurement", "steps", "seconds", "steps/s", "x raw env", "peak MB", "process s"]
    extras = [("speedup_over_one_process", "x 1 process"), ("speedup_over_one_rank", "x 1 rank")]
    extras += [("ratio_to_no_callbacks", "x no callbacks")]
    extras = [(key, title) for key, title in extras if any(key in row for row in rows)]
    columns += [title for _, title in extras]
    for col in columns:
        table.add_column(col, justify="right" if col != "measurement" else "left")

    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return "" if row.get(key) is None else format(row[key], fmt)

    for row in rows:
        seconds = "seconds" if "seconds" in row else "first_step_seconds"
        cells = [
            row["what"],
            cell(row, "steps", "d"),
            cell(row, seconds, ".2f"),
            cell(row, "steps_per_s", ".0f"),
            cell(row, "ratio_to_raw_env", ".2f"),
            cell(row, "peak_mb", ".0f"),
            cell(row, "process_seconds", ".1f"),
        ]
        cells += [cell(row, key, ".2f") for key, _ in extras]
        table.add_row(*cells)
    console.print(table)
