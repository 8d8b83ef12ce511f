"""``ppo-envkit tune``: a study beats a bad start, prunes, resumes after an interruption."""

from __future__ import annotations

import optuna
import pytest
import yaml

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.cli import main
from ppo_envkit.tuning import TuneSettings, trial_config, tune

TOY = ("tests.toy_envs:register_all",)  # the worker processes register the toy environments
BAD = {"ppo.learning_rate": 1e-7}  # learns nothing in a few thousand steps
STEPS = 3072


def _good(lr: float) -> dict:
    return {
        "ppo.learning_rate": lr,
        "ppo.n_steps": 64,
        "ppo.minibatch_size": 64,
        "ppo.n_epochs": 10,
        "ppo.gamma": 0.9,
        "ppo.gae_lambda": 0.95,
        "ppo.clip_coef": 0.2,
        "ppo.ent_coef": 1e-8,
        "policy.hidden_sizes": "64x64",
        "env.normalize_obs": False,
        "env.normalize_reward": False,
    }


def _score(env_id: str, base: TrainConfig) -> float:
    settings = TuneSettings(env_id=env_id, base=base.model_dump(), steps_per_trial=STEPS, evaluations=3)
    agent = PPO(config=trial_config(settings, {}))
    agent.learn(STEPS)
    return agent.last_metrics["eval_return"]


def test_a_study_beats_a_bad_start_and_prunes_weak_trials(toy_env_ids, tmp_path):
    env_id = toy_env_ids["reach"]
    base = TrainConfig().with_overrides({"env.id": env_id, **BAD})
    bad = _score(env_id, base)
    weak = {**_good(1e-5), "ppo.n_epochs": 2, "ppo.n_steps": 32}  # after two good ones: pruned
    result = tune(
        env_id,
        base,
        trials=5,
        steps_per_trial=STEPS,
        evaluations=3,
        jobs=1,
        study_dir=tmp_path / "study",
        preset_name="reach-tuned",
        preset_dir=tmp_path / "agents",
        modules=TOY,
        first_trials=(_good(3e-3), _good(1e-3), weak),
    )
    assert result.trials == 5 and result.best_value > bad + 1.0  # -14 random, near 0 solved
    assert result.pruned >= 1
    assert (tmp_path / "study" / "history.png").stat().st_size > 1000
    preset = yaml.safe_load(result.preset.read_text())
    assert (
        preset["env"]["id"] == env_id
        and preset["ppo"]["learning_rate"] == result.best_settings["ppo.learning_rate"]
    )
    # the preset trains as it scored
    assert PPO.from_preset(str(result.preset)).config.ppo.learning_rate == preset["ppo"]["learning_rate"]


def test_an_interrupted_study_resumes(toy_env_ids, tmp_path, monkeypatch):
    env_id = toy_env_ids["reach"]
    study_dir = tmp_path / "study"
    kwargs = {"steps_per_trial": 1024, "evaluations": 2, "jobs": 2, "study_dir": study_dir, "modules": TOY}
    tune(env_id, trials=2, preset_dir=tmp_path / "agents", **kwargs)
    # a trial left running, as when the process is killed mid-trial
    study = optuna.load_study(study_name="ppo-envkit", storage=f"sqlite:///{study_dir / 'study.db'}")
    study.ask()
    with pytest.raises(FileExistsError, match="--resume"):
        tune(env_id, trials=4, preset_dir=tmp_path / "agents", **kwargs)
    result = tune(env_id, trials=4, resume=True, preset_dir=tmp_path / "agents", **kwargs)
    states = [t.state for t in result.study.get_trials(deepcopy=False)]
    assert states.count(optuna.trial.TrialState.FAIL) == 1  # the stale one
    assert result.trials == 4 and states.count(optuna.trial.TrialState.RUNNING) == 0


def test_tune_command_writes_a_preset_train_uses(toy_env_ids, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["tune", toy_env_ids["reach"], "--trials", "2", "--steps-per-trial", "1024", "--evaluations", "2"]
    args += ["--jobs", "1", "--env-module", TOY[0], "--name", "mine"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "train with it: ppo-envkit train test/ReachTarget-v0 --preset mine" in err
    assert (tmp_path / "agents" / "mine.yaml").exists()
    run = ["train", toy_env_ids["reach"], "--preset", "mine", "--total-timesteps", "256", "--no-progress"]
    assert main([*run, "--run-dir", str(tmp_path / "run")]) == 0
