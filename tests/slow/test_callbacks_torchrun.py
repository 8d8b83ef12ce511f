"""Events under torchrun: two gloo ranks, the callback given with --callback, events on rank 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_events_fire_on_rank_0_and_a_stop_ends_both_ranks(tmp_path):
    module = str(REPO / "tests" / "event_envs.py")
    out = tmp_path / "events.json"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        "STOP_EVENT": "on_update_end",
        "STOP_AFTER": "3",
        "EVENTS_OUT": str(out),
    }
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    cmd += ["--nproc-per-node", "2", "-m", "ppo_envkit", "train", "CartPole-v1", "--run-dir", str(run)]
    cmd += [
        "--preset",
        "defaults",
        "--num-envs",
        "4",
        "--set",
        "ppo.n_steps=64",
        "--set",
        "ppo.minibatch_size=64",
    ]
    cmd += ["--set", "run.eval_interval=0", "--total-timesteps", "4096", "--no-progress"]
    cmd += ["--callback", f"{module}:CountEvents", "--callback", f"{module}:StopFromEvent"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = json.loads(out.read_text())
    assert events["reason"] == "callback"
    counts = events["counts"]
    assert counts["on_training_start"] == counts["on_training_end"] == 1
    assert counts["on_rollout_end"] == counts["on_update_end"] == 3
    assert set(events["env_indices"]) <= {0, 1, 2, 3}  # rank 0's copies (4 per rank)
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["num_timesteps"] == 3 * 2 * 4 * 64  # both ranks stopped after the third iteration
    assert meta["distributed"]["weights_identical_across_ranks"]
