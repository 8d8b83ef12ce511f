"""Throughput of the composite head (autograd fallback) beside a flat Box head (fast path, autograd).

python examples/composite_fallback_speed.py
"""

import statistics
import sys
import time

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import composite_vs_workarounds  # noqa: F401 (registers Golf variants)

from ppo_envkit import PPO, TrainConfig

CASES = {
    "flat-box fast path": ("GolfFlatBox-v0", {}),
    "flat-box autograd": ("GolfFlatBox-v0", {"run.analytic_gradients": False}),
    "composite (fallback)": ("Golf-v0", {}),
    "composite conditional": ("Golf-v0", {"policy.composite": "conditional"}),
}
times = {k: [] for k in CASES}
for round_ in range(3):
    for name, (env_id, extra) in CASES.items():
        cfg = TrainConfig().with_overrides(
            {"env.id": env_id, "env.num_envs": 8, "run.seed": round_, "run.eval_interval": 0, **extra}
        )
        agent = PPO(config=cfg)
        agent.learn(1024)  # warm up
        t = time.perf_counter()
        agent.learn(8192)
        times[name].append(8192 / (time.perf_counter() - t))
        agent.close()
base = statistics.median(times["flat-box fast path"])
for name, v in times.items():
    m = statistics.median(v)
    print(
        f"{name:24s} {m:7.0f} steps/s (median of 3: {', '.join(f'{x:.0f}' for x in v)})  "
        f"ratio to fast path {m / base:.2f}"
    )
