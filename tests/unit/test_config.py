"""Settings: validation in one readable line, dotted overrides, YAML round trip, presets."""

from __future__ import annotations

import pytest

from ppo_envkit.config import ConfigError, TrainConfig, load_config
from ppo_envkit.presets import load_preset, preset_for_env, preset_paths, same_environment


def test_defaults_and_derived_sizes():
    c = TrainConfig().with_overrides({"env.num_envs": 16, "ppo.n_steps": 1024, "ppo.minibatch_size": 64})
    assert c.batch_size == 16384 and c.minibatch_size == 64 and c.num_minibatches == 256
    c = c.with_overrides({"ppo.minibatch_size": 100_000})
    assert c.minibatch_size == c.batch_size and c.num_minibatches == 1
    c = c.with_overrides({"ppo.minibatch_size": 5000})
    assert c.num_minibatches == 4  # the last minibatch is smaller; every sample is used


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("ppo.gamma=2", "ppo.gamma = 2: input should be less than or equal to 1 (allowed: >= 0 and <= 1)"),
        ("ppo.learning_rate=-1", "ppo.learning_rate = -1"),
        ("env.num_envs=0", "env.num_envs = 0"),
        ("env.vectorization=threads", "input should be 'sync', 'async' or 'ale'"),
        ("ppo.gama=0.9", "unknown setting 'ppo.gama' in section 'ppo'; known: n_steps"),
        ("policy.hidden_sizes=[]", "policy.hidden_sizes = []: needs at least one layer"),
        ("gamma=0.9", "use section.field"),
        ("nope.gamma=1", "unknown setting 'nope.gamma': sections are env, policy, ppo, run"),
    ],
)
def test_invalid_values_name_the_field_and_range(override, expected):
    with pytest.raises(ConfigError) as info:
        TrainConfig().with_overrides([override])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_set_values_parse_like_yaml():
    c = TrainConfig().with_overrides(
        [
            "ppo.learning_rate=1e-3",
            "policy.hidden_sizes=[32, 16]",
            "ppo.anneal_lr=true",
            "env.kwargs.continuous=true",
            "ppo.target_kl=null",
        ]
    )
    assert c.ppo.learning_rate == 1e-3 and c.policy.hidden_sizes == [32, 16] and c.ppo.anneal_lr
    assert c.env.kwargs == {"continuous": True} and c.ppo.target_kl is None


def test_yaml_round_trip(tmp_path):
    c = TrainConfig().with_overrides({"ppo.gamma": 0.95, "env.kwargs": {"a": [1, 2]}, "run.seed": 3})
    path = tmp_path / "c.yaml"
    c.save_yaml(path)
    assert load_config(path) == c


def test_yaml_errors_are_one_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("ppo:\n  clip_coef: 0\n  bogus: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "ppo.clip_coef = 0" in str(info.value) and "unknown setting 'ppo.bogus'" in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_same_environment_with_or_without_its_module():
    assert same_environment("CartPole-v1", "gymnasium:CartPole-v1")
    assert same_environment("minigrid:MiniGrid-Empty-5x5-v0", "MiniGrid-Empty-5x5-v0")
    assert same_environment("pettingzoo.classic.tictactoe_v3:env", "pettingzoo.classic.tictactoe_v3:env")
    assert not same_environment(
        "pettingzoo.classic.tictactoe_v3:env", "pettingzoo.classic.connect_four_v3:env"
    )
    assert not same_environment("CartPole-v1", "CartPole-v0")


def test_presets_load_and_are_picked_by_env():
    names = set(preset_paths())
    assert {"cartpole", "lunarlander", "lunarlander-continuous", "zoo-lunarlander"} <= names
    for name in names:
        load_preset(name)  # every shipped preset is valid
    assert preset_for_env("CartPole-v1") == "cartpole"
    assert preset_for_env("LunarLander-v3") == "lunarlander"
    assert preset_for_env("LunarLander-v3", {"continuous": True}) == "lunarlander-continuous"
    assert preset_for_env("Pendulum-v1") is None
    assert preset_for_env("pettingzoo.classic.tictactoe_v3:env") == "tictactoe"
    # the same factory name in another module is another game
    assert preset_for_env("pettingzoo.classic.connect_four_v3:env") is None
    with pytest.raises(ConfigError, match="unknown preset 'nope'; available: "):
        load_preset("nope")


def test_zoo_preset_matches_rl_baselines3_zoo():
    c = load_preset("zoo-lunarlander")
    assert (c.env.num_envs, c.ppo.n_steps, c.ppo.minibatch_size, c.ppo.n_epochs) == (16, 1024, 64, 4)
    assert (c.ppo.gamma, c.ppo.gae_lambda, c.ppo.ent_coef) == (0.999, 0.98, 0.01)
    assert (c.ppo.learning_rate, c.ppo.clip_coef, c.ppo.vf_coef, c.ppo.max_grad_norm) == (3e-4, 0.2, 0.5, 0.5)
    assert not c.ppo.anneal_lr and not c.env.normalize_obs and c.policy.hidden_sizes == [64, 64]
