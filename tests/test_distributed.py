"""Two ranks on the gloo backend, launched by torchrun, equal one learner with the combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ppo_envkit import evaluate, load_agent


def test_two_ranks_keep_identical_weights_and_learn_cartpole(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PPO_ENVKIT_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "-m",
        "ppo_envkit",
        "train",
        "CartPole-v1",
        "--run-dir",
        str(run),
        "--seed",
        "0",
        "--num-envs",
        "8",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done: ") == 1, "only rank 0 reports"
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert meta["num_timesteps"] >= 100_000
    # the cartpole preset's 16 copies, 8 per rank: the same combined batch as one learner
    assert meta["config"]["env"]["num_envs"] == 8
    result = evaluate(load_agent(str(run)), 20, seed=100)
    assert result.mean_return >= 475, result
