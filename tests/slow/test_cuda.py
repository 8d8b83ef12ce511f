"""GPU training: rollout storage and updates on the GPU, agents that move between devices.

These need a CUDA device and are skipped without one (CI has none); they were run on a lent H200.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppo_envkit import PPO, evaluate, load_agent
from ppo_envkit.algo.trainer import Trainer
from ppo_envkit.errors import TrainingInterrupted
from ppo_envkit.io.runlog import RunLogger
from ppo_envkit.parallel.collectives import SingleProcess

from ..test_checkpoint import small_config
from .test_distributed import train_cartpole_with_two_ranks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_rollout_storage_policy_and_optimizer_live_on_the_gpu():
    agent = PPO(config=small_config(**{"run.device": "cuda", "env.normalize_obs": True}))
    trainer = Trainer(agent.policy, agent.config, agent.generator, agent.state, SingleProcess())
    trainer.plan(128)
    trainer.train()
    buf = trainer.collector.rollout
    for name in ("obs", "actions", "logprobs", "values", "rewards", "terminated", "truncated", "packed"):
        assert getattr(buf, name).device.type == "cuda", name
    assert all(p.device.type == "cuda" for p in agent.policy.parameters())
    for state in trainer.learner.optimizer.state_dict()["state"].values():
        assert state["exp_avg"].device.type == "cuda"
    assert agent.policy.obs_norm.rms.mean.device.type == "cuda"
    trainer.close()


def test_cartpole_learns_on_the_gpu():
    agent = PPO.from_preset("cartpole", overrides={"run.seed": 0, "run.device": "cuda"})
    agent.learn(100_000)
    agent.close()
    assert evaluate(agent, 20, seed=100).mean_return >= 475


def test_gpu_agent_loads_on_the_cpu_with_the_same_actions(tmp_path):
    config = small_config(**{"run.device": "cuda", "env.normalize_obs": True})
    agent = PPO(config=config).learn(512)
    path = agent.save(tmp_path / "agent")
    agent.close()
    on_cpu = load_agent(str(path))
    assert on_cpu.device.type == "cpu"
    obs = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs), on_cpu.predict(obs))
    for name, tensor in agent.policy.state_dict().items():
        assert torch.equal(tensor.cpu(), on_cpu.policy.state_dict()[name]), name


def test_resume_on_the_gpu_equals_an_unbroken_run(tmp_path):
    config = small_config(**{"run.device": "cuda", "env.normalize_obs": True, "run.total_timesteps": 64 * 4})
    unbroken = PPO(config=config).learn()
    unbroken.close()

    def stop_after_two(agent, metrics):
        if agent.iteration == 2:
            raise KeyboardInterrupt

    stopped = PPO(config=config)
    with pytest.raises(TrainingInterrupted) as info:
        stopped.learn(callback=stop_after_two, logger=RunLogger(tmp_path / "run", progress=False))
    resumed = PPO.resume(info.value.checkpoint)
    assert resumed.device.type == "cuda"
    resumed.train()
    resumed.close()
    for name, tensor in unbroken.policy.state_dict().items():
        torch.testing.assert_close(tensor, resumed.policy.state_dict()[name], rtol=0, atol=1e-6)


def test_two_ranks_sharing_one_gpu_stay_identical_and_learn(tmp_path):
    """Fewer GPUs than ranks: the GPU tensors are reduced over gloo (NCCL refuses a shared GPU)."""
    # normalized observations: their statistics are merged across ranks on the GPU too
    proc, run = train_cartpole_with_two_ranks(tmp_path, "--device", "cuda", "--set", "env.normalize_obs=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "weights_identical_across_ranks": True}
    assert evaluate(load_agent(str(run)), 20, seed=100).mean_return >= 475


def test_training_processes_refuse_a_gpu_with_a_clear_message():
    agent = PPO.from_preset("cartpole", overrides={"run.processes": 2, "run.device": "cuda"})
    with pytest.raises(ValueError, match="torchrun"):
        agent.learn(1024)
