"""``ppo-envkit new-env``: names, no overwriting, and a result that checks and trains at once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_envkit import PPO, evaluate
from ppo_envkit.cli import main
from ppo_envkit.environments.registry import temporary_registrations
from ppo_envkit.environments.scaffold import ScaffoldError, names_for


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder as the current directory; registrations undone afterwards."""
    monkeypatch.chdir(tmp_path)
    with temporary_registrations():
        yield tmp_path


@pytest.mark.parametrize(
    ("name", "env_id", "class_name", "stem", "preset"),
    [
        ("GridWorld", "GridWorld-v0", "GridWorld", "grid_world", "grid-world"),
        ("grid-world", "grid-world-v0", "GridWorld", "grid_world", "grid-world"),
        ("my_env", "my_env-v0", "MyEnv", "my_env", "my-env"),
        ("PIDTuner", "PIDTuner-v0", "PIDTuner", "pid_tuner", "pid-tuner"),
        ("lab/Robot-v2", "lab/Robot-v2", "Robot", "robot", "robot"),
    ],
)
def test_names(name, env_id, class_name, stem, preset):
    names = names_for(name)
    assert (names["env_id"], names["class_name"], names["file_stem"], names["preset"]) == (
        env_id,
        class_name,
        stem,
        preset,
    )


@pytest.mark.parametrize("name", ["3d", "grid world", "", "-x", "grid$"])
def test_unusable_names_are_refused(name):
    with pytest.raises(ScaffoldError, match="cannot make an environment called"):
        names_for(name)


def test_new_env_checks_and_trains_at_once(project, capsys):
    assert main(["new-env", "GridWorld"]) == 0
    err = capsys.readouterr().err
    for path in ("envs/grid_world.py", "tests/test_grid_world.py", "agents/grid-world.yaml"):
        assert (project / path).is_file() and f"created {path}" in err
    assert "ppo-envkit train GridWorld-v0" in err
    # ./envs is discovered: no --env-module needed
    assert main(["envs", "check", "GridWorld-v0"]) == 0
    out = capsys.readouterr().out
    assert "GridWorld-v0: passed" in out and "GridWorld-v0(continuous=True): passed" in out
    for kind in ("discrete", "continuous"):
        run = project / "runs" / kind
        argv = ["train", "GridWorld-v0", "--action-space", kind, "--total-timesteps", "1024"]
        assert main([*argv, "--run-dir", str(run), "--no-progress"]) == 0
        assert "with preset 'grid-world'" in capsys.readouterr().err
        assert main(["eval", str(run), "--episodes", "2"]) == 0


def test_new_env_refuses_to_overwrite(project, capsys):
    (project / "agents").mkdir()
    (project / "agents" / "grid-world.yaml").write_text("mine\n")
    assert main(["new-env", "GridWorld"]) == 1
    assert "not overwriting existing files: agents/grid-world.yaml" in capsys.readouterr().err
    assert (project / "agents" / "grid-world.yaml").read_text() == "mine\n"
    assert not (project / "envs").exists()  # nothing written when anything exists


def test_new_env_refuses_a_registered_id(project, capsys):
    assert main(["new-env", "CartPole-v1"]) == 1
    assert "'CartPole-v1' is already registered" in capsys.readouterr().err


@pytest.mark.slow  # two 20k-step learning runs
def test_scaffolded_env_learns_with_its_preset(project):
    """The preset solves the scaffolded task in 20k steps (a few seconds): optimal is about 2."""
    assert main(["new-env", "GridWorld"]) == 0
    for continuous in (False, True):
        agent = PPO.from_preset("grid-world", overrides={"env.kwargs.continuous": continuous})
        before = evaluate(agent, 50, deterministic=False).mean_return
        agent.learn()
        agent.close()
        after = evaluate(agent, 100, seed=1000).mean_return
        assert before < 0.8 and after >= 1.8, (continuous, before, after)


@pytest.mark.slow  # pytest in a second process
def test_the_scaffolded_test_passes(project):
    """The test file that new-env writes runs green with pytest, from the project folder."""
    assert main(["new-env", "GridWorld"]) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_grid_world.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
