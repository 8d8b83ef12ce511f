"""Recurrent policies end to end: they learn what needs memory (and feed-forward cannot),
resume bit for bit (one process, worker processes, two training processes), save, load,
evaluate and replay with their memory."""

from __future__ import annotations

import pytest

from ppo_envkit import PPO, TrainConfig, evaluate, load_agent, load_env_module
from ppo_envkit.cli import main

from .resume import assert_resume_is_exact, assert_same_training_state
from .test_masks import REPO


@pytest.fixture(autouse=True)
def recall():
    from ppo_envkit.environments.registry import temporary_registrations

    with temporary_registrations():
        load_env_module(str(REPO / "envs" / "recall.py"))
        yield


@pytest.mark.slow  # two 16k-step learning runs
def test_memory_solves_recall_where_feed_forward_is_at_chance():
    """The recall preset: the cue of the first step, asked for 11 steps later (4 cues)."""
    results = {}
    for recurrent in ("lstm", "none"):
        agent = PPO.from_preset("recall", overrides={"policy.recurrent": recurrent, "run.eval_interval": 0})
        agent.learn(16384)
        results[recurrent] = evaluate(agent, 200, seed=1000).mean_return
        agent.close()
    assert results["lstm"] >= 0.95, results
    assert 0.15 <= results["none"] <= 0.35, results  # chance: 0.25


def small(**extra) -> TrainConfig:
    overrides = {
        "env.id": "Recall-v0",
        "env.num_envs": 4,
        "ppo.n_steps": 32,
        "ppo.sequence_length": 8,
        "ppo.minibatch_size": 32,
        "ppo.n_epochs": 2,
        "policy.recurrent": "gru",
        "policy.recurrent_size": 16,
        "run.eval_interval": 0,
        "run.seed": 5,
        "run.total_timesteps": 128 * 5,
        **extra,
    }
    return TrainConfig().with_overrides(overrides)


@pytest.mark.parametrize(
    "extra",
    [{}, {"env.vectorization": "async", "env.num_workers": 2}, {"policy.recurrent": "lstm"}],
    ids=["gru", "sharded", "lstm"],
)
def test_recurrent_resume_equals_an_unbroken_run(tmp_path, extra):
    unbroken, resumed = assert_resume_is_exact(small(**extra), tmp_path / "run")
    _, tensors = assert_same_training_state(unbroken, resumed, tmp_path)
    assert "memory.state" in tensors  # the copies' memory came back too
    assert any(k.startswith("core.") for k in unbroken.policy.state_dict())


@pytest.mark.slow  # two training processes
def test_two_training_processes_stay_identical():
    agent = PPO(config=small(**{"run.processes": 2, "run.total_timesteps": 256}))
    agent.learn()
    agent.close()
    assert agent.state.distributed["weights_identical_across_ranks"] is True


@pytest.mark.slow  # a 16k-step learning run
def test_saved_recurrent_agent_evaluates_and_replays_with_memory(tmp_path):
    from ppo_envkit.viewer import Viewer

    agent = PPO.from_preset("recall", overrides={"run.eval_interval": 0}).learn(16384)
    path = agent.save(tmp_path / "agent")
    before = evaluate(agent, 50, seed=3).mean_return
    agent.close()
    loaded = load_agent(str(path))
    assert loaded.policy.recurrent and loaded.config.policy.recurrent == "lstm"
    assert evaluate(loaded, 50, seed=3).mean_return == before >= 0.95
    viewer = Viewer(loaded, headless=True)
    pane = viewer.panes[0]
    viewer.tick(3)
    assert pane.decision["memory_norm"] > 0 and pane.view("x").memory == pane.decision["memory_norm"]
    replay = viewer.run()  # headless, to the end of its episodes
    assert replay.returns[0] and min(replay.returns[0]) == 1.0  # answers right with its memory
    # the CLI: replay --headless, eval --json
    assert (
        main(["replay", str(path), "--headless", "--episodes", "2", "--record", str(tmp_path / "r.gif")]) == 0
    )
    assert (tmp_path / "r.gif").stat().st_size > 0
    assert main(["eval", str(path), "--episodes", "20", "--json"]) == 0


@pytest.mark.parametrize(
    ("name", "extra"),
    [("pick", {}), ("spot", {"env.frame_stack": 2, "policy.cnn_features": 16}), ("binary", {})],
    ids=["masks", "cnn+frame-stack", "multibinary-masks"],
)
def test_memory_composes_with_masks_images_and_frame_stacks(masked_env_ids, tmp_path, name, extra):
    """The policy kinds combine: masks (the environments raise on an illegal action), a CNN,
    frame stacks and a recurrent core in one agent; trained, saved, loaded, evaluated."""
    overrides = {
        "env.id": masked_env_ids[name],
        "env.num_envs": 4,
        "ppo.n_steps": 16,
        "ppo.sequence_length": 8,
        "ppo.minibatch_size": 32,
        "ppo.n_epochs": 2,
        "policy.recurrent": "lstm",
        "policy.recurrent_size": 8,
        "run.eval_interval": 0,
        **extra,
    }
    agent = PPO(config=TrainConfig().with_overrides(overrides)).learn(256)
    path = agent.save(tmp_path / "agent")
    agent.close()
    loaded = load_agent(str(path))
    assert loaded.policy.recurrent
    assert evaluate(loaded, 6, deterministic=False).episodes == 6
