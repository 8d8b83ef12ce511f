"""Agent files: identical actions after load, exact resume, no pickle, atomic writes, clear mismatches."""

from __future__ import annotations

import json
import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from ppo_envkit import PPO, TrainConfig, load_agent
from ppo_envkit.environments.episodes import ReplayableEpisodes, episode_seed
from ppo_envkit.errors import StorageError, TrainingInterrupted
from ppo_envkit.io.atomic import atomic_write_dir
from ppo_envkit.io.checkpoint import AgentFileError, load_trainer_state
from ppo_envkit.io.runlog import RunLogger

from .resume import assert_same_training_state


def small_config(env_id="CartPole-v1", **extra):
    overrides = {
        "env.id": env_id,
        "env.num_envs": 4,
        "ppo.n_steps": 16,
        "ppo.minibatch_size": 32,
        "ppo.n_epochs": 2,
        "run.seed": 7,
        **extra,
    }
    return TrainConfig().with_overrides(overrides)


def test_save_load_gives_identical_actions_and_statistics(tmp_path):
    config = small_config(**{"env.normalize_obs": True, "env.normalize_reward": True})
    agent = PPO(config=config).learn(256)
    path = agent.save(tmp_path / "agent")
    assert sorted(p.name for p in path.iterdir()) == ["agent.json", "model.safetensors"]
    loaded = load_agent(str(path))
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(agent.predict(obs), loaded.predict(obs))
    for name, tensor in agent.policy.state_dict().items():
        assert torch.equal(tensor, loaded.policy.state_dict()[name]), name
    # the normalization statistics were really learned (not the defaults) and survived the trip
    assert loaded.policy.obs_norm.rms.count > 100
    x = torch.ones(1, 4)
    assert not torch.allclose(loaded.policy.obs_norm(x), x), "the loaded statistics are in use"
    meta = json.loads((path / "agent.json").read_text())
    assert meta["env"]["id"] == "CartPole-v1" and meta["num_timesteps"] == agent.num_timesteps
    assert meta["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    assert {"torch", "gymnasium", "ppo-envkit"} <= set(meta["versions"])
    agent.close()


def test_single_observation_gives_single_action(tmp_path):
    agent = PPO(config=small_config())
    action = agent.predict(np.zeros(4, np.float32))
    assert np.ndim(action) == 0 and action in (0, 1)
    assert agent.predict(np.zeros((3, 4), np.float32)).shape == (3,)


class Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PICKLE_RAN",))


def test_pickle_payload_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    agent = PPO(config=small_config())
    path = agent.save(tmp_path / "agent")
    (path / "model.safetensors").write_bytes(pickle.dumps({"weights": Payload()}))
    torch.save({"weights": Payload()}, path / "other.pt")
    with pytest.raises(AgentFileError, match="not a valid safetensors file"):
        load_agent(str(path))
    assert not (tmp_path / "PICKLE_RAN").exists()


def test_corrupt_or_incomplete_agent_dirs_are_clear_errors(tmp_path):
    with pytest.raises(AgentFileError, match="no agent or run directory"):
        load_agent(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AgentFileError, match="holds no agent"):
        load_agent(str(tmp_path / "empty"))
    path = PPO(config=small_config()).save(tmp_path / "agent")
    meta = json.loads((path / "agent.json").read_text())
    meta["format_version"] = 99
    (path / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError, match="format_version 99"):
        load_agent(str(path))


def test_weights_that_do_not_fit_the_config_are_a_clear_error(tmp_path):
    path = PPO(config=small_config()).save(tmp_path / "agent")
    meta = json.loads((path / "agent.json").read_text())
    meta["config"]["policy"]["hidden_sizes"] = [32]
    (path / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError, match="stored policy settings"):
        load_agent(str(path))


def test_agent_meets_environment_with_other_spaces(tmp_path):
    from ppo_envkit import evaluate

    agent = PPO(config=small_config())
    path = agent.save(tmp_path / "agent")
    meta = json.loads((path / "agent.json").read_text())
    meta["config"]["env"]["id"] = meta["env"]["id"] = "Acrobot-v1"
    (path / "agent.json").write_text(json.dumps(meta))
    stranger = load_agent(str(path))
    with pytest.raises(ValueError, match=r"does not fit environment 'Acrobot-v1'.*Box.*\(4,\).*Box.*\(6,\)"):
        evaluate(stranger, 1)


def test_atomic_write_keeps_previous_version_on_crash(tmp_path, monkeypatch):
    agent = PPO(config=small_config())
    path = agent.save(tmp_path / "agent")
    before = (path / "model.safetensors").read_bytes()
    import ppo_envkit.io.atomic as atomic

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atomic, "save_file", crash)
    with torch.no_grad():
        agent.policy.value_out.bias.fill_(3.0)
    with pytest.raises(StorageError, match=r"could not save .*agent: disk full"):  # an OSError, in one line
        agent.save(path)
    assert (path / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["agent"], "no temporary directory left behind"
    atomic_write_dir(tmp_path / "x", {"a.txt": b"1"})
    assert (tmp_path / "x" / "a.txt").read_bytes() == b"1"


def _weights(agent):
    return {k: v.clone() for k, v in agent.policy.state_dict().items()}


@pytest.mark.parametrize(
    ("vectorization", "num_workers"),
    [("sync", None), ("async", None), ("async", 2)],
    ids=["sync", "async", "sharded"],
)
def test_resume_after_a_stop_equals_an_unbroken_run(tmp_path, vectorization, num_workers):
    """Stopped by Ctrl-C mid-run, saved, resumed from disk: the result equals an unbroken run, bit for bit."""
    extra = {
        "env.normalize_obs": True,
        "env.normalize_reward": True,
        "ppo.anneal_lr": True,
        "env.vectorization": vectorization,
        "env.num_workers": num_workers,
        "run.total_timesteps": 64 * 6,
    }
    config = small_config(**extra)
    unbroken = PPO(config=config).learn()
    unbroken.close()

    calls = {"n": 0}

    def interrupt_during_fourth_iteration(agent, metrics):
        calls["n"] += 1
        if calls["n"] == 4:  # after the environments and weights moved on: the iteration is lost
            raise KeyboardInterrupt

    stopped = PPO(config=config)
    logger = RunLogger(tmp_path / "run", progress=False, tensorboard=False)
    with pytest.raises(TrainingInterrupted) as info:
        stopped.learn(callback=interrupt_during_fourth_iteration, logger=logger)
    assert info.value.checkpoint.name == f"step_{3 * 64:010d}"

    resumed = PPO.resume(info.value.checkpoint)
    assert resumed.num_timesteps == 3 * 64 and resumed.target_timesteps == 6 * 64
    resumed.train()
    resumed.close()
    assert resumed.num_timesteps == unbroken.num_timesteps
    a, b = _weights(unbroken), _weights(resumed)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # episodes, optimizer, random stream: the same as the unbroken run's
    assert_same_training_state(unbroken, resumed, tmp_path)


class _SeedLog(gym.Wrapper):
    """Records the seed of every reset that reaches the environment."""

    def __init__(self, env):
        super().__init__(env)
        self.seeds = []

    def reset(self, *, seed=None, options=None):
        self.seeds.append(seed)
        return self.env.reset(seed=seed, options=options)


@pytest.mark.parametrize("every", [True, False])
def test_seed_every_episode_decides_which_resets_are_seeded(every):
    """env.seed_every_episode=false (slow seeded resets, as the ALE's) seeds only the first reset
    and a resume's; the default seeds each episode from (base seed, episode)."""
    env = ReplayableEpisodes(_SeedLog(gym.make("CartPole-v1")), seed_every_episode=every)
    env.reset(seed=5)
    env.reset()
    env.reset()
    seeds = env.env.seeds
    assert seeds[0] == episode_seed(5, 0)
    assert seeds[1:] == ([episode_seed(5, 1), episode_seed(5, 2)] if every else [None, None])
    env.pending_replay = (5, 7, np.zeros((0,), np.int64))
    env.replay_pending()
    assert seeds[-1] == episode_seed(5, 7)  # a resume's new episode is seeded in both modes


def test_resume_without_seeded_episodes_starts_new_episodes(tmp_path):
    """With env.seed_every_episode=false the checkpoint keeps no episode actions, and a resumed run
    starts every copy on a new seeded episode: it runs to the end and is itself reproducible."""
    config = small_config(**{"env.seed_every_episode": False, "run.total_timesteps": 64 * 6})
    calls = {"n": 0}

    def stop_in_fourth(agent, metrics):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt

    logger = RunLogger(tmp_path / "run", progress=False, tensorboard=False)
    with pytest.raises(TrainingInterrupted) as info:
        PPO(config=config).learn(callback=stop_in_fourth, logger=logger)
    _, tensors = load_trainer_state(info.value.checkpoint)
    assert not any(name.startswith("episodes.actions") for name in tensors)
    weights = []
    for _ in range(2):
        resumed = PPO.resume(info.value.checkpoint)
        resumed.train()
        resumed.close()
        assert resumed.num_timesteps == 6 * 64
        weights.append(resumed.policy.state_dict())
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
