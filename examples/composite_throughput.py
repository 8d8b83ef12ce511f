"""Training speed of a composite head (autograd fallback) beside a flat Box head (fast path, autograd).

The numpy fast path (``algo/fastpath.py``) has analytic gradients for the single heads only; the
composite head of ``Golf-v0`` falls back to autograd. Four cases train 8,192 steps each (after a
1,024-step warm-up), alternating, three rounds; the median steps per second is printed with its
ratio to the flat Box head on the fast path.

    python examples/composite_throughput.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import composite_vs_workarounds  # noqa: F401 (registers Golf-v0 and its workaround variants)

from ppo_envkit import PPO, TrainConfig

CASES = {
    "flat-box fast path": ("GolfFlatBox-v0", {}),
    "flat-box autograd": ("GolfFlatBox-v0", {"run.analytic_gradients": False}),
    "composite (fallback)": ("Golf-v0", {}),
    "composite conditional": ("Golf-v0", {"policy.composite": "conditional"}),
}


def main() -> None:
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for round_ in range(3):
        for name, (env_id, extra) in CASES.items():
            overrides = {"env.id": env_id, "env.num_envs": 8, "run.seed": round_, "run.eval_interval": 0}
            agent = PPO(config=TrainConfig().with_overrides({**overrides, **extra}))
            agent.learn(1024)  # warm up
            start = time.perf_counter()
            agent.learn(8192)
            times[name].append(8192 / (time.perf_counter() - start))
            agent.close()
    base = statistics.median(times["flat-box fast path"])
    for name, values in times.items():
        median = statistics.median(values)
        each = ", ".join(f"{v:.0f}" for v in values)
        ratio = median / base
        print(f"{name:24s} {median:7.0f} steps/s (median of 3: {each})  ratio to fast path {ratio:.2f}")


if __name__ == "__main__":
    main()
