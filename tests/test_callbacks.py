"""Events (``ppo_envkit.Callback``) and the environment's own metrics (``info["metrics"]``,
``run.info_keywords``): how often each event fires, stops that leave a resumable checkpoint,
unchanged weights, and the metrics in every sink."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ppo_envkit import PPO, Callback, TrainConfig
from ppo_envkit.io.runlog import RunLogger

from .event_envs import EVENTS, CountEvents, StopFromEvent
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
