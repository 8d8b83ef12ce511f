"""``ppo-envkit tune``: a study beats a bad start, prunes, resumes after an interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.cli import main
from ppo_envkit.tuning import TuneSettings, trial_config, tune

from ..processes import descendants, wait_gone

ROOT = Path(__file__).resolve().parents[2]

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


# ----------------------------------------------------------------------------- faults

FAULTS = ("tests.fault_envs",)


def test_failed_and_killed_trials_are_recorded_and_the_study_goes_on(fault_env_ids, tmp_path, capsys):
    """A trial whose process is SIGKILLed (the OOM killer's way) is a failed trial, with how
    it died; the study runs its remaining trials. A study whose trials all fail ends with one
    line naming the first trial's error."""
    from ppo_envkit.tuning import ERROR_ATTR, StudyError

    marker = tmp_path / "killed-once"
    base = TrainConfig().with_overrides(
        {"env.id": fault_env_ids["dies_once"], "env.kwargs": {"fail_at": 100, "marker": str(marker)}}
    )
    kwargs = {"steps_per_trial": 1024, "evaluations": 2, "modules": FAULTS, "preset_dir": tmp_path / "agents"}
    result = tune(fault_env_ids["dies_once"], base, trials=3, jobs=1, study_dir=tmp_path / "s1", **kwargs)
    states = [t.state for t in result.study.get_trials(deepcopy=False)]
    assert marker.exists() and result.trials == 3 and states.count(optuna.trial.TrialState.FAIL) == 1
    (failed,) = [t for t in result.study.get_trials(deepcopy=False) if t.state.name == "FAIL"]
    assert "killed by signal 9 (SIGKILL)" in failed.user_attrs[ERROR_ATTR]

    base = TrainConfig().with_overrides({"env.id": fault_env_ids["raises"], "env.kwargs": {"fail_at": 10}})
    with pytest.raises(StudyError) as info:
        tune(fault_env_ids["raises"], base, trials=2, jobs=2, study_dir=tmp_path / "s2", **kwargs)
    message = str(info.value)
    assert "no trial completed" in message and "ValueError: the valve is at 100% (injected fault)" in message
    assert "\n" not in message


def _tuner(tmp_path: Path, *extra: str) -> subprocess.Popen:
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    args = ["tune", "test/ReachTarget-v0", "--env-module", TOY[0], "--trials", "6", "--jobs", "2"]
    args += ["--steps-per-trial", "4096", "--evaluations", "2", "--study-dir", "study", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "ppo_envkit", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": pythonpath},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _trials_running(proc: subprocess.Popen, timeout: float = 60) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = {p for p in descendants(proc.pid) if "resource_tracker" not in _cmdline(p)}
        if len(kids) >= 2:
            time.sleep(3.0)  # into their first trial
            return descendants(proc.pid)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("the trial processes did not start")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL"])
def test_stopping_the_tuner_stops_its_trials_and_the_study_resumes(tmp_path, how):
    """The tuner owns its processes: stopped by a signal to its process group (a closed terminal,
    Ctrl-C) or to itself (kill, kill -9), no trial process outlives it; a signal it can catch
    is one line and a resume command; the locked study then resumes and finishes."""
    proc = _tuner(tmp_path)
    try:
        trials = _trials_running(proc)
        second = _tuner(tmp_path, "--resume")  # meanwhile: refused, the study is in use
        _, err = second.communicate(timeout=60)
        assert second.returncode == 1 and "in use by another tuner" in err and "Traceback" not in err, err
        if how == "SIGKILL":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            os.killpg(proc.pid, getattr(signal, how))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert wait_gone(trials, timeout=10) == []
    if how != "SIGKILL":
        output = out + err
        assert proc.returncode == 130 and "Traceback" not in output, output
        (line,) = [x for x in output.splitlines() if x.startswith("continue with:")]
        assert "--resume" in line
    resumed = _tuner(tmp_path, "--resume")
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert "done: 6 trials" in out + err
