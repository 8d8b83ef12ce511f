"""Per-observation latency: onnxruntime on the exported graph vs ``agent.predict``.

    python examples/onnx_latency.py agents/lunarlander agents/lunarlander-continuous

For each agent: export to a temporary file, record 64 observations from its environment,
then time one call at batch 1 and at batch 64 (median of many calls, after a warm-up),
both on one thread (the shipped agents' ``run.torch_threads`` is 1; onnxruntime gets
``intra_op_num_threads=1``). Prints a Markdown table: microseconds per call and per
observation.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ppo_envkit import PPO
from ppo_envkit.export.check import OnnxAgent, record_observations


def median_us(fn: Callable[[], object], calls: int) -> float:
    for _ in range(max(10, calls // 10)):  # warm-up
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agents", nargs="+", metavar="AGENT_DIR")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per measurement")
    args = parser.parse_args()
    print(
        "| agent | batch | predict us/call | onnxruntime us/call "
        "| predict us/obs | onnxruntime us/obs | speed-up |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for agent_dir in args.agents:
        agent = PPO.load(agent_dir)  # sets torch's threads to the agent's run.torch_threads
        observations, _, _ = record_observations(agent, 64, seed=0)
        batch64 = np.stack(observations)
        with tempfile.TemporaryDirectory() as tmp:
            model = OnnxAgent(agent.export_onnx(Path(tmp) / "m.onnx"), threads=1)
            for batch, obs in ((1, batch64[:1]), (64, batch64)):
                single = obs[0] if batch == 1 else obs  # predict's own single-observation path
                torch_us = median_us(lambda a=agent, o=single: a.predict(o), args.calls)
                onnx_us = median_us(lambda m=model, o=obs: m.predict(o), args.calls)
                print(
                    f"| {Path(agent_dir).name} | {batch} | {torch_us:.1f} | {onnx_us:.1f} | "
                    f"{torch_us / batch:.2f} | {onnx_us / batch:.2f} | {torch_us / onnx_us:.1f}x |"
                )
    print(f"\ntorch {torch.__version__} on {torch.get_num_threads()} thread(s); onnxruntime on 1 thread")


if __name__ == "__main__":
    main()
