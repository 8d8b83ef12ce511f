"""The pygame viewer, driven frame by frame (SDL_VIDEODRIVER=dummy, see conftest.py).

Agents are untrained (the viewer shows what a policy thinks, trained or not):
CartPole covers the categorical overlay, tests/toy_envs.py's ReachTarget (20-step
episodes, rgb_array rendering) the Gaussian one.
"""

from __future__ import annotations

import re

import imageio.v2 as iio
import numpy as np
import pygame
import pytest
import torch

from ppo_envkit import PPO, TrainConfig, Viewer
from ppo_envkit.cli import main
from ppo_envkit.cli.replay import resolve_checkpoint
from ppo_envkit.io.checkpoint import AgentFileError
from ppo_envkit.viewer import BACKGROUND, NoDisplayError, RenderError

REACH_STEPS = 20  # ReachTarget's time limit


def untrained(env_id: str, path, seed: int = 0):
    config = TrainConfig().with_overrides({"env.id": env_id, "run.seed": seed})
    return PPO(config=config).save(path)


@pytest.fixture(scope="session")
def cartpole(tmp_path_factory):
    return untrained("CartPole-v1", tmp_path_factory.mktemp("agents") / "cartpole")


@pytest.fixture(scope="session")
def cartpole_other(tmp_path_factory):
    return untrained("CartPole-v1", tmp_path_factory.mktemp("agents") / "cartpole-other", seed=1)


@pytest.fixture
def reach(toy_env_ids, tmp_path):
    return untrained(toy_env_ids["reach"], tmp_path / "reach")


@pytest.fixture(scope="session")
def cartpole_run(tmp_path_factory):
    """A real (tiny) run directory with three checkpoints and a final agent."""
    run = tmp_path_factory.mktemp("runs") / "cp"
    args = ["train", "CartPole-v1", "--total-timesteps", "768", "--run-dir", str(run), "--no-progress"]
    sizes = ["--num-envs", "8", "--set", "ppo.n_steps=32"]  # 256 steps per iteration, whatever the preset
    assert main([*args, *sizes, "--set", "run.checkpoint_interval=256", "--set", "ppo.n_epochs=2"]) == 0
    return run


def key(k: int, char: str = "") -> None:
    """Put a key press on pygame's real event queue (the viewer pumps it every frame)."""
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, unicode=char, mod=0))


def crop(pixels: np.ndarray, rect: pygame.Rect) -> np.ndarray:
    return pixels[rect.top : rect.bottom, rect.left : rect.right]


def test_frames_are_drawn_and_change_over_time(cartpole):
    viewer = Viewer(cartpole, headless=True, hud=False)
    pane = viewer.panes[0]
    first = viewer.frame_array()
    assert first.shape == (*reversed(viewer.surface.get_size()), 3)
    # CartPole's 600x400 frame, scaled up, fills the canvas; its background is white
    assert pane.frame_rect.size == viewer.surface.get_size() and pane.frame_rect.width > 600
    assert crop(first, pane.frame_rect).mean() > 200 and first.std() > 10
    viewer.tick(3)
    assert viewer.step_count == 3
    assert not np.array_equal(first, viewer.frame_array())
    viewer.close()


@pytest.mark.parametrize("which", ["cartpole", "reach"])
def test_overlay_changes_pixels_where_it_is_drawn(which, request):
    viewer = Viewer(request.getfixturevalue(which), headless=True, hud=False)
    viewer.tick(2)
    plain = viewer.frame_array()
    viewer.press(pygame.K_h)
    assert viewer.show_hud
    changed = np.any(viewer.redraw().frame_array() != plain, axis=2)
    inside = np.zeros_like(changed)
    for rect in viewer.hud_rects():
        inside[rect.top : rect.bottom, rect.left : rect.right] = True
    assert changed[inside].mean() > 0.3  # the panels cover what they are drawn over
    assert not changed[~inside].any()  # and nothing else
    viewer.press(pygame.K_TAB)
    assert np.array_equal(viewer.redraw().frame_array(), plain)
    viewer.close()


def test_categorical_overlay_has_named_bars(cartpole):
    viewer = Viewer(cartpole, headless=True)
    pane = viewer.panes[0]
    view = pane.view("")
    (bars,) = view.bars
    assert bars.labels == ["push left", "push right"]
    assert bars.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert bars.chosen == int(pane.decision["action"]) == int(np.argmax(bars.probs))  # deterministic
    assert view.value == pytest.approx(pane.decision["value"])
    assert view.action_text.endswith(bars.labels[bars.chosen])
    viewer.close()


def test_gaussian_overlay_shows_mean_std_and_action_sent(reach):
    viewer = Viewer(reach, headless=True, deterministic=False)
    viewer.tick(4)
    pane = viewer.panes[0]
    (gauge,) = pane.view("").gauges
    decision = pane.decision
    assert gauge.mean == pytest.approx(float(decision["mean"][0]))
    assert gauge.std == pytest.approx(float(decision["std"][0])) and gauge.std > 0
    assert gauge.sent == pytest.approx(float(decision["action"][0]))
    assert (gauge.low, gauge.high) == (-1.0, 1.0) and -1.0 <= gauge.sent <= 1.0
    # the value and reward plot follows the episode: one value per state, one reward per step
    assert len(pane.values) == 5 and len(pane.rewards) == 4
    viewer.close()


def test_replay_uses_the_agents_statistics_and_env_kwargs(tmp_path):
    config = TrainConfig().with_overrides(
        {"env.id": "LunarLander-v3", "env.kwargs": {"continuous": True}, "env.normalize_obs": True}
    )
    agent = PPO(config=config)
    agent.policy.obs_norm.update(torch.randn(500, 8, generator=torch.Generator().manual_seed(0)) * 3 + 5)
    path = agent.save(tmp_path / "lander")
    viewer = Viewer(path, headless=True)
    pane = viewer.panes[0]
    assert pane.env.action_space.shape == (2,)  # continuous=True came from the agent's config
    assert pane.decision["value"] == pytest.approx(agent.policy_step(pane.obs)["value"], abs=1e-6)
    fresh = PPO.load(path)
    fresh.policy.obs_norm.rms.mean.zero_()
    fresh.policy.obs_norm.rms.var.fill_(1.0)
    fresh.policy.obs_norm.refresh()
    assert pane.decision["value"] != pytest.approx(fresh.policy_step(pane.obs)["value"], abs=1e-4)
    viewer.close()


def test_keys_pause_single_step_and_toggle_determinism(reach):
    viewer = Viewer(reach)  # a window, on SDL's dummy video driver
    viewer.tick(3)
    assert viewer.step_count == 3
    key(pygame.K_SPACE, " ")
    viewer.tick(5)
    assert viewer.paused and viewer.step_count == 3  # paused: the counter stops
    key(pygame.K_RIGHT)
    viewer.tick(1)
    assert viewer.step_count == 4  # exactly one step
    viewer.tick(4)
    assert viewer.step_count == 4
    key(pygame.K_PERIOD, ".")
    key(pygame.K_RIGHT)
    viewer.tick(1)
    assert viewer.step_count == 6  # two presses within one frame, two steps

    pane = viewer.panes[0]
    assert viewer.deterministic
    np.testing.assert_allclose(pane.decision["action"], np.clip(pane.decision["mean"], -1, 1))
    key(pygame.K_d, "d")
    viewer.tick(1)
    assert not viewer.deterministic and viewer.step_count == 6
    # the decision for the frame on screen was made again, now sampled (std 1 around the mean)
    assert not np.allclose(pane.decision["action"], np.clip(pane.decision["mean"], -1, 1))
    key(pygame.K_SPACE, " ")
    viewer.tick(2)
    assert not viewer.paused and viewer.step_count == 8
    viewer.close()


def test_speed_keys_change_steps_per_second(reach):
    viewer = Viewer(reach, headless=True)
    one_step = 1.0 / viewer.fps
    viewer.press(pygame.K_UP)
    assert viewer.speed == 2.0
    viewer.tick(1, dt=one_step)
    assert viewer.step_count == 2
    viewer.press(pygame.K_DOWN)
    viewer.press(pygame.K_MINUS, "-")
    assert viewer.speed == 0.5
    viewer.tick(4, dt=one_step)
    assert viewer.step_count == 4
    viewer.close()


def test_restart_and_next_episode_keys(reach):
    viewer = Viewer(reach, headless=True, seed=5, deterministic=False)
    pane = viewer.panes[0]
    start, start_obs = pane.frame.copy(), pane.obs.copy()
    viewer.tick(6)
    assert not np.array_equal(pane.obs, start_obs)
    viewer.press(pygame.K_r)
    assert (pane.step, pane.seed, len(pane.values), len(pane.rewards)) == (0, 5, 1, 0)
    np.testing.assert_array_equal(pane.obs, start_obs)  # same seed, same first state and frame
    np.testing.assert_array_equal(pane.frame, start)
    viewer.press(pygame.K_n)
    assert (pane.episode, pane.seed, pane.step) == (1, 6, 0)
    viewer.close()


def test_help_panel_screenshot_and_quit(reach, tmp_path):
    viewer = Viewer(reach, headless=True, screenshot_dir=tmp_path)
    before = viewer.frame_array()
    viewer.press(pygame.K_F1)
    assert viewer.show_help
    helped = viewer.redraw().frame_array()
    h, w = helped.shape[:2]
    middle = pygame.Rect(w // 3, h // 3, w // 3, h // 3)
    assert np.any(crop(helped, middle) != crop(before, middle), axis=2).mean() > 0.5
    viewer.press(pygame.K_SLASH, "?")
    assert not viewer.show_help
    viewer.press(pygame.K_s, "s")
    viewer.tick(1)
    (shot,) = tmp_path.glob("*.png")
    assert re.fullmatch(r"test_ReachTarget-v0-episode1-step1\.png", shot.name)
    assert pygame.image.load(str(shot)).get_size() == viewer.surface.get_size()
    viewer.press(pygame.K_q, "q")
    assert not viewer.running
    viewer.close()


def test_window_resizes_and_run_returns_on_quit(reach):
    viewer = Viewer(reach, end_hold=0)
    viewer.tick(1)
    canvas_w, canvas_h = viewer.surface.get_size()
    pygame.display.set_mode((canvas_w // 2, canvas_h), pygame.RESIZABLE)  # a taller, narrower window
    size = (canvas_w // 2, canvas_h)
    pygame.event.post(pygame.event.Event(pygame.VIDEORESIZE, size=size, w=size[0], h=size[1]))
    viewer.tick(1)
    window = pygame.surfarray.array3d(pygame.display.get_surface()).swapaxes(0, 1)
    assert window.shape[:2] == (canvas_h, canvas_w // 2)
    # the canvas is scaled to fit, centred, with bands of background above and below
    assert (window[:10] == BACKGROUND).all() and (window[-10:] == BACKGROUND).all()
    assert not (window[canvas_h // 2 - 10 : canvas_h // 2 + 10] == BACKGROUND).all()
    key(pygame.K_ESCAPE)
    result = viewer.run()  # the real loop: handles the key on its first frame and returns
    assert not viewer.running and result.returns == [[]]
    assert not pygame.display.get_init()


def test_record_gif_has_one_frame_per_step(reach, tmp_path):
    out = tmp_path / "reach.gif"
    result = Viewer(reach, headless=True, record=out, episodes=2, end_hold=0).run()
    assert result.lengths == [[REACH_STEPS, REACH_STEPS]]
    frames = iio.mimread(out)
    assert (
        len(frames) == result.frames_recorded == 2 * (REACH_STEPS + 1)
    )  # first frame of each episode + steps
    assert frames[0].shape[:2] == (480, 960)


def test_record_mp4_includes_overlay_and_end_hold(reach, tmp_path):
    out = tmp_path / "reach.mp4"
    plain = Viewer(reach, headless=True, hud=False)
    expected = plain.frame_array()
    info_rect = plain.hud_rects()[0]
    plain.close()
    viewer = Viewer(reach, headless=True, record=out, end_hold=0.5)  # ReachTarget: 30 fps
    result = viewer.run()
    reader = iio.get_reader(out)
    assert reader.get_meta_data()["fps"] == 30
    assert reader.count_frames() == result.frames_recorded == REACH_STEPS + 1 + 15
    first = reader.get_data(0).astype(int)
    reader.close()
    outside = np.ones(first.shape[:2], bool)
    for rect in viewer.hud_rects():
        outside[rect.top : rect.bottom, rect.left : rect.right] = False
    assert np.abs(first - expected)[outside].mean() < 3  # the same picture (up to compression)
    assert np.abs(crop(first, info_rect) - crop(expected, info_rect)).mean() > 20  # plus the overlay


def test_compare_plays_side_by_side_on_the_same_seeds(cartpole, cartpole_other):
    seeds = []
    viewer = Viewer(cartpole, compare=cartpole_other, headless=True, hud=False, episodes=2, end_hold=0)
    left, right = viewer.panes
    assert (
        left.rect.right < right.rect.left and viewer.surface.get_width() >= left.rect.width + right.rect.width
    )
    pixels = viewer.frame_array()
    np.testing.assert_array_equal(crop(pixels, left.frame_rect), crop(pixels, right.frame_rect))
    while viewer.running:
        seeds.append((left.seed, right.seed))
        viewer.tick(1)
    result = viewer.result
    assert all(a == b for a, b in seeds) and {s for s, _ in seeds} == {0, 1}
    assert [len(r) for r in result.returns] == [2, 2]
    assert result.labels[0] != result.labels[1]
    viewer.close()


def test_environment_without_rgb_array_gets_a_clear_message(toy_env_ids, tmp_path, capsys):
    path = untrained(toy_env_ids["countdown"], tmp_path / "countdown")
    with pytest.raises(RenderError, match="rgb_array"):
        Viewer(path, headless=True)
    assert main(["replay", str(path), "--headless", "--record", str(tmp_path / "x.gif")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be watched" in err and "rgb_array" in err


def test_no_display_suggests_headless_record(reach, monkeypatch, capsys):
    for name in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    viewer = Viewer(reach)
    with pytest.raises(NoDisplayError, match="--headless --record"):
        viewer.tick(1)
    viewer.close()
    assert main(["replay", str(reach)]) == 1
    assert "--headless --record" in capsys.readouterr().err


@pytest.mark.slow  # seconds of subprocesses or export: runs in the whole suite
def test_cli_replay_headless_record_with_checkpoints(cartpole_run, tmp_path, capsys):
    out = tmp_path / "cmp.mp4"
    args = ["replay", str(cartpole_run), "--headless", "--record", str(out), "--episodes", "2"]
    assert main([*args, "--checkpoint", "first", "--compare", "latest", "--stochastic"]) == 0
    err = capsys.readouterr().err
    frames = int(re.search(r"recorded (\d+) frames", err).group(1))
    reader = iio.get_reader(out)
    assert reader.count_frames() == frames > 4
    assert "cp checkpoint · 256 steps" in err and "cp checkpoint · 768 steps" in err
    reader.close()
    assert main(["replay", str(cartpole_run), "--headless"]) == 2  # no file to record to
    assert main(["replay", str(cartpole_run), "--headless", "--record", str(tmp_path / "a.avi")]) == 1
    assert main(["replay", str(cartpole_run), "--checkpoint", "step_9"]) == 1
    assert "available: step_0000000256, step_0000000512, step_0000000768" in capsys.readouterr().err


def test_checkpoint_names(cartpole_run):
    names = [p.name for p in sorted((cartpole_run / "checkpoints").iterdir())]
    assert resolve_checkpoint(cartpole_run, "first").name == names[0]
    assert resolve_checkpoint(cartpole_run, "latest").name == names[-1]
    assert resolve_checkpoint(cartpole_run, "512").name == "step_0000000512"
    assert resolve_checkpoint(cartpole_run / "agent", names[1]).name == names[1]
    assert resolve_checkpoint(cartpole_run, str(cartpole_run / "agent")) == cartpole_run / "agent"
    with pytest.raises(AgentFileError, match="available"):
        resolve_checkpoint(cartpole_run, "nope")
