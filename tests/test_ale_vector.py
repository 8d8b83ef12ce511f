"""``env.vectorization=ale``: Atari copies stepped by the ALE's C++ vector, from the settings of
the Gymnasium path (AtariPreprocessing, ClipReward, frame stacking), refused in one line where it
cannot reproduce them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ale_py")
pytest.importorskip("cv2")  # AtariPreprocessing's resizing

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.config import ConfigError, EnvConfig
from ppo_envkit.environments.factory import make_configured_env
from ppo_envkit.parallel.ale_vector import ale_options
from ppo_envkit.parallel.vectorize import make_vec_env

PREP = "gymnasium.wrappers:AtariPreprocessing"
CLIP = {"gymnasium.wrappers:ClipReward": {"min_reward": -1, "max_reward": 1}}


def atari(**overrides) -> EnvConfig:
    settings = {
        "id": "ale_py:ALE/Breakout-v5",
        "kwargs": {"frameskip": 1},
        "wrappers": [PREP, CLIP],
        "frame_stack": 4,
        "seed_every_episode": False,
        "vectorization": "ale",
        "num_envs": 2,
    }
    return EnvConfig(**{**settings, **overrides})


def test_the_preset_settings_become_the_vectors_own_options():
    options = ale_options(atari())
    assert options["game"] == "breakout"
    assert options["repeat_action_probability"] == 0.25  # Breakout-v5's sticky actions
    assert (options["frameskip"], options["noop_max"], options["stack_num"]) == (4, 30, 4)
    assert (options["img_height"], options["img_width"], options["grayscale"]) == (84, 84, True)
    assert options["reward_clipping"] and not options["use_fire_reset"] and not options["episodic_life"]
    same = "gymnasium.wrappers.atari_preprocessing:AtariPreprocessing"  # another path to the class
    unclipped = ale_options(atari(wrappers=[{same: {"noop_max": 0, "terminal_on_life_loss": True}}]))
    assert not unclipped["reward_clipping"] and unclipped["noop_max"] == 0 and unclipped["episodic_life"]
    assert ale_options(atari(max_episode_steps=400))["max_num_frames_per_episode"] == 400


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"seed_every_episode": True}, "seed_every_episode=false"),
        ({"id": "CartPole-v1"}, "not an Atari game"),
        ({"kwargs": {"frameskip": 4}}, "frameskip=1"),
        ({"kwargs": {"frameskip": 1, "mode": 2}}, "['mode']"),
        ({"wrappers": []}, "env.wrappers must be"),
        ({"wrappers": [PREP, "gymnasium.wrappers:RecordEpisodeStatistics"]}, "env.wrappers must be"),
        ({"wrappers": [{PREP: {"scale_obs": True}}]}, "scale_obs"),
        ({"wrappers": [PREP, {"gymnasium.wrappers:ClipReward": {"max_reward": 2}}]}, "[-1, 1]"),
    ],
)
def test_settings_it_cannot_reproduce_are_refused_by_name(overrides, names):
    with pytest.raises(ConfigError, match=r"env\.vectorization=ale") as info:
        ale_options(atari(**overrides))
    assert names in str(info.value)


@pytest.mark.parametrize("stack", [1, 4])
def test_observations_match_the_gymnasium_path(stack):
    """Same spaces; without sticky actions and no-op starts, the same first frames after a reset."""
    config = atari(
        frame_stack=stack,
        kwargs={"frameskip": 1, "repeat_action_probability": 0.0},
        wrappers=[{PREP: {"noop_max": 0}}],
    )
    envs = make_vec_env(config)
    single = make_configured_env(config)
    try:
        assert envs.single_observation_space == single.observation_space
        obs, _ = envs.reset(seed=3)
        first, _ = single.reset(seed=3)
        assert obs.shape == (2, *single.observation_space.shape) and obs.dtype == np.uint8
        np.testing.assert_array_equal(obs[0], first)
        for _ in range(2):  # the stack's older frames are the first frame, as Gymnasium pads
            obs, *_ = envs.step(np.ones(2, dtype=np.int64))
            first, *_ = single.step(1)
            np.testing.assert_array_equal(obs[0], first)
        # an episode cut by the frame limit: same-step autoreset, its last frames in final_obs
        cut = make_vec_env(config.model_copy(update={"max_episode_steps": 40}))
        cut.reset(seed=0)
        for _ in range(10):
            _, _, terminated, truncated, info = cut.step(np.zeros(2, dtype=np.int64))
            if truncated.any():
                break
        assert truncated.all() and not terminated.any()
        assert info["final_obs"].shape == obs.shape
        cut.close()
    finally:
        envs.close()
        single.close()


def _train(steps: int, resume_from=None, **extra) -> PPO:
    settings = {
        **{f"env.{k}": v for k, v in atari(num_envs=2).model_dump().items() if k != "kwargs"},
        "env.kwargs": {"frameskip": 1},
        "env.max_episode_steps": 100,  # frames: episodes end (truncated) inside the short run
        "ppo.n_steps": 16,
        "ppo.minibatch_size": 16,
        "ppo.n_epochs": 1,
        "policy.cnn_features": 32,
        "policy.hidden_sizes": [32],
        "run.eval_interval": 0,
        "run.checkpoint_interval": 0,
        "run.seed": 5,
        **extra,
    }
    if resume_from is not None:
        agent = PPO.load(resume_from)
    else:
        agent = PPO(config=TrainConfig().with_overrides(settings))
    agent.learn(steps)
    return agent


def test_training_is_reproducible_and_resumes(tmp_path):
    first, second = _train(96), _train(96)
    try:
        for p, q in zip(first.policy.parameters(), second.policy.parameters(), strict=True):
            assert torch.equal(p, q)  # the copies' threads do not change what they return
        assert first.state.last_metrics["episodes"] > 0  # episodes ended by the 100-frame limit
        path = first.save(tmp_path / "agent")
    finally:
        first.close()
        second.close()
    resumed = _train(32, resume_from=path)  # new episodes, training goes on
    try:
        assert resumed.num_timesteps == 128
    finally:
        resumed.close()


def test_pipelined_collection_stores_what_the_environment_did(monkeypatch):
    """The copies step in two halves while the policy chooses the other half's actions; replaying
    the stored actions on fresh copies with plain vector steps gives back the stored observations,
    rewards and episode ends, step for step (no half is a step off)."""
    from ppo_envkit.algo import collector as collector_module

    calls = []
    pipelined = collector_module.collect_pipelined
    monkeypatch.setattr(collector_module, "collect_pipelined", lambda *a: calls.append(1) or pipelined(*a))
    agent = _train(32, **{"env.max_episode_steps": 40})  # one rollout of 16 steps of 2 copies
    assert calls == [1]
    config = agent.config.env  # (episodes cut by the limit inside the rollout)
    buf = agent._trainer.collector.rollout
    policy = agent.policy
    stored = buf.observations().reshape(16, 2, -1)
    envs = make_vec_env(config)
    try:
        obs, _ = envs.reset(seed=agent.config.run.seed)
        for t in range(16):
            np.testing.assert_array_equal(policy.flattener(obs), stored[t].numpy())
            actions = policy.head.to_env(buf.actions[t])
            obs, reward, terminated, truncated, _ = envs.step(actions)
            np.testing.assert_array_equal(buf.rewards[t].numpy(), reward.astype(np.float32))
            np.testing.assert_array_equal(buf.episode_end[t].numpy(), terminated | truncated)
        assert buf.episode_end.any() and buf.truncated.any()  # the 40-frame limit was met
    finally:
        envs.close()
        agent.close()
