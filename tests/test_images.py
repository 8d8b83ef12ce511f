"""Image observations: detected, encoded by a CNN (channel-last and channel-first alike),
left out of normalization, mixed with vector parts in a Dict, frame-stacked, saved,
loaded, resumed and replayed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, evaluate, load_agent
from ppo_envkit.algo.encoders import ImageEncoder
from ppo_envkit.algo.fastpath import NumpyBackend
from ppo_envkit.algo.policy import ActorCritic
from ppo_envkit.config import EnvConfig, PolicyConfig
from ppo_envkit.environments.checker import check_environment
from ppo_envkit.errors import ConfigError
from ppo_envkit.spaces import image_layout

from .resume import assert_resume_is_exact


def box(shape, dtype=np.uint8, low=0, high=255):
    return spaces.Box(low, high, shape, dtype)


@pytest.mark.parametrize(
    ("space", "chw"),
    [
        (box((16, 16, 3)), (3, 16, 16)),
        (box((3, 16, 16)), (3, 16, 16)),
        (box((84, 84)), (1, 84, 84)),
        (box((4, 84, 84)), (4, 84, 84)),  # four stacked grey frames
        (box((4, 16, 16, 3)), (12, 16, 16)),  # four stacked colour frames
        (box((2, 3, 16, 16)), (6, 16, 16)),
        (box((10, 12, 1)), (1, 10, 12)),
    ],
)
def test_image_layouts(space, chw):
    layout = image_layout(space)
    assert layout is not None and layout.chw == chw


@pytest.mark.parametrize(
    "space",
    [
        box((16, 16, 3), np.float32, 0.0, 1.0),  # not uint8
        box((16, 16, 3), np.uint8, 0, 10),  # not 0..255
        box((4, 4, 3)),  # too small
        box((16,)),
        spaces.Discrete(3),
    ],
)
def test_not_images(space):
    assert image_layout(space) is None


def policy_for(space, seed=0, **policy):
    torch.manual_seed(seed)
    return ActorCritic(space, spaces.Discrete(3), PolicyConfig(**policy), EnvConfig(), 0.99)


def test_channel_last_and_channel_first_give_the_same_network():
    last, first = policy_for(box((20, 24, 3))), policy_for(box((3, 20, 24)))
    assert isinstance(last.encoder, ImageEncoder) and not NumpyBackend.supports(last)
    assert [p.shape for p in last.parameters()] == [p.shape for p in first.parameters()]
    images = np.random.default_rng(0).integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)
    x_last = last.obs_norm(last.obs_to_tensor(images))
    x_first = first.obs_norm(first.obs_to_tensor(images.transpose(0, 3, 1, 2).copy()))
    params_last, value_last = last(x_last)
    params_first, value_first = first(x_first)
    torch.testing.assert_close(params_last, params_first)
    torch.testing.assert_close(value_last, value_first)


def test_encoder_sizes_follow_the_setting():
    small = policy_for(box((16, 16, 3)))
    assert isinstance(small.encoder.cnns[0][0], torch.nn.Conv2d) and small.encoder.cnns[0][0].kernel_size == (
        3,
        3,
    )
    nature = policy_for(box((64, 64, 3)))
    assert nature.encoder.cnns[0][0].kernel_size == (8, 8)
    assert policy_for(box((64, 64, 3)), image_encoder="small").encoder.cnns[0][0].kernel_size == (3, 3)
    flat = policy_for(box((16, 16, 3)), image_encoder="none")
    assert flat.encoder is None and flat.actor_trunk[0].in_features == 16 * 16 * 3
    with pytest.raises(ConfigError, match="at least 36 x 36"):
        policy_for(box((16, 16, 3)), image_encoder="nature")
    with pytest.raises(ConfigError, match="parameters"):
        policy_for(box((2048, 2048, 3)), cnn_features=4096)


def test_pixels_skip_normalization_and_are_scaled_in_the_model():
    space = spaces.Dict({"image": box((12, 12, 3)), "speed": spaces.Box(-50.0, 50.0, (2,), np.float32)})
    policy = policy_for(space)
    assert policy.obs_norm.mask.sum() == 2  # only the vector part is normalized
    rng = np.random.default_rng(0)
    obs = {
        "image": rng.integers(0, 256, (64, 12, 12, 3), dtype=np.uint8),
        "speed": rng.normal(20, 5, (64, 2)),
    }
    raw = policy.obs_to_tensor(obs)
    policy.obs_norm.update(raw)
    normalized = policy.obs_norm(raw)
    assert torch.equal(normalized[:, :432], raw[:, :432])  # pixels untouched (and not clipped to +-10)
    assert normalized[:, 432:].abs().mean() < 2.0
    assert policy.encoder.out_features == 256 + 2  # CNN features + the vector part
    assert policy.actor_trunk[0].in_features == 258


@pytest.mark.slow  # two learning runs
def test_cnn_policy_learns_from_pixels_in_either_layout(masked_env_ids):
    """Spot: a square on the left or the right of a 12 px image; acting on its side pays 1."""
    for name in ("spot", "spot_cf"):
        agent = PPO(config=TrainConfig().with_overrides(
            {"env.id": masked_env_ids[name], "env.num_envs": 8, "ppo.n_steps": 32, "ppo.minibatch_size": 128,
             "ppo.n_epochs": 4, "run.seed": 1, "run.eval_interval": 0}
        ))  # fmt: skip
        assert agent.policy.encoder is not None
        agent.learn(3072)
        assert evaluate(agent, 50, seed=9).mean_return >= 0.9  # chance: 0.5
        agent.close()


def test_frame_stack_is_remembered_and_used_by_eval_and_replay(masked_env_ids, tmp_path):
    from ppo_envkit.viewer import Viewer

    cfg = TrainConfig().with_overrides(
        {"env.id": masked_env_ids["spot"], "env.frame_stack": 3, "env.num_envs": 4, "ppo.n_steps": 16,
         "ppo.minibatch_size": 32, "ppo.n_epochs": 2, "run.eval_interval": 0}
    )  # fmt: skip
    agent = PPO(config=cfg).learn(128)
    assert agent.observation_space.shape == (3, 12, 12, 3)
    assert agent.policy.encoder.layouts[0].chw == (9, 12, 12)
    path = agent.save(tmp_path / "agent")
    agent.close()
    loaded = load_agent(str(path))
    assert loaded.config.env.frame_stack == 3 and loaded.observation_space.shape == (3, 12, 12, 3)
    assert evaluate(loaded, 4).episodes == 4
    viewer = Viewer(loaded, headless=True)
    viewer.tick(3)
    assert viewer.panes[0].obs.shape == (3, 12, 12, 3)
    viewer.close()


def test_resume_with_a_cnn_and_frame_stack_equals_an_unbroken_run(masked_env_ids, tmp_path):
    cfg = TrainConfig().with_overrides(
        {"env.id": masked_env_ids["spot_cf"], "env.frame_stack": 2, "env.num_envs": 4, "ppo.n_steps": 16,
         "ppo.minibatch_size": 32, "ppo.n_epochs": 2, "run.seed": 4, "run.eval_interval": 0,
         "run.total_timesteps": 64 * 4, "policy.cnn_features": 32}
    )  # fmt: skip
    unbroken, _ = assert_resume_is_exact(cfg, tmp_path / "run")
    assert any(k.startswith("encoder.") for k in unbroken.policy.state_dict())


def test_checker_explains_images_that_miss_the_cnn():
    import gymnasium as gym

    from ppo_envkit import register_env
    from ppo_envkit.environments.registry import unregister_env

    class FloatPicture(gym.Env):
        def __init__(self, render_mode=None, dtype="float32", side=16):
            self.observation_space = (
                spaces.Box(0.0, 1.0, (side, side, 3), np.float32)
                if dtype == "float32"
                else box((side, side, 3))
            )
            self.action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, True, {}

    register_env("FloatPicture-v0", FloatPicture, overwrite=True)
    try:
        codes = {f.code for f in check_environment("FloatPicture-v0", quick=True).findings}
        assert "image-not-uint8" in codes
        small = check_environment("FloatPicture-v0", {"dtype": "uint8", "side": 4}, quick=True).findings
        assert "image-too-small" in {f.code for f in small}
        fine = check_environment("FloatPicture-v0", {"dtype": "uint8"}, quick=True).findings
        assert not {f.code for f in fine} & {"image-not-uint8", "image-too-small"}
    finally:
        unregister_env("FloatPicture-v0")


def test_rollout_keeps_pixels_as_uint8_and_minibatches_equal_the_float_path():
    """Image columns are stored once as uint8 (an eighth of the stored and packed float32
    copies); a minibatch gives back exactly the float rows the collector stored."""
    from ppo_envkit.algo.rollout import RolloutBuffer, rollout_bytes

    space = spaces.Dict(
        {"a": spaces.Box(-1.0, 1.0, (3,), np.float32), "image": box((12, 12, 3)), "z": spaces.Discrete(4)}
    )
    policy = policy_for(space)
    ranges = policy.flattener.image_ranges()
    assert ranges == [(3, 3 + 432)]  # between a (3 values) and z (one-hot of 4)
    dim = policy.flattener.flat_dim
    n_steps, n = 6, 5
    rollout = RolloutBuffer(n_steps, n, dim, 1, torch.device("cpu"), image_ranges=ranges)
    floats = RolloutBuffer(n_steps, n, dim, 1, torch.device("cpu"))
    assert rollout.pixels.dtype == torch.uint8 and rollout.pixels.shape == (n_steps, n, 432)
    assert rollout.obs.shape == (n_steps, n, dim - 432)
    image_bytes = rollout.pixels.numel() * rollout.pixels.element_size()
    float_image_bytes = 2 * n_steps * n * 432 * 4  # stored and packed, float32
    assert float_image_bytes == 8 * image_bytes
    assert rollout_bytes(n_steps, n, dim, 1, image_dim=432) < rollout_bytes(n_steps, n, dim, 1) / 4
    rng = np.random.default_rng(0)
    obs = {
        "a": rng.uniform(-1, 1, (n_steps * n, 3)).astype(np.float32),
        "image": rng.integers(0, 256, (n_steps * n, 12, 12, 3), dtype=np.uint8),
        "z": rng.integers(0, 4, n_steps * n),
    }
    flat = policy.obs_norm(policy.obs_to_tensor(obs)).reshape(n_steps, n, dim)
    for t in range(n_steps):
        rollout.store_obs(t, flat[t])
        floats.store_obs(t, flat[t])
    assert torch.equal(rollout.observations(), flat)
    for buf in (rollout, floats):
        buf.compute_advantages(0.99, 0.95)
    rows = torch.randperm(n_steps * n)[:7]
    assert torch.equal(rollout.minibatch(rows).obs, floats.minibatch(rows).obs)
    assert torch.equal(rollout.minibatch(rows).obs, flat.reshape(-1, dim)[rows])


def test_collection_stores_image_observations_as_uint8(masked_env_ids):
    cfg = TrainConfig().with_overrides(
        {"env.id": masked_env_ids["spot"], "env.num_envs": 4, "ppo.n_steps": 8, "ppo.minibatch_size": 16,
         "ppo.n_epochs": 1, "run.eval_interval": 0, "policy.cnn_features": 16}
    )  # fmt: skip
    agent = PPO(config=cfg).learn(32)
    rollout = agent._trainer.collector.rollout
    assert rollout.pixels.dtype == torch.uint8 and rollout.pixels.shape == (8, 4, 12 * 12 * 3)
    assert rollout.obs.shape == (8, 4, 0)
    assert torch.equal(rollout.observations()[-1], rollout.observations()[-1].round())
    rows = torch.arange(0, 32, 3)
    batch = rollout.minibatch(rows)  # one image: the minibatch holds its pixels, which the CNN takes
    assert batch.obs.dtype == torch.uint8
    assert torch.equal(batch.obs.float(), rollout.observations().reshape(32, -1)[rows])
    policy = agent.policy
    with torch.no_grad():
        assert torch.allclose(policy.features(batch.obs), policy.features(batch.obs.float()))
    agent.close()


def test_atari_preset_has_the_published_cleanrl_and_zoo_settings():
    from ppo_envkit.presets import load_preset

    c = load_preset("atari")
    assert (c.env.num_envs, c.ppo.n_steps, c.minibatch_size, c.ppo.n_epochs) == (8, 128, 256, 4)
    assert (c.ppo.learning_rate, c.ppo.anneal_lr, c.ppo.clip_coef, c.ppo.ent_coef) == (
        2.5e-4,
        True,
        0.1,
        0.01,
    )
    assert (c.ppo.gamma, c.ppo.gae_lambda, c.ppo.vf_coef, c.ppo.max_grad_norm) == (0.99, 0.95, 0.5, 0.5)
    assert c.env.frame_stack == 4 and c.env.kwargs == {"frameskip": 1} and not c.env.normalize_reward
    assert c.env.vectorization == "ale" and not c.env.seed_every_episode  # (the ALE's own vector)
    assert (c.policy.image_encoder, c.policy.cnn_features, c.run.total_timesteps) == (
        "nature",
        512,
        10_000_000,
    )


def test_image_defaults_apply_only_to_settings_left_unset(masked_env_ids, tmp_path):
    from ppo_envkit.config import IMAGE_DEFAULTS

    spot = masked_env_ids["spot"]  # 12 x 12 pictures: the small CNN's defaults
    agent = PPO(config=TrainConfig().with_overrides({"env.id": spot}))
    small = IMAGE_DEFAULTS["small"]
    # n_epochs=10 is the MLP default's value too, so it replaced nothing
    assert sorted(agent.image_defaults) == ["ppo.learning_rate", "ppo.minibatch_size"]
    assert (agent.config.ppo.n_epochs, agent.config.ppo.minibatch_size) == (10, 256)
    assert agent.config.ppo.learning_rate == small["ppo.learning_rate"]
    path = agent.save(tmp_path / "agent")
    agent.close()
    loaded = load_agent(str(path))  # the settings trained with, as saved: nothing applied again
    assert loaded.config == agent.config and loaded.image_defaults == []
    # a key the user set stays as set, even to the MLP default's value
    mine = PPO(config=TrainConfig().with_overrides({"env.id": spot, "ppo.minibatch_size": 64}))
    assert mine.config.ppo.minibatch_size == 64 and "ppo.minibatch_size" not in mine.image_defaults
    assert mine.config.ppo.learning_rate == small["ppo.learning_rate"]
    mine.close()
    # NatureCNN (pictures of 36 px and more under auto): its own, cheaper update
    from tests.pixel_suite import register_suite

    register_suite()
    catch40 = {"env.id": "PixelCatch-v0", "env.kwargs": {"size": 40}}
    nature = PPO(config=TrainConfig().with_overrides(catch40))
    assert sorted(nature.image_defaults) == sorted(IMAGE_DEFAULTS["nature"])
    assert (nature.config.ppo.n_epochs, nature.config.ppo.minibatch_size) == (4, 256)
    nature.close()
    flat = PPO(config=TrainConfig().with_overrides({"env.id": spot, "policy.image_encoder": "none"}))
    assert flat.image_defaults == [] and flat.config.ppo.n_epochs == 10  # no CNN: the MLP defaults
    flat.close()
    mlp = PPO(config=TrainConfig())  # CartPole
    assert mlp.image_defaults == [] and mlp.config == TrainConfig()
    mlp.close()


def test_acting_with_fixed_weights_keeps_bfloat16_weights_only_within_its_block():
    """Collection's block keeps autocast's bfloat16 copies of the weights between forward passes
    (the same outputs as casting at every pass), and a new block sees weights changed between
    blocks (an update), never stale copies."""
    policy = policy_for(box((36, 36, 3)), cnn_precision="bfloat16")
    images = np.random.default_rng(1).integers(0, 256, (4, 36, 36, 3), dtype=np.uint8)
    x = policy.obs_norm(policy.obs_to_tensor(images))

    def uncached():
        with torch.inference_mode(), policy.training_precision():
            return policy(x)

    with policy.acting_with_fixed_weights():
        first, again = policy(x), policy(x)
    expected = uncached()
    for got in (first, again):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with torch.no_grad():  # an update between two rollouts
        for p in policy.encoder.parameters():
            p.mul_(1.5)
    with policy.acting_with_fixed_weights():
        changed = policy(x)
    torch.testing.assert_close(changed, uncached(), rtol=0, atol=0)
    assert not torch.equal(changed[0], first[0])
