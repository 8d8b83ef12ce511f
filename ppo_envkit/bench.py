"""``ppo-envkit bench``: environment step rate vs training throughput, with peak memory.

Each measurement runs in a fresh process (``spawn``), so that its peak resident
memory is its own and one measurement's warm caches do not help the next. The
ratios are the point: absolute numbers drift on shared machines, ratios measured
side by side in one run much less.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from typing import Any

from .cli import add_set_arg, command, console, parser_builder


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _raw_env_rate(
    env_id: str, kwargs: dict[str, Any], num_envs: int, steps: int, seed: int
) -> dict[str, Any]:
    """Random actions, resets included; ``num_envs == 1`` is a plain env, else a sync vector env."""
    import gymnasium as gym

    from .registry import make_env

    if num_envs == 1:
        env = make_env(env_id, kwargs)
        env.action_space.seed(seed)
        actions = [env.action_space.sample() for _ in range(min(steps, 10_000))]
        env.reset(seed=seed)
        start = time.perf_counter()
        for i in range(steps):
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            if terminated or truncated:
                env.reset()
        elapsed = time.perf_counter() - start
        env.close()
    else:
        envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(env_id, kwargs)] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP
        )
        envs.action_space.seed(seed)
        actions = [envs.action_space.sample() for _ in range(256)]
        envs.reset(seed=seed)
        n_calls = max(1, steps // num_envs)
        start = time.perf_counter()
        for i in range(n_calls):
            envs.step(actions[i % len(actions)])
        elapsed = time.perf_counter() - start
        steps = n_calls * num_envs
        envs.close()
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed, "peak_mb": _peak_rss_mb()}


def _train_rate(preset: str, overrides: list[str], steps: int, seed: int) -> dict[str, Any]:
    """Training throughput of a preset: whole process time (set-up excluded), collection + updates."""
    from .ppo import PPO

    agent = PPO.from_preset(preset, overrides=[*overrides, f"run.seed={seed}"])
    agent._ensure_envs()
    start = time.perf_counter()
    agent.learn(steps)
    elapsed = time.perf_counter() - start
    agent.close()
    return {
        "steps": agent.num_timesteps,
        "seconds": elapsed,
        "steps_per_s": agent.num_timesteps / elapsed,
        "peak_mb": _peak_rss_mb(),
        "recent_return": agent.tracker.mean_recent_return if agent.tracker else float("nan"),
    }


def _child(conn: Any, fn: Any, args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:
        import traceback

        conn.send(("error", f"{exc}\n{traceback.format_exc()}"))


def _in_fresh_process(fn: Any, *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a new (non-daemonic: it may start env workers) process."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, fn, args))
    proc.start()
    try:
        while not parent.poll(1.0):
            if not proc.is_alive():
                raise RuntimeError(f"benchmark process died (exit code {proc.exitcode})")
        status, payload = parent.recv()
    finally:
        proc.join()
    if status == "error":
        raise RuntimeError(f"benchmark failed: {payload}")
    return payload


@parser_builder
def _bench_parser(sub: Any) -> None:
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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


@command("bench")
def cmd_bench(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .presets import load_preset

    presets = args.preset or ["lunarlander", "zoo-lunarlander"]
    configs = {name: load_preset(name).with_overrides(list(args.overrides)) for name in presets}
    first = configs[presets[0]]
    env_id = args.env or first.env.id
    kwargs = dict(first.env.kwargs) if args.env is None else {}
    rows: list[dict[str, Any]] = []
    say = (lambda *_: None) if args.json else console.print
    say(f"measuring {env_id} raw step rate (random actions) ...")
    single = _in_fresh_process(_raw_env_rate, env_id, kwargs, 1, args.env_steps, args.seed)
    rows.append({"what": f"{env_id} raw env, 1 copy", **single})
    vec = _in_fresh_process(_raw_env_rate, env_id, kwargs, first.env.num_envs, args.env_steps, args.seed)
    rows.append({"what": f"{env_id} raw sync vector env, {first.env.num_envs} copies", **vec})
    for name in presets:
        say(f"training preset {name} for {args.steps} steps ...")
        result = _in_fresh_process(_train_rate, name, list(args.overrides), args.steps, args.seed)
        result["ratio_to_raw_env"] = result["steps_per_s"] / single["steps_per_s"]
        rows.append({"what": f"train preset {name}", "preset": name, **result})
    report = {
        "env_id": env_id,
        "machine": _machine(),
        "results": rows,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    table = Table(title=f"ppo-envkit bench ({report['machine']})")
    for col in ("measurement", "steps", "seconds", "steps/s", "x raw env", "peak MB"):
        table.add_column(col, justify="right" if col != "measurement" else "left")
    for row in rows:
        ratio = row.get("ratio_to_raw_env")
        table.add_row(
            row["what"],
            f"{row['steps']}",
            f"{row['seconds']:.1f}",
            f"{row['steps_per_s']:.0f}",
            "" if ratio is None else f"{ratio:.2f}",
            f"{row['peak_mb']:.0f}",
        )
    console.print(table)
    return 0


def _machine() -> str:
    import os
    import platform

    import torch

    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )
