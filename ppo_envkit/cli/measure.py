"""Throughput measurements for ``ppo-envkit bench``, each in a fresh process.

Each measurement runs in a fresh process (``spawn``), so that its peak resident
memory and its start-up are its own and one measurement's warm caches do not help
the next. The ratios are the point: absolute numbers drift on shared machines,
ratios measured side by side in one run much less.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def peak_rss_mb() -> float:
    """Peak resident memory of this process plus its largest finished child (``run.processes``
    ranks are forked children; shared pages count twice, so this is an upper bound)."""
    import resource

    # ru_maxrss is in KiB on Linux, bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def raw_env_rate(env_id: str, kwargs: dict[str, Any], num_envs: int, steps: int, seed: int) -> dict[str, Any]:
    """Random actions, resets included; ``num_envs == 1`` is a plain env, else a sync vector env.

    An environment with action masks gets random *legal* actions, drawn at each step from its
    mask (that costs a little more than replaying pre-drawn actions, and is never illegal).
    """
    import gymnasium as gym
    import numpy as np

    from ..environments.factory import make_env
    from ..environments.masks import ActionMasks, sample_legal

    rng = np.random.default_rng(seed)

    def build() -> gym.Env:
        return ActionMasks(make_env(env_id, kwargs))

    if num_envs == 1:
        env = build()
        env.action_space.seed(seed)
        _, info = env.reset(seed=seed)
        masked = "action_mask" in info
        actions = [] if masked else [env.action_space.sample() for _ in range(min(steps, 10_000))]
        start = time.perf_counter()
        for i in range(steps):
            action = (
                sample_legal(env.action_space, info["action_mask"], rng)
                if masked
                else actions[i % len(actions)]
            )
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                _, info = env.reset()
        elapsed = time.perf_counter() - start
        env.close()
    else:
        envs = gym.vector.SyncVectorEnv([build] * num_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        envs.action_space.seed(seed)
        _, info = envs.reset(seed=seed)
        masked = "action_mask" in info
        space = envs.single_action_space
        actions = [] if masked else [envs.action_space.sample() for _ in range(256)]
        n_calls = max(1, steps // num_envs)
        start = time.perf_counter()
        for i in range(n_calls):
            if masked:
                batch = np.stack([sample_legal(space, m, rng) for m in info["action_mask"]])
                info = envs.step(batch)[4]
            else:
                envs.step(actions[i % len(actions)])
        elapsed = time.perf_counter() - start
        steps = n_calls * num_envs
        envs.close()
    return {"steps": steps, "seconds": elapsed, "steps_per_s": steps / elapsed, "peak_mb": peak_rss_mb()}


def train_rate(
    preset: str, overrides: list[str], steps: int, seed: int, callbacks: Sequence[str] = ()
) -> dict[str, Any]:
    """Training throughput of a preset: whole process time (set-up excluded), collection + updates;
    with ``callbacks`` (``MODULE:CLASS``, as ``train --callback``), their cost included."""
    from ..agent import PPO
    from .train import load_callbacks

    agent = PPO.from_preset(preset, overrides=[*overrides, f"run.seed={seed}"])
    callback = load_callbacks(callbacks)
    agent.prepare()  # set-up, not timed: environments, and the optimizer (process_seconds counts it)
    start = time.perf_counter()
    agent.learn(steps, callback=callback)
    elapsed = time.perf_counter() - start
    agent.close()
    return _rate_result(agent, elapsed, peak_rss_mb())


def _rate_result(agent: Any, elapsed: float, peak_mb: float) -> dict[str, Any]:
    return {
        "steps": agent.num_timesteps,
        "seconds": elapsed,
        "steps_per_s": agent.num_timesteps / elapsed,
        "peak_mb": peak_mb,
        "recent_return": agent.last_metrics.get("episode_return", float("nan")),
    }


def train_rate_ranks(preset: str, overrides: list[str], steps: int, seed: int, ranks: int) -> dict[str, Any]:
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
        cmd += ["-m", "ppo_envkit.cli.measure", "--rank-worker", str(spec), str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{ranks}-rank benchmark failed:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def rank_worker(spec_path: str, out_path: str) -> None:
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
    agent.prepare()  # joins the ranks, builds the environments and the optimizer
    dist.barrier()
    start = time.perf_counter()
    agent.learn(spec["steps"])
    dist.barrier()
    elapsed = time.perf_counter() - start
    peaks = torch.tensor([peak_rss_mb()], dtype=torch.float64)
    dist.all_reduce(peaks)  # the sum over ranks
    agent.close()
    if dist.get_rank() == 0:
        result = {**_rate_result(agent, elapsed, float(peaks.sum())), "ranks": size}
        Path(out_path).write_text(json.dumps(result))
    shutdown()
    from .common import exit_now

    exit_now(0)


def _child(conn: Any, fn: Any, args: tuple[Any, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:
        import traceback

        conn.send(("error", f"{exc}\n{traceback.format_exc()}"))


def in_fresh_process(fn: Any, *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a new (non-daemonic: it may start env workers) process; the result
    gains ``process_seconds``, the wall time from starting the process to its exit."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, fn, args))
    started = time.perf_counter()
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
    return {**payload, "process_seconds": time.perf_counter() - started}


def time_to_first_step(env_id: str, argv: list[str]) -> dict[str, Any]:
    """Seconds from starting ``ppo-envkit ARGV`` (a fresh interpreter) to the first step of an
    ``env_id`` environment (patched on its class before anything else runs), and to its exit."""
    import os
    import subprocess
    import tempfile

    probe = (
        "import importlib, sys, time, gymnasium as gym\n"
        "module, _, env_id = sys.argv[1].rpartition(':')\n"  # module:id, Gymnasium's form
        "module and importlib.import_module(module)\n"
        "cls = gym.envs.registration.load_env_creator(gym.spec(env_id).entry_point)\n"
        "original = cls.step\n"
        "def step(self, action):\n"
        "    if not getattr(cls, '_first_step', None):\n"
        "        cls._first_step = time.time()\n"
        "        open(sys.argv[2], 'w').write(repr(cls._first_step))\n"
        "    return original(self, action)\n"
        "cls.step = step\n"
        "from ppo_envkit.cli import main\n"
        "sys.exit(main(sys.argv[3:]))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        stamp = os.path.join(tmp, "first_step")
        cmd = [sys.executable, "-c", probe, env_id, stamp, *argv, "--run-dir", os.path.join(tmp, "run")]
        start = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        ended = time.time()
        if proc.returncode != 0 or not os.path.exists(stamp):
            raise RuntimeError(f"start-up measurement failed:\n{proc.stderr[-3000:]}")
        first = float(open(stamp).read())
    return {"first_step_seconds": first - start, "process_seconds": ended - start}


def machine() -> str:
    """This machine in one line, for the table's title."""
    import os
    import platform

    import torch

    return (
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, torch {torch.__version__}"
    )


if __name__ == "__main__":  # torchrun entry of the multi-rank measurement
    if len(sys.argv) == 4 and sys.argv[1] == "--rank-worker":
        rank_worker(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m ppo_envkit.cli.measure --rank-worker SPEC.json OUT.json")
