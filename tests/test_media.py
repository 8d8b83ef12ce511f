"""Evaluation videos (run.eval_video), Weights & Biases (run.wandb) and agent.show()."""

from __future__ import annotations

import base64
import sys
import time

import pytest
import torch

from ppo_envkit import PPO
from ppo_envkit.config import TrainConfig
from ppo_envkit.errors import ConfigError
from ppo_envkit.io.runlog import RunLogger

SMALL = {
    "env.id": "CartPole-v1",
    "env.num_envs": 4,
    "ppo.n_steps": 64,
    "ppo.n_epochs": 1,
    "run.eval_interval": 256,
    "run.eval_episodes": 1,
    "run.checkpoint_interval": 0,
}


def _train(run_dir, **overrides):
    agent = PPO(config=TrainConfig().with_overrides({**SMALL, **overrides}))
    agent.learn(512, logger=RunLogger(run_dir, progress=False))
    return agent


def _image_tags(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"images": 0})
    acc.Reload()
    return {tag: acc.Images(tag) for tag in acc.Tags()["images"]}


def test_eval_video_in_tensorboard_and_run_dir_and_weights_unchanged(tmp_path):
    with_video = _train(tmp_path / "v", **{"run.eval_video": True})
    without = _train(tmp_path / "n")
    videos = sorted((tmp_path / "v" / "videos").glob("eval_*.mp4"))
    assert [p.name for p in videos] == ["eval_0000000256.mp4", "eval_0000000512.mp4"]
    assert all(p.read_bytes()[4:8] == b"ftyp" for p in videos)
    images = _image_tags(tmp_path / "v" / "tb")
    assert [e.step for e in images["eval/video"]] == [256, 512]
    assert images["eval/video"][0].encoded_image_string[:6] == b"GIF89a"
    assert not (tmp_path / "n" / "videos").exists()
    # the video draws nothing from the training generator and changes no statistics
    a, b = with_video.policy.state_dict(), without.policy.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_show_returns_an_inline_video():
    agent = PPO(config=TrainConfig().with_overrides({"env.id": "CartPole-v1"}))
    video = agent.show(max_steps=20)
    html = video._repr_html_()
    assert "<video" in html and "data:video/mp4;base64," in html
    data = base64.b64decode(html.split("base64,")[1].split('"')[0])
    assert data[4:8] == b"ftyp"
    assert 2 <= video.frames <= 21
    gif = agent.show(max_steps=5, fmt="gif")
    assert base64.b64decode(gif._repr_html_().split("base64,")[1].split('"')[0])[:6] == b"GIF89a"


def test_wandb_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    with pytest.raises(ConfigError, match=r"run.wandb=true needs the wandb package: pip install"):
        _train(tmp_path / "r", **{"run.wandb": True})


def test_wandb_offline_run_holds_the_metrics(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _train(
        tmp_path / "r",
        **{"run.wandb": True, "run.wandb_project": "test", "run.wandb_tags": ["a"], "run.eval_video": True},
    )
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    names = (b"rollout/episode_return", b"train/policy_loss", b"eval/return", b"eval/video", b"n_steps")
    deadline = time.monotonic() + 20
    while True:  # wandb's service process may still be writing its log after finish() returned
        records = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
        if all(name in records for name in names) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for name in names:
        assert name in records, name
    assert len(list(runs[0].glob("files/media/videos/eval/*.mp4"))) == 2  # the evaluation videos


def test_notebook_progress_bar_needs_ipywidgets(monkeypatch):
    import types

    from rich.console import Console

    from ppo_envkit.io.runlog import _notebook_bar

    assert not _notebook_bar(Console(force_jupyter=False))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert not _notebook_bar(Console(force_jupyter=True))  # plain lines, not a silent bar
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert _notebook_bar(Console(force_jupyter=True))


def test_learn_progress_bar_without_a_logger(capsys):
    agent = PPO(config=TrainConfig().with_overrides({**SMALL, "run.eval_interval": 0}))
    agent.learn(256, progress_bar=True)
    assert "training CartPole-v1 to 256 steps" in capsys.readouterr().err
