"""``ppo-envkit bench``: the table's measurements exist, are positive and are related as claimed."""

from __future__ import annotations

import json

from ppo_envkit.cli import main


def test_bench_json_with_two_ranks(capsys):
    args = [
        "bench",
        "--preset",
        "cartpole",
        "--steps",
        "2048",
        "--env-steps",
        "500",
        "--ranks",
        "2",
        "--set",
        "env.normalize_obs=true",  # statistics merged across ranks must stay identical
        "--json",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["env_id"] == "CartPole-v1"
    rows = {row["what"]: row for row in report["results"]}
    single = rows["CartPole-v1 raw env, 1 copy"]
    one, two = rows["train preset cartpole"], rows["train preset cartpole, 2 ranks"]
    assert single["steps"] == 500 and rows["CartPole-v1 raw sync vector env, 16 copies"]["steps"] > 0
    # the same combined batch: 16 copies x 64 steps per update, whether one process or two
    assert one["steps"] == two["steps"] == 2048 and two["ranks"] == 2
    for row in report["results"]:
        assert row["steps_per_s"] > 0 and row["peak_mb"] > 50
    assert one["ratio_to_raw_env"] == one["steps_per_s"] / single["steps_per_s"]
    assert two["speedup_over_one_rank"] == two["steps_per_s"] / one["steps_per_s"]


def test_bench_reports_what_extra_processes_bring(capsys):
    args = ["bench", "--preset", "cartpole", "--steps", "2048", "--env-steps", "500", "--json"]
    args += ["--set", "run.processes=2"]
    assert main(args) == 0
    rows = {row["what"]: row for row in json.loads(capsys.readouterr().out)["results"]}
    two, one = rows["train preset cartpole"], rows["train preset cartpole, 1 process"]
    assert two["processes"] == 2 and one["processes"] == 1
    assert one["steps"] == two["steps"] == 2048
    assert two["speedup_over_one_process"] == two["steps_per_s"] / one["steps_per_s"]


def test_bench_gradient_modes_and_start_up(capsys):
    args = ["bench", "--preset", "cartpole", "--steps", "1024", "--env-steps", "500", "--json"]
    args += ["--gradients", "analytic", "autograd", "--startup"]
    assert main(args) == 0
    rows = {row["what"]: row for row in json.loads(capsys.readouterr().out)["results"]}
    for mode in ("analytic", "autograd"):
        row = rows[f"train preset cartpole, {mode}"]
        assert row["steps"] == 1024 and row["process_seconds"] > row["seconds"] > 0
    startup = rows["start-up: train --preset cartpole, to the first env step"]
    assert 0 < startup["first_step_seconds"] < startup["process_seconds"]
