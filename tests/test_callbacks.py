"""Events (``ppo_envkit.Callback``) and the environment's own metrics (``info["metrics"]``,
``run.info_keywords``): how often each event fires, stops that leave a resumable checkpoint,
unchanged weights, and the metrics in every sink."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_envkit import PPO, Callback, TrainConfig
from ppo_envkit.io.runlog import RunLogger

from .event_envs import EVENTS, METRIC_ENV_ID, CountEvents, StopFromEvent
from .weights_digest import digest

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "env.num_envs": 4,
    "ppo.n_steps": 64,
    "ppo.minibatch_size": 64,
    "ppo.n_epochs": 2,
    "run.torch_threads": 1,
}


def config(**extra) -> TrainConfig:
    overrides = {"env.id": "CartPole-v1", **SMALL, "run.eval_interval": 0, **extra}
    return TrainConfig().with_overrides(overrides)


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_each_event_fires_as_often_as_it_should(tmp_path):
    agent = PPO(config=config(**{"run.eval_interval": 512, "run.eval_episodes": 2}))
    counter = CountEvents()
    try:
        agent.learn(2048, callback=counter, logger=RunLogger(tmp_path / "run", progress=False))
    finally:
        agent.close()
    table = rows(tmp_path / "run")
    iterations = 2048 // (4 * 64)
    assert len(table) == iterations
    assert counter.counts["on_training_start"] == counter.counts["on_training_end"] == 1
    assert counter.counts["on_rollout_end"] == counter.counts["on_update_end"] == iterations
    assert counter.counts["on_evaluation_end"] == sum(1 for r in table if r["eval_return"])
    assert counter.counts["on_episode_end"] == int(table[-1]["episodes"]) > 0
    assert counter.env_indices == {0, 1, 2, 3}
    assert counter.reason == "steps"
    assert counter.agent is agent


def test_a_callback_that_only_reads_changes_no_weight():
    digests = []
    for callback in (None, CountEvents()):
        agent = PPO(config=config(**{"run.seed": 3}))
        try:
            agent.learn(1024, callback=callback)
        finally:
            agent.close()
        digests.append(digest(agent.policy.state_dict()))
    assert digests[0] == digests[1]


@pytest.mark.parametrize("event", [e for e in EVENTS if e != "on_training_end"])
def test_a_stop_from_any_event_leaves_a_resumable_checkpoint(tmp_path, event):
    extra = {"run.eval_interval": 256, "run.eval_episodes": 1} if event == "on_evaluation_end" else {}
    agent = PPO(config=config(**extra))
    after = 1 if event == "on_training_start" else 2
    stopper = StopFromEvent(event, after=after, raise_it=event == "on_update_end")
    try:
        agent.learn(2048, callback=stopper, logger=RunLogger(tmp_path / "run", progress=False))
        stopped_at = agent.num_timesteps
    finally:
        agent.close()
    assert stopped_at < 2048
    if event == "on_training_start":
        assert stopped_at == 0
    checkpoints = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints and checkpoints[-1].name == f"step_{stopped_at:010d}"
    resumed = PPO.resume(checkpoints[-1])
    try:
        assert resumed.num_timesteps == stopped_at and resumed.target_timesteps == 2048
        resumed.train()
        assert resumed.num_timesteps == 2048
    finally:
        resumed.close()


class Level(Callback):
    """A callback with state: counts updates, saved with every checkpoint."""

    def __init__(self):
        self.updates = 0
        self.loaded = None

    def on_update_end(self, update):
        self.updates += 1
        return self.updates < 2 if self.loaded is None else None

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.loaded = dict(state)
        self.updates = state["updates"]


def test_a_callbacks_state_comes_back_with_the_checkpoint(tmp_path):
    agent = PPO(config=config())
    try:
        agent.learn(4096, callback=Level(), logger=RunLogger(tmp_path / "run", progress=False))
    finally:
        agent.close()
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert json.loads((checkpoint / "trainer.json").read_text())["callback"] == {"updates": 2}
    resumed = PPO.resume(checkpoint)
    level = Level()
    try:
        resumed.train(callback=level, target_timesteps=resumed.num_timesteps + 256)
    finally:
        resumed.close()
    assert level.loaded == {"updates": 2} and level.updates == 3


def test_a_plain_function_still_works_and_a_list_of_callbacks_too():
    seen = []
    agent = PPO(config=config())
    first, second = CountEvents(), CountEvents()
    try:
        agent.learn(512, callback=lambda a, metrics: seen.append(metrics["episode_return"]))
        agent.learn(512, callback=[first, second])
        with pytest.raises(TypeError, match="callback must be"):
            agent.learn(256, callback=42)
    finally:
        agent.close()
    assert len(seen) == 2
    assert first.counts == second.counts and first.counts["on_update_end"] == 2


def test_rollout_arrays_are_read_only():
    class Write(Callback):
        def on_rollout_end(self, rollout):
            assert rollout.obs.shape[:2] == (64, 4)
            with pytest.raises(ValueError):
                rollout.rewards[0, 0] = 1.0

    agent = PPO(config=config())
    try:
        agent.learn(256, callback=Write())
    finally:
        agent.close()


def _cli(tmp_path, *args, env=None):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    cmd = [sys.executable, "-m", "ppo_envkit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=full_env, timeout=300)


def test_cli_callback_stops_and_resume_goes_on(tmp_path):
    module = str(REPO / "tests" / "event_envs.py")
    run = tmp_path / "run"
    common = ["--no-progress", "--set", "env.num_envs=4", "--set", "ppo.n_steps=64"]
    common += ["--set", "ppo.minibatch_size=64", "--set", "run.eval_interval=0"]
    out = tmp_path / "events.json"
    proc = _cli(
        tmp_path,
        "train",
        "CartPole-v1",
        "--preset",
        "defaults",
        "--total-timesteps",
        "2048",
        "--run-dir",
        str(run),
        "--callback",
        f"{module}:StopFromEvent",
        "--callback",
        f"{module}:CountEvents",
        *common,
        env={"STOP_EVENT": "on_update_end", "STOP_AFTER": "3", "EVENTS_OUT": str(out)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = json.loads(out.read_text())
    assert counts["reason"] == "callback" and counts["counts"]["on_update_end"] == 3
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["num_timesteps"] == 3 * 256
    proc = _cli(tmp_path, "train", "--resume", str(run), "--no-progress")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run / "agent" / "agent.json").read_text())["num_timesteps"] == 2048
    bad = _cli(tmp_path, "train", "CartPole-v1", "--callback", "no_such_module:X", "--no-progress")
    assert bad.returncode != 0 and "no module named 'no_such_module'" in bad.stderr
    assert "Traceback" not in bad.stderr


# ------------------------------------------------------------------ the environment's metrics


@pytest.fixture
def metric_env():
    import gymnasium as gym

    from . import event_envs

    if METRIC_ENV_ID not in gym.registry:
        from ppo_envkit import register_env

        register_env(METRIC_ENV_ID, event_envs.MetricWalk)
    return METRIC_ENV_ID


@pytest.mark.parametrize(
    "vectorization",
    [{}, {"env.vectorization": "async"}, {"env.vectorization": "async", "env.num_workers": 2}],
    ids=["sync", "async", "sharded"],
)
def test_per_episode_metrics_equal_a_naive_recomputation(metric_env, vectorization):
    keywords = ["naive_x", "naive_y", "is_success"]
    extra = {"env.id": metric_env, "run.info_keywords": keywords, "run.log_window": 7, **vectorization}
    cfg = config(**extra)
    agent = PPO(config=cfg)
    counter = CountEvents()
    try:
        agent.learn(512, callback=counter)
    finally:
        agent.close()
    metrics = agent.last_metrics
    recent = [e["info"] for e in counter.episodes][-7:]
    assert len(counter.episodes) == metrics["episodes"] > 7
    for key, naive in (("x", "naive_x"), ("y", "naive_y"), ("is_success", "is_success")):
        expected = sum(info[naive] for info in recent) / len(recent)
        assert math.isclose(metrics[f"metrics/{key}"], expected, rel_tol=1e-9, abs_tol=1e-12), key
    assert math.isclose(metrics["metrics/naive_x"], metrics["metrics/x"], rel_tol=1e-9)


def test_metrics_survive_an_exact_resume(metric_env, tmp_path):
    cfg = config(**{"env.id": metric_env})
    whole = PPO(config=cfg)
    try:
        whole.learn(1024)
    finally:
        whole.close()
    first = PPO(config=cfg)
    try:
        first.learn(1024, callback=StopFromEvent("on_update_end", after=2), logger=None)
        first.save_checkpoint(tmp_path / "ckpt")
    finally:
        first.close()
    resumed = PPO.resume(tmp_path / "ckpt")
    try:
        resumed.train()
    finally:
        resumed.close()
    assert resumed.num_timesteps == whole.num_timesteps
    for key in ("metrics/x", "metrics/y", "episode_return"):
        assert resumed.last_metrics[key] == whole.last_metrics[key], key


def test_metrics_reach_every_sink(metric_env, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module = str(REPO / "tests" / "event_envs.py")
    run = tmp_path / "run"
    args = ["train", metric_env, "--env-module", module, "--run-dir", str(run), "--total-timesteps", "1024"]
    args += ["--set", "env.num_envs=4", "--set", "ppo.n_steps=64", "--set", "ppo.minibatch_size=64"]
    args += ["--set", "run.eval_interval=0", "--set", "run.info_keywords=[is_success]"]
    proc = _cli(tmp_path, *args)  # not a terminal: plain progress lines, the first at once
    assert proc.returncode == 0, proc.stderr[-3000:]
    progress = [line for line in proc.stderr.splitlines() if line.startswith("steps ")]
    assert progress and " is_success " in progress[0] and " x " in progress[0], proc.stderr
    table = rows(run)
    for column in ("metrics/x", "metrics/y", "metrics/is_success"):
        assert table[-1][column] != "", column
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert {"metrics/x", "metrics/y", "metrics/is_success"} <= set(events.Tags()["scalars"])
    proc = _cli(tmp_path, "plot", str(run), "-o", str(tmp_path / "curves.png"))
    assert proc.returncode == 0 and (tmp_path / "curves.png").stat().st_size > 0, proc.stderr[-2000:]
    proc = _cli(tmp_path, "eval", str(run), "--episodes", "4", "--json", "--env-module", module)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert set(result["metrics"]) == {"x", "y", "is_success"}


def test_the_viewer_overlay_shows_the_environments_numbers(metric_env, tmp_path):
    import numpy as np

    from ppo_envkit import Viewer

    cfg = TrainConfig().with_overrides({"env.id": metric_env, "run.info_keywords": ["is_success"]})
    path = PPO(config=cfg).save(tmp_path / "agent")
    viewer = Viewer(path, headless=True)
    try:
        viewer.tick(3)
        pane = viewer.panes[0]
        assert set(pane.env_metrics) >= {"x"}
        view = pane.view("deterministic")
        assert ("x", pane.env_metrics["x"]) in view.env_metrics
        with_numbers = viewer.redraw().frame_array()
        pane.env_metrics = {}
        without = viewer.redraw().frame_array()
        assert not np.array_equal(with_numbers, without)  # the numbers are drawn
    finally:
        viewer.close()


def test_events_under_two_processes_fire_on_rank_0_and_a_stop_stops_both():
    agent = PPO(config=config(**{"run.processes": 2}))
    counter = CountEvents()
    stopper = StopFromEvent("on_update_end", after=3)
    try:
        agent.learn(2048, callback=[counter, stopper])
        stopped_at = agent.num_timesteps
        assert agent.state.distributed["weights_identical_across_ranks"]
    finally:
        agent.close()
    assert stopped_at == 3 * 256  # both ranks stopped after the third iteration
    assert counter.counts["on_training_start"] == counter.counts["on_training_end"] == 1
    assert counter.counts["on_rollout_end"] == counter.counts["on_update_end"] == 3
    assert counter.env_indices == {0, 1}  # rank 0's copies of the 4
    assert 0 < counter.counts["on_episode_end"] < agent.last_metrics["episodes"]


def test_metrics_are_combined_over_two_processes(metric_env):
    agent = PPO(config=config(**{"env.id": metric_env, "run.processes": 2}))
    try:
        agent.learn(512)
    finally:
        agent.close()
    assert math.isfinite(agent.last_metrics["metrics/x"]) and math.isfinite(agent.last_metrics["metrics/y"])


# ------------------------------------------------------------------ curricula


class InterruptInThird(Callback):
    def on_rollout_end(self, rollout):
        if rollout.iteration == 3:
            raise KeyboardInterrupt


@pytest.mark.parametrize(
    "setup",
    [{}, {"env.vectorization": "async", "env.num_workers": 2}, {"run.processes": 2}],
    ids=["sync", "sharded", "processes2"],
)
def test_a_curriculum_reaches_every_copy_and_survives_exact_resume(metric_env, tmp_path, setup):
    import torch

    from ppo_envkit.errors import TrainingInterrupted
    from ppo_envkit.io.checkpoint import load_trainer_state

    from .event_envs import MoveBias

    # rollouts of 8 steps, episodes of 5-30: changes come in the middle of episodes, which a
    # resumed run's replay makes at the same steps
    extra = {"env.id": metric_env, "run.total_timesteps": 768, "env.normalize_obs": False, "ppo.n_steps": 8}
    extra["ppo.minibatch_size"] = 32
    cfg = config(**extra, **setup)
    unbroken = PPO(config=cfg)
    seen = []

    class Watch(Callback):
        def on_rollout_end(self, rollout):
            # (row 0 is the observation the last rollout ended with, from before the change)
            seen.append(sorted({round(float(v), 4) for v in rollout.obs[1:, :, 1].reshape(-1)}))

    try:
        unbroken.learn(callback=[MoveBias(), Watch()])
        unbroken.save_checkpoint(tmp_path / "unbroken")
    finally:
        unbroken.close()
    assert seen[0] == [0.0] and len(seen[-1]) == 1 and seen[-1][0] != 0.0  # every copy changed
    changes = load_trainer_state(tmp_path / "unbroken")[0]["episodes"]["changes"]
    assert changes[:2] == [["set", "bias", [0.1]], ["call", "shift", [-0.05]]]
    stopped = PPO(config=cfg)
    with pytest.raises(TrainingInterrupted) as info:
        try:
            stopped.learn(
                callback=[MoveBias(), InterruptInThird()],
                logger=RunLogger(tmp_path / "run", progress=False, tensorboard=False),
            )
        finally:
            stopped.close()
    during = load_trainer_state(info.value.checkpoint)[0]["episodes"]["episode_changes"]
    assert any(during), "a change came during an episode that the resumed run replays"
    resumed = PPO.resume(info.value.checkpoint)
    try:
        resumed.train(callback=MoveBias())
    finally:
        resumed.close()
    assert resumed.num_timesteps == unbroken.num_timesteps == 768
    a, b = unbroken.policy.state_dict(), resumed.policy.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.last_metrics["episode_return"] == unbroken.last_metrics["episode_return"]


def test_env_set_of_a_missing_attribute_is_a_clear_error(metric_env):
    class Typo(Callback):
        def on_training_start(self, event):
            self.agent.env_set("biass", 1.0)

    agent = PPO(config=config(**{"env.id": metric_env}))
    try:
        with pytest.raises(AttributeError, match="no attribute 'biass'"):
            agent.learn(256, callback=Typo())
        with pytest.raises(TypeError, match="JSON-ready"):
            agent.env_set("bias", object())
    finally:
        agent.close()
