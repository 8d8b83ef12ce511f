"""One exact-resume check for the tests of each policy kind: an unbroken run against one
stopped by Ctrl-C in its third iteration and resumed from the checkpoint on disk."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.errors import TrainingInterrupted
from ppo_envkit.io.checkpoint import load_trainer_state
from ppo_envkit.io.runlog import RunLogger


def saved_training_state(agent: PPO, path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """What a checkpoint of ``agent`` holds besides the weights (counters, optimizer, random
    stream, episodes, memory), read back from disk: the public way to look at it."""
    agent.save_checkpoint(path)
    return load_trainer_state(path)


def assert_same_training_state(a: PPO, b: PPO, tmp: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Two agents' checkpoints hold the same training state, bit for bit; returns ``b``'s."""
    meta_a, tensors_a = saved_training_state(a, tmp / "a")
    meta_b, tensors_b = saved_training_state(b, tmp / "b")
    meta_a.pop("tensors_sha256"), meta_b.pop("tensors_sha256")
    assert meta_a == meta_b
    assert sorted(tensors_a) == sorted(tensors_b)
    for name, value in tensors_a.items():
        assert torch.equal(value, tensors_b[name]), name
    return meta_b, tensors_b


def assert_resume_is_exact(config: TrainConfig, run_dir: Path) -> tuple[PPO, PPO]:
    """Train ``config`` unbroken, and interrupted + resumed: the weights must be equal, bit for
    bit. Returns (unbroken, resumed), both closed, for further checks."""
    unbroken = PPO(config=config).learn()
    unbroken.close()
    calls = {"n": 0}

    def stop_in_third(agent: PPO, metrics: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as info:
        PPO(config=config).learn(
            callback=stop_in_third, logger=RunLogger(run_dir, progress=False, tensorboard=False)
        )
    resumed = PPO.resume(info.value.checkpoint)
    resumed.train()
    resumed.close()
    assert resumed.num_timesteps == unbroken.num_timesteps
    a, b = unbroken.policy.state_dict(), resumed.policy.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    return unbroken, resumed
