"""Evaluation that tells the truth (issue 23, item 5): training ends by comparing deterministic
and stochastic play, the agent records the mode, ``eval`` follows it and says when the other
mode scores clearly better."""

from __future__ import annotations

import json

import pytest

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.algo.evaluator import CLEARLY_Z, EvalResult, compare_modes, comparison_line
from ppo_envkit.cli import main
from ppo_envkit.cli.replay import start_mode

from . import text_envs


def _result(returns: list[float], deterministic: bool) -> EvalResult:
    import numpy as np

    arr = np.asarray(returns, float)
    return EvalResult(
        float(arr.mean()), float(arr.std()), float(arr.min()), float(arr.max()), 10.0, len(arr),
        deterministic, 0, "x", list(returns), [10] * len(arr),
    )  # fmt: skip


def test_compare_modes_uses_a_statistic_over_episodes():
    loops = [0.0, 0.96] * 10  # half the deterministic episodes loop until the time limit
    sampled = [0.95, 0.94, 0.96, 0.93] * 5
    verdict = compare_modes(_result(loops, True), _result(sampled, False))
    assert verdict["better"] == "stochastic" and verdict["mode"] == "stochastic" and verdict["z"] > CLEARLY_Z
    line = comparison_line(verdict)
    assert line is not None and line.startswith(
        "stochastic play scores clearly better: 0.95 +- 0.01 against 0.48 +- 0.48 deterministic"
    )
    assert "Welch z = " in line and "20 + 20 episodes" in line
    # the same gap over 4 episodes each is not clear
    few = compare_modes(_result([0.0, 0.96, 0.0, 0.96], True), _result([0.95, 0.94, 0.96, 0.93], False))
    assert few["better"] is None and few["mode"] == "deterministic" and comparison_line(few) is None
    # a difference of 1% with a spread of 30% is noise; the order of the arguments does not matter
    close = compare_modes(_result([1.0, 1.3, 0.7] * 10, False), _result([1.01, 1.31, 0.71] * 10, True))
    assert close["better"] is None
    # no spread at all: any real difference counts, either way
    flat = compare_modes(_result([1.0] * 5, True), _result([0.0] * 5, False))
    assert flat["better"] == "deterministic" and flat["z"] is None
    assert "no spread in either" in comparison_line(flat)
    same = compare_modes(_result([2.0] * 5, True), _result([2.0] * 5, False))
    assert same["better"] is None and same["z"] == 0.0
    with pytest.raises(ValueError, match="one deterministic and one stochastic"):
        compare_modes(_result([1.0], True), _result([1.0], True))


@pytest.fixture
def both_id():
    ids = text_envs.register_all()
    yield ids["both"]
    text_envs.unregister_all()


def test_the_mode_is_recorded_by_training_and_followed_by_eval(both_id, tmp_path, capsys):
    """Deterministic play takes one action forever (0); sampling ends nearly every episode (1)."""
    settings = {"env.id": both_id, "env.num_envs": 2, "ppo.n_steps": 16, "run.eval_interval": 32}
    agent = PPO(config=TrainConfig().with_overrides(settings)).learn(64)
    record = agent.state.eval_mode
    assert record["mode"] == "stochastic" and record["better"] == "stochastic"
    assert record["deterministic"]["mean_return"] == 0.0 and record["stochastic"]["mean_return"] > 0.8
    assert record["deterministic"]["episodes"] >= 20
    assert agent.last_metrics["eval_stochastic"] == 1.0
    assert agent.last_metrics["eval_return"] == record["stochastic"]["mean_return"]
    path = agent.save(tmp_path / "agent")
    assert json.loads((path / "agent.json").read_text())["eval_mode"]["mode"] == "stochastic"
    assert PPO.load(path).state.eval_mode == record

    assert main(["eval", str(path), "--episodes", "20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "over 20 stochastic episodes (the agent's mode)" in out[0]
    assert len(out) == 1  # the agent's mode is the better one: nothing more to say

    assert main(["eval", str(path), "--episodes", "20", "--deterministic"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "mean return 0.00 +- 0.00 over 20 deterministic episodes (min" in out[0]
    assert out[1].startswith("note: stochastic play scores clearly better: ")
    assert out[1].endswith("; evaluate with --stochastic")

    assert main(["eval", str(path), "--episodes", "20", "--json", "--no-compare"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "stochastic" and data["agent_mode"] == "stochastic"
    assert data["deterministic"] is False and "comparison" not in data

    # replay starts in the mode eval plays in, unless told otherwise
    loaded = PPO.load(path)
    assert start_mode(None, loaded) == "stochastic"
    assert start_mode("deterministic", loaded) == "deterministic"


def test_an_agent_without_a_record_evaluates_deterministically(both_id, tmp_path, capsys):
    config = TrainConfig().with_overrides({"env.id": both_id})
    path = PPO(config=config).save(tmp_path / "fresh")
    assert main(["eval", str(path), "--episodes", "20"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "over 20 deterministic episodes (min" in out[0]
    assert out[1].startswith("note: stochastic play scores clearly better")
    assert start_mode(None, PPO.load(path)) == "deterministic"
