"""The command line, run in-process as a user would type it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ppo_envkit.cli import main


def test_train_then_eval_json(tmp_path, capsys):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "CartPole-v1",
            "--total-timesteps",
            "2048",
            "--seed",
            "1",
            "--run-dir",
            str(run),
            "--num-envs",
            "4",
            "--set",
            "ppo.n_steps=64",
            "--set",
            "run.checkpoint_interval=512",
            "--no-progress",
        ]
    )
    assert code == 0
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "progress.csv", "tb", "agent", "checkpoints"} <= names
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    lines = (run / "progress.csv").read_text().splitlines()
    header = lines[0].split(",")
    for column in (
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
        "sps",
        "episode_return",
    ):
        assert column in header
    assert len(lines) == 1 + 2048 // 256
    assert len(list((run / "checkpoints").iterdir())) == 3  # keep_checkpoints
    err = capsys.readouterr().err
    assert "ppo-envkit replay" in err and "ppo-envkit eval" in err
    assert main(["eval", str(run), "--episodes", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 3 and {"mean_return", "std_return"} <= set(out)
    assert main(["eval", str(run / "agent"), "--episodes", "2", "--stochastic"]) == 0
    assert "stochastic episodes" in capsys.readouterr().out
    assert main(["eval", str(run), "--episodes", "4", "--seed", "3", "--write-result"]) == 0
    recorded = json.loads((run / "agent" / "agent.json").read_text())["evaluation"]
    assert (
        recorded["episodes"] == 4 and recorded["seed"] == 3 and "--episodes 4 --seed 3" in recorded["command"]
    )
    assert recorded["mean_return"] == pytest.approx(
        float(capsys.readouterr().out.split("mean return ")[1].split()[0]), abs=0.01
    )
    provenance = json.loads((run / "agent" / "agent.json").read_text())["provenance"]
    assert provenance["seed"] == 1 and "--total-timesteps 2048" in provenance["command"]


def test_invalid_setting_is_one_line_and_nonzero():
    proc = subprocess.run(
        [sys.executable, "-m", "ppo_envkit", "train", "CartPole-v1", "--set", "ppo.gamma=2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "ppo.gamma" in lines[0] and "<= 1" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "NoSuchEnv-v0"], "unknown environment 'NoSuchEnv-v0'"),
        (["train", "CartPole-v1", "--preset", "nope"], "unknown preset 'nope'"),
        (["eval", "no/such/dir"], "no agent or run directory"),
        (["train", "--resume", "no/such/run"], "no checkpoint found"),
    ],
)
def test_known_errors_are_one_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_non_finite_reward_stops_with_step_and_keeps_checkpoint(tmp_path, capsys, toy_env_ids):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            toy_env_ids["nan"],
            "--run-dir",
            str(run),
            "--num-envs",
            "2",
            "--set",
            "ppo.n_steps=8",
            "--total-timesteps",
            "1000",
            "--no-progress",
            "--env-module",
            "tests.toy_envs",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    # each copy returns NaN on its 200th step: vector step 200 = training step 400, in the
    # iteration that started at step 384 (16 steps per iteration): that state is the last good one
    assert "non-finite reward at training step 400" in err and "last good checkpoint" in err
    checkpoints = list((run / "checkpoints").iterdir())
    assert [p.name for p in checkpoints] == [f"step_{384:010d}"]


def test_ctrl_c_saves_and_resume_continues(tmp_path, capsys, monkeypatch):
    from ppo_envkit.algo.learner import Learner

    run = tmp_path / "run"
    original = Learner.update
    calls = {"n": 0}

    def update_then_interrupt(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Learner, "update", update_then_interrupt)
    argv = [
        "train",
        "CartPole-v1",
        "--run-dir",
        str(run),
        "--num-envs",
        "2",
        "--set",
        "ppo.n_steps=32",
        "--total-timesteps",
        "320",
        "--no-progress",
    ]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "checkpoint saved" in err and f"train --resume {run}" in err
    assert [p.name for p in (run / "checkpoints").iterdir()] == [f"step_{128:010d}"]
    monkeypatch.setattr(Learner, "update", original)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    rows = (run / "progress.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [64 * k for k in range(1, 6)]
    assert (run / "agent" / "agent.json").exists()


def test_preset_defaults_means_the_library_defaults_even_where_a_preset_exists():
    from ppo_envkit import TrainConfig
    from ppo_envkit.cli import build_parser
    from ppo_envkit.cli.train import resolve_train_config

    parser = build_parser()
    config, chosen = resolve_train_config(parser.parse_args(["train", "CartPole-v1"]))
    assert chosen == "cartpole" and config.ppo.n_epochs == 20
    config, chosen = resolve_train_config(parser.parse_args(["train", "CartPole-v1", "--preset", "defaults"]))
    assert chosen is None and config == TrainConfig().with_overrides({"env.id": "CartPole-v1"})


@pytest.mark.slow  # a second process: the hint pasted into a new shell
def test_hints_after_training_name_the_env_module_so_they_work_as_printed(tmp_path, capsys, monkeypatch):
    """A run of an environment from --env-module prints eval/replay commands that carry it."""
    import gymnasium as gym

    monkeypatch.chdir(tmp_path)
    (tmp_path / "hint_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('HintPole-v0', entry_point='gymnasium.envs.classic_control:CartPoleEnv', "
        "max_episode_steps=50)\n"
    )
    argv = ["train", "HintPole-v0", "--env-module", "hint_envs.py", "--total-timesteps", "64"]
    try:
        assert main([*argv, "--set", "env.num_envs=1", "--set", "run.eval_interval=0", "--no-progress"]) == 0
        err = capsys.readouterr().err
        hints = [line for line in err.splitlines() if line.startswith(("evaluate:", "watch it:"))]
        assert len(hints) == 2 and all(h.endswith(" --env-module hint_envs.py") for h in hints), hints
        command = hints[0].split(":", 1)[1].split()  # pasted into a new shell, with one episode
        assert command[:2] == ["ppo-envkit", "eval"]
        pasted = [sys.executable, "-m", "ppo_envkit", *command[1:3], "--episodes", "1", *command[5:]]
        done = subprocess.run(pasted, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        gym.registry.pop("HintPole-v0", None)


def test_eval_prints_returns_with_the_precision_they_need():
    """Returns below 1 were printed as 'mean 0.96 +- 0.00 (min 1.0, max 1.0)'."""
    from ppo_envkit.io.runlog import return_decimals

    small = (0.9638, 0.0041, 0.955, 0.9901)
    places = return_decimals(*small)
    assert [f"{v:.{places}f}" for v in small] == ["0.96380", "0.00410", "0.95500", "0.99010"]
    assert return_decimals(268.02, 22.94, 230.6, 308.7) == 2  # the usual case is as before
    assert return_decimals(500.0, 0.0, 500.0, 500.0) == 2  # a zero spread needs no digits
    assert return_decimals(0.0, 0.0, 0.0, 0.0) == 2 and return_decimals(1e-12) == 6
    # the spread of 20 equal returns of 0.955, as numpy computes it, is rounding noise
    noise = float(np.std([0.955] * 20))
    assert return_decimals(0.955, noise) == 3


def test_training_evaluation_line_has_the_precision_the_returns_need():
    """The evaluations during training printed 'mean return 1.0 +- 0.0' for MiniGrid's 0.955."""
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from ppo_envkit.io.runlog import RunLogger

    out = io.StringIO()
    logger = RunLogger(None, progress=True, console=Console(file=out, force_terminal=False, width=200))
    state = SimpleNamespace(num_timesteps=30720, target_timesteps=100_000, iteration=15)
    run = SimpleNamespace(state=state, config=SimpleNamespace(run=SimpleNamespace(eval_episodes=5)))
    metrics = {
        "episode_return": 0.9125,
        "sps": 150.0,
        "eval_return": 0.955,
        "eval_return_std": float(np.std([0.955] * 5)),
    }
    logger.log_iteration(run, metrics)
    assert "evaluation at step 30720: mean return 0.955 +- 0.000 over 5 episodes" in out.getvalue()
    # the final evaluation's line counts its own episodes (it printed run.eval_episodes)
    logger.log_iteration(run, {**metrics, "eval_episodes": 20.0})
    assert "mean return 0.955 +- 0.000 over 20 episodes" in out.getvalue()
