"""Two ranks on the gloo backend, launched by torchrun, equal one learner with the combined batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ppo_envkit import evaluate, load_agent


def train_cartpole_with_two_ranks(tmp_path, *extra_args, backend=None, env_id="CartPole-v1"):
    """``torchrun --nproc-per-node 2 -m ppo_envkit train CartPole-v1`` with 8 copies per rank.

    ``backend`` is forced through ``PPO_ENVKIT_BACKEND``; None leaves the choice to ppo-envkit.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PPO_ENVKIT_BACKEND", None)
    if backend is not None:
        env["PPO_ENVKIT_BACKEND"] = backend
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    cmd += ["--nproc-per-node", "2", "-m", "ppo_envkit", "train", env_id, "--run-dir", str(run)]
    cmd += ["--seed", "0", "--num-envs", "8", "--no-progress", *extra_args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    return proc, run


def test_two_ranks_keep_identical_weights_and_learn_cartpole(tmp_path):
    proc, run = train_cartpole_with_two_ranks(tmp_path, backend="gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("done: ") == 1, "only rank 0 reports"
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert meta["num_timesteps"] >= 100_000
    # the cartpole preset's 16 copies, 8 per rank: the same combined batch as one learner
    assert meta["config"]["env"]["num_envs"] == 8
    result = evaluate(load_agent(str(run)), 20, seed=100)
    assert result.mean_return >= 475, result


def test_two_ranks_train_a_recurrent_policy_in_step(tmp_path):
    proc, run = train_cartpole_with_two_ranks(
        tmp_path,
        "--total-timesteps",
        "8192",
        "--set",
        "policy.recurrent=lstm",
        "--set",
        "policy.recurrent_size=16",
        backend="gloo",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert meta["config"]["policy"]["recurrent"] == "lstm"
    agent = load_agent(str(run))
    assert agent.policy.recurrent and evaluate(agent, 3).episodes == 3


def test_two_ranks_train_a_composite_action_space(tmp_path):
    """Golf-v0: a Tuple of a choice and its continuous parameters, conditional head (issue 26)."""
    golf = str(Path(__file__).resolve().parents[2] / "envs" / "golf.py")
    proc, run = train_cartpole_with_two_ranks(
        tmp_path,
        "--env-module",
        golf,
        "--total-timesteps",
        "4096",
        "--set",
        "policy.composite=conditional",
        backend="gloo",
        env_id="Golf-v0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert meta["num_timesteps"] >= 4096
    result = evaluate(load_agent(str(run)), 3)
    assert result.episodes == 3
