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
from pathlib import Path
from typing import Any

from .common import add_set_arg, console, exit_now

NAME = "bench"


def _peak_rss_mb() -> float:
    """Peak resident memory of this process plus its largest finished child (``run.processes``
    ranks are forked children; shared pages count twice, so this is an upper bound)."""
    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _raw_env_rate(
    env_id: str, kwargs: dict[str, Any], num_envs: int, steps: int, seed: int
) -> dict[str, Any]:
    """Random actions, resets included; ``num_envs == 1`` is a plain env, else a sync vector env."""
    import gymnasium as gym

    from ..environments.factory import make_env

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
    from ..agent import PPO

    agent = PPO.from_preset(preset, overrides=[*overrides, f"run.seed={seed}"])
    agent.trainer.prepare()
    start = time.perf_counter()
    agent.learn(steps)
    elapsed = time.perf_counter() - start
    agent.close()
    return _rate_result(agent, elapsed, _peak_rss_mb())


def _rate_result(agent: Any, elapsed: float, peak_mb: float) -> dict[str, Any]:
    return {
        "steps": agent.num_timesteps,
        "seconds": elapsed,
        "steps_per_s": agent.num_timesteps / elapsed,
        "peak_mb": peak_mb,
        "recent_return": agent.last_metrics.get("episode_return", float("nan")),
    }


def _train_rate_ranks(preset: str, overrides: list[str], steps: int, seed: int, ranks: int) -> dict[str, Any]:
    """The same measurement with ``ranks`` torchrun processes sharing the preset's environment copies.

    Each rank gets ``num_envs // ranks`` copies, so the combined batch, minibatch and
    number of updates equal the one-process run's; peak memory is the sum over ranks.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.json"
        out = Path(tmp) / "result.json"
        spec.write_text(json.dumps({"preset": preset, "overrides": overrides, "steps": steps, "seed": seed}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
        cmd += ["-m", "ppo_envkit.cli.bench", "--rank-worker", str(spec), str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{ranks}-rank benchmark failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def _rank_worker(spec_path: str, out_path: str) -> None:
    """One torchrun rank of :func:`_train_rate_ranks`; rank 0 writes the result."""
    import torch
    import torch.distributed as dist

    from ..agent import PPO
    from ..parallel.torchrun import shutdown, world
    from ..presets import load_preset

    spec = json.loads(Path(spec_path).read_text())
    _, size = world()
    num_envs = load_preset(spec["preset"]).env.num_envs
    if num_envs % size:
        raise ValueError(
            f"preset {spec['preset']} has {num_envs} environment copies, not divisible by {size}"
        )
    overrides = [*spec["overrides"], f"run.seed={spec['seed']}", f"env.num_envs={num_envs // size}"]
    agent = PPO.from_preset(spec["preset"], overrides=overrides)
    agent.trainer.prepare()  # joins the ranks and builds the environments
    dist.barrier()
    start = time.perf_counter()
    agent.learn(spec["steps"])
    dist.barrier()
    elapsed = time.perf_counter() - start
    peaks = agent.trainer.collectives.gather_rows(torch.tensor([_peak_rss_mb()], dtype=torch.float64))
    agent.close()
    if dist.get_rank() == 0:
        result = {**_rate_result(agent, elapsed, float(peaks.sum())), "ranks": size}
        Path(out_path).write_text(json.dumps(result))
    shutdown()
    exit_now(0)


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
        "--ranks",
        type=int,
        default=1,
        help="also train each preset with this many torchrun processes sharing its environment copies "
        "(same combined batch) and report the speed-up over one process",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from ..presets import load_preset

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
        processes = configs[name].run.processes
        rows.append({"what": f"train preset {name}", "preset": name, "processes": processes, **result})
        if processes > 1:  # what the preset's extra training processes bring
            say(f"training preset {name} with one process for {args.steps} steps ...")
            overrides = [*args.overrides, "run.processes=1"]
            alone = _in_fresh_process(_train_rate, name, overrides, args.steps, args.seed)
            alone["ratio_to_raw_env"] = alone["steps_per_s"] / single["steps_per_s"]
            rows.append({"what": f"train preset {name}, 1 process", "preset": name, "processes": 1, **alone})
            rows[-2]["speedup_over_one_process"] = result["steps_per_s"] / alone["steps_per_s"]
        if args.ranks > 1:
            say(f"training preset {name} with {args.ranks} ranks for {args.steps} steps ...")
            multi = _train_rate_ranks(name, list(args.overrides), args.steps, args.seed, args.ranks)
            multi["ratio_to_raw_env"] = multi["steps_per_s"] / single["steps_per_s"]
            multi["speedup_over_one_rank"] = multi["steps_per_s"] / result["steps_per_s"]
            rows.append({"what": f"train preset {name}, {args.ranks} ranks", "preset": name, **multi})
    report = {
        "env_id": env_id,
        "machine": _machine(),
        "results": rows,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    table = Table(title=f"ppo-envkit bench ({report['machine']})")
    columns = ["measurement", "steps", "seconds", "steps/s", "x raw env", "peak MB"]
    extras = [("speedup_over_one_process", "x 1 process"), ("speedup_over_one_rank", "x 1 rank")]
    extras = [(key, title) for key, title in extras if any(key in row for row in rows)]
    columns += [title for _, title in extras]
    for col in columns:
        table.add_column(col, justify="right" if col != "measurement" else "left")
    for row in rows:
        ratio = row.get("ratio_to_raw_env")
        cells = [
            row["what"],
            f"{row['steps']}",
            f"{row['seconds']:.1f}",
            f"{row['steps_per_s']:.0f}",
            "" if ratio is None else f"{ratio:.2f}",
            f"{row['peak_mb']:.0f}",
        ]
        cells += ["" if row.get(key) is None else f"{row[key]:.2f}" for key, _ in extras]
        table.add_row(*cells)
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


if __name__ == "__main__":  # torchrun entry of the multi-rank measurement
    if len(sys.argv) == 4 and sys.argv[1] == "--rank-worker":
        _rank_worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit(
            "usage: python -m ppo_envkit.cli.bench --rank-worker SPEC.json OUT.json (use 'ppo-envkit bench')"
        )
