"""Settings have one life: what may change between training calls (and on ``train --resume``)
is applied, the rest is refused in one line that names it."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.cli import main
from ppo_envkit.errors import ConfigError
from ppo_envkit.live_settings import MUTABLE, changed_keys, settings_change


def _small(**extra) -> TrainConfig:
    settings = {"env.id": "CartPole-v1", "env.num_envs": 2, "ppo.n_steps": 32, "run.eval_interval": 0}
    return TrainConfig().with_overrides({**settings, **extra})


def test_settings_change_names_every_key_that_may_not_change():
    old = _small()
    new = old.with_overrides({"ppo.learning_rate": 1e-4, "env.num_envs": 4, "policy.hidden_sizes": [8]})
    assert changed_keys(old, new) == ["env.num_envs", "policy.hidden_sizes", "ppo.learning_rate"]
    with pytest.raises(ConfigError) as info:
        settings_change(old, new)
    text = str(info.value)
    assert "env.num_envs (2 -> 4)" in text and "policy.hidden_sizes ([64, 64] -> [8])" in text
    assert "ppo.learning_rate (" not in text and "\n" not in text
    assert settings_change(old, old.with_overrides({"ppo.learning_rate": 1e-4})) == ["ppo.learning_rate"]
    assert all(key.count(".") == 1 for key in MUTABLE)


def test_a_setting_changed_in_place_between_learn_calls_is_seen():
    agent = PPO(config=_small())
    agent.learn(64)
    agent.config.ppo.n_steps = 16  # in place: the trainer keeps its own copy, so this is a change
    with pytest.raises(ConfigError, match=r"ppo\.n_steps \(32 -> 16\)"):
        agent.learn(64)
    agent.config.ppo.n_steps = 32
    agent.config.ppo.ent_coef = 0.05  # may change
    agent.learn(64)
    assert agent.num_timesteps == 128
    agent.close()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run dir"
    argv = ["train", "CartPole-v1", "--run-dir", str(run), "--num-envs", "2", "--set", "ppo.n_steps=32"]
    assert main([*argv, "--total-timesteps", "128", "--no-progress"]) == 0
    return run


@pytest.fixture
def run_dir(trained_run, tmp_path):
    """A copy of one trained run (training it once for every test would take seconds each)."""
    return shutil.copytree(trained_run, tmp_path / "run dir")


def _final_config(run) -> dict:
    return json.loads((run / "agent" / "agent.json").read_text())["config"]


def test_resume_applies_and_echoes_what_may_change(run_dir, capsys):
    capsys.readouterr()
    argv = ["train", "--resume", str(run_dir), "--set", "ppo.learning_rate=0.0001", "--no-progress"]
    assert main([*argv, "--total-timesteps", "192"]) == 0
    err = capsys.readouterr().err
    assert "resume: ppo.learning_rate 0.001 -> 0.0001 (--set)" in err  # the cartpole preset's 0.001
    assert "resume: run.total_timesteps 128 -> 192 (--total-timesteps)" in err
    config = _final_config(run_dir)
    assert config["ppo"]["learning_rate"] == 0.0001 and config["run"]["total_timesteps"] == 192
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["ppo"]["learning_rate"] == 0.0001


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--seed", "3"], "--seed"),
        (["--num-envs", "4"], "--num-envs"),
        (["--processes", "2"], "--processes"),
        (["--preset", "cartpole"], "--preset"),
        (["--set", "policy.hidden_sizes=[8]"], "policy.hidden_sizes"),
        (["--set", "env.max_episode_steps=50"], "env.max_episode_steps"),
        (["LunarLander-v3"], "trains CartPole-v1, not LunarLander-v3"),
    ],
)
def test_resume_refuses_what_may_not_change_in_one_line(run_dir, capsys, extra, named):
    before = (run_dir / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--no-progress", *extra]) != 0
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1, err
    assert (run_dir / "config.yaml").read_text() == before  # nothing rewritten


def test_an_edited_config_yaml_is_applied_or_refused_never_overwritten(run_dir, capsys):
    path = run_dir / "config.yaml"
    data = yaml.safe_load(path.read_text())
    data["env"]["num_envs"] = 4
    path.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "env.num_envs (2 -> 4)" in err and "config.yaml (edited)" in err
    assert yaml.safe_load(path.read_text())["env"]["num_envs"] == 4  # the user's edit is still there
    data["env"]["num_envs"] = 2
    data["ppo"]["ent_coef"] = 0.02
    path.write_text(yaml.safe_dump(data))
    assert main(["train", "--resume", str(run_dir), "--total-timesteps", "192", "--no-progress"]) == 0
    assert "resume: ppo.ent_coef 0.0 -> 0.02" in capsys.readouterr().err
    assert _final_config(run_dir)["ppo"]["ent_coef"] == 0.02
