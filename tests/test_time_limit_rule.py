"""``env.time_limit=auto``, the default: terminal for PettingZoo environments (their truncation
is the game's own length), bootstrap for Gymnasium ones (a TimeLimit cuts a longer task);
explicit values kept; agent files and run directories written before ``auto`` was the default
keep bootstrap (those written before the setting existed by :data:`STORED_BEFORE`, the later
ones by the value they name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppo_envkit import PPO, TrainConfig, make_env
from ppo_envkit.config import ConfigError, as_stored_before
from ppo_envkit.environments.multiagent import PETTINGZOO_KEY, TimeLimit, resolve_time_limit
from ppo_envkit.io.checkpoint import read_agent

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "setting, metadata, expected",
    [
        ("auto", {PETTINGZOO_KEY: "parallel"}, "terminal"),
        ("auto", {PETTINGZOO_KEY: "aec", "turn_based": True}, "terminal"),
        ("auto", {"render_modes": []}, "bootstrap"),
        ("auto", None, "bootstrap"),
        ("bootstrap", {PETTINGZOO_KEY: "parallel"}, "bootstrap"),
        ("terminal", {}, "terminal"),
    ],
)
def test_resolution(setting, metadata, expected):
    resolved = resolve_time_limit(setting, metadata)
    assert resolved.value == expected and resolved.ends_task == (expected == "terminal")
    assert bool(resolved.reason) == (setting == "auto")  # auto says why; an explicit value needs not


def test_an_unknown_value_is_refused_by_the_settings():
    """The settings are where a value is checked: resolve_time_limit only sees validated ones."""
    with pytest.raises(ConfigError, match="'auto', 'bootstrap' or 'terminal'"):
        TrainConfig().with_overrides({"env.time_limit": "sometimes"})


def test_the_default_is_auto():
    assert TrainConfig().env.time_limit == "auto"


@pytest.mark.parametrize(
    "env_id, kind",
    [("mpe2.simple_spread_v3:parallel_env", "parallel"), ("pettingzoo.classic.tictactoe_v3:env", "aec")],
)
def test_adapted_pettingzoo_environments_say_where_they_come_from(env_id, kind):
    pytest.importorskip("mpe2" if env_id.startswith("mpe2") else "pettingzoo")
    env = make_env(env_id)
    try:
        assert env.metadata[PETTINGZOO_KEY] == kind
    finally:
        env.close()


def test_gymnasium_environments_do_not():
    env = make_env("CartPole-v1")
    assert PETTINGZOO_KEY not in env.metadata
    env.close()


@pytest.mark.parametrize(
    "env_id, setting, expected",
    [
        ("mpe2.simple_spread_v3:parallel_env", "auto", "terminal"),
        ("mpe2.simple_spread_v3:parallel_env", "bootstrap", "bootstrap"),
        ("pettingzoo.classic.tictactoe_v3:env", "auto", "terminal"),
        ("CartPole-v1", "auto", "bootstrap"),
        ("CartPole-v1", "terminal", "terminal"),
    ],
)
def test_the_collector_resolves_once_the_copies_are_built(env_id, setting, expected):
    pytest.importorskip("mpe2" if env_id.startswith("mpe2") else "pettingzoo")
    config = TrainConfig().with_overrides({"env.id": env_id, "env.num_envs": 2, "env.time_limit": setting})
    agent = PPO(config=config)
    try:
        agent.prepare()
        assert agent._trainer is not None
        assert agent._trainer.collector.time_limit.value == expected
        assert agent.config.env.time_limit == setting  # the setting itself is kept (and saved) as given
    finally:
        agent.close()


@pytest.mark.parametrize(
    "env_id, expected",
    [
        ("mpe2.simple_spread_v3:parallel_env", "terminal"),
        ("pettingzoo.classic.tictactoe_v3:env", "terminal"),
        ("CartPole-v1", "bootstrap"),
        ("LunarLander-v3", "bootstrap"),
    ],
)
def test_the_default_resolves_by_where_the_environment_comes_from(tmp_path, env_id, expected):
    pytest.importorskip("mpe2" if env_id.startswith("mpe2") else "pettingzoo")
    agent = PPO(config=TrainConfig().with_overrides({"env.id": env_id, "env.num_envs": 2}))
    try:
        agent.prepare()
        assert agent._trainer is not None
        assert agent._trainer.collector.time_limit.value == expected
        assert agent.config.env.time_limit == "auto"
        path = agent.save(tmp_path / "agent")
    finally:
        agent.close()
    assert json.loads((Path(path) / "agent.json").read_text())["config"]["env"]["time_limit"] == "auto"


def _saved_before_auto(tmp_path: Path, env_id: str, stored: str | None) -> Path:
    """An agent file of ``env_id`` as an earlier version wrote it: ``env.time_limit`` named as
    ``stored`` (between the setting and ``auto`` as the default, saved ``bootstrap``), or absent
    (``None``: before the setting existed)."""
    agent = PPO(config=TrainConfig().with_overrides({"env.id": env_id, "env.num_envs": 2}))
    path = Path(agent.save(tmp_path / "old"))
    meta_file = path / "agent.json"
    meta = json.loads(meta_file.read_text())
    if stored is None:
        del meta["config"]["env"]["time_limit"]
    else:
        meta["config"]["env"]["time_limit"] = stored
    meta_file.write_text(json.dumps(meta))
    return path


def _assert_trains_on_with_bootstrap(agent: PPO) -> None:
    """``agent``'s settings, and the collector it trains with, bootstrap at the time limit."""
    try:
        assert agent.config.env.time_limit == "bootstrap"
        agent.prepare()
        assert agent._trainer is not None
        assert agent._trainer.collector.time_limit == TimeLimit("bootstrap")
    finally:
        agent.close()


@pytest.mark.parametrize("stored", [None, "bootstrap"])
def test_an_old_pettingzoo_agent_file_keeps_bootstrap_when_training_goes_on(tmp_path, stored):
    """Loaded and trained further, an agent of a PettingZoo game saved before ``auto`` was the
    default still bootstraps at the time limit, as it was trained (not the new default's terminal)."""
    pytest.importorskip("mpe2")
    path = _saved_before_auto(tmp_path, "mpe2.simple_spread_v3:parallel_env", stored)
    assert read_agent(path).config.env.time_limit == "bootstrap"
    agent = PPO.load(path)
    _assert_trains_on_with_bootstrap(agent)


def test_an_agent_file_without_the_setting_keeps_meaning_bootstrap(tmp_path):
    config = {"env.id": "CartPole-v1", "env.num_envs": 2, "env.time_limit": "auto"}
    agent = PPO(config=TrainConfig().with_overrides(config))
    path = agent.save(tmp_path / "new")
    assert read_agent(path).config.env.time_limit == "auto"  # written now: auto, read back as auto
    meta_file = Path(path) / "agent.json"
    meta = json.loads(meta_file.read_text())
    assert meta["config"]["env"]["time_limit"] == "auto"
    del meta["config"]["env"]["time_limit"]  # as written before env.time_limit existed
    meta_file.write_text(json.dumps(meta))
    assert read_agent(path).config.env.time_limit == "bootstrap"
    assert PPO.load(path).config.env.time_limit == "bootstrap"


def test_the_shipped_agents_predate_the_setting_and_load_as_bootstrap():
    meta = json.loads((REPO / "agents" / "lunarlander" / "agent.json").read_text())
    assert "time_limit" not in meta["config"]["env"]
    assert read_agent(REPO / "agents" / "lunarlander").config.env.time_limit == "bootstrap"


def test_stored_settings_keep_an_explicit_value():
    for value in ("auto", "bootstrap", "terminal"):
        config = TrainConfig().with_overrides({"env.time_limit": value})
        assert as_stored_before(config).env.time_limit == value
    assert as_stored_before(TrainConfig()).env.time_limit == "bootstrap"  # the key not given


def test_a_time_limit_named_tuple_defaults_to_no_reason():
    assert TimeLimit("terminal") == ("terminal", "")


@pytest.mark.parametrize("named", [True, False])  # --set env.time_limit=auto, or the default
@pytest.mark.parametrize(
    "env_id, said", [("mpe2.simple_spread_v3:parallel_env", True), ("CartPole-v1", False)]
)
def test_train_says_once_what_auto_chose_for_pettingzoo(tmp_path, capsys, env_id, said, named):
    pytest.importorskip("mpe2" if env_id.startswith("mpe2") else "gymnasium")
    from ppo_envkit.cli import main

    args = [
        "train",
        env_id,
        "--total-timesteps",
        "384",
        "--run-dir",
        str(tmp_path / "run"),
        "--num-envs",
        "2",
    ]
    named_auto = ["--set", "env.time_limit=auto"] if named else []
    assert main([*args, "--set", "ppo.n_steps=32", *named_auto, "--no-progress"]) == 0
    out = capsys.readouterr().err  # (the CLI's console writes to stderr)
    line = "time limit: terminal (auto: a PettingZoo game's own length, max_cycles, ends it)"
    assert out.count(line) == (1 if said else 0)


def test_a_run_directory_written_before_the_setting_resumes_with_bootstrap(tmp_path, capsys):
    """``train --resume`` of a run whose checkpoint and ``config.yaml`` predate ``env.time_limit``
    (a PettingZoo game, where the new default would mean terminal) goes on with bootstrap, and
    says no setting changed."""
    pytest.importorskip("mpe2")
    from ppo_envkit.cli import build_parser, main
    from ppo_envkit.cli.resume import resume_run
    from ppo_envkit.io.checkpoint import checkpoint_dirs

    run = tmp_path / "run"
    args = ["train", "mpe2.simple_spread_v3:parallel_env", "--total-timesteps", "192", "--num-envs", "2"]
    args += [
        "--run-dir",
        str(run),
        "--no-progress",
        "--set",
        "ppo.n_steps=32",
        "--set",
        "run.checkpoint_interval=96",
    ]
    assert main(args) == 0
    checkpoints = checkpoint_dirs(run)
    assert checkpoints
    for meta_file in [ckpt / "agent.json" for ckpt in checkpoints]:
        meta = json.loads(meta_file.read_text())
        del meta["config"]["env"]["time_limit"]
        meta_file.write_text(json.dumps(meta))
    yaml_file = run / "config.yaml"
    yaml_file.write_text(
        "\n".join(line for line in yaml_file.read_text().splitlines() if "time_limit" not in line)
    )
    capsys.readouterr()
    agent, _ = resume_run(build_parser().parse_args(["train", "--resume", str(run)]))
    _assert_trains_on_with_bootstrap(agent)
    assert "env.time_limit" not in capsys.readouterr().err  # nothing echoed as changed
