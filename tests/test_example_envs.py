"""envs/knight.py (action masks) and envs/pixels.py (image observations): API and behaviour."""

from __future__ import annotations

import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from ppo_envkit import load_env_module
from ppo_envkit.environments.registry import temporary_registrations

ENVS = Path(__file__).resolve().parents[1] / "envs"
KNIGHT_MOVES = {(1, 2), (2, 1)}


@pytest.fixture(autouse=True)
def registered():
    with temporary_registrations():
        load_env_module(str(ENVS / "knight.py"))
        load_env_module(str(ENVS / "pixels.py"))
        yield


def expected_mask(env: gym.Env) -> np.ndarray:
    """The legal targets, worked out again from the observation: knight moves to unvisited cells."""
    obs = env.unwrapped._obs()
    size = env.unwrapped.size
    row, col = divmod(obs["position"], size)
    mask = np.zeros(size * size, dtype=bool)
    for cell in range(size * size):
        r, c = divmod(cell, size)
        if (abs(r - row), abs(c - col)) in KNIGHT_MOVES and obs["visited"][r, c] == 0:
            mask[cell] = True
    return mask


def rollout_legal(env: gym.Env, seed: int) -> list:
    """One episode of random legal moves; the transitions, for comparing runs."""
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    trace = [(obs["position"], obs["visited"].copy())]
    while True:
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append((obs["position"], obs["visited"].copy(), reward, terminated))
        if terminated or truncated:
            return trace


@pytest.mark.parametrize(
    ("env_id", "kwargs"),
    [
        ("KnightTour-v0", {"illegal": "penalize"}),  # Gymnasium's checker sends unmasked actions
        ("KnightTourNoMask-v0", {}),
        ("PixelChase-v0", {}),
        ("PixelChase-v0", {"channels_first": True}),
        ("PixelChase-v0", {"size": 84}),
    ],
)
def test_gymnasium_check_env_passes(env_id, kwargs):
    env = gym.make(env_id, render_mode="rgb_array", **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a gymnasium warning is a failure too
        check_env(env.unwrapped, skip_render_check=True)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


def test_knight_spaces():
    env = gym.make("KnightTour-v0")
    assert env.action_space == spaces.Discrete(25)
    assert env.observation_space["visited"] == spaces.MultiBinary((5, 5))
    assert env.observation_space["position"] == spaces.Discrete(25)
    assert gym.make("KnightTour-v0", size=6).action_space == spaces.Discrete(36)
    for env_id in ("KnightTour-v0", "KnightTourNoMask-v0"):
        spec = gym.spec(env_id)
        assert spec.max_episode_steps == 100 and spec.reward_threshold is not None


def test_masks_agree_and_are_exactly_the_legal_moves():
    env = gym.make("KnightTour-v0")
    for seed in range(20):
        _, info = env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        while True:
            mask = env.unwrapped.action_masks()
            assert mask.dtype == bool and mask.shape == (25,)
            np.testing.assert_array_equal(mask, info["action_mask"])
            np.testing.assert_array_equal(mask, expected_mask(env))
            assert mask.sum() <= 8
            if not mask.any():
                break
            _, reward, terminated, _, info = env.step(int(rng.choice(np.flatnonzero(mask))))
            assert reward == 1.0
            assert terminated == (not info["action_mask"].any())
            if terminated:
                np.testing.assert_array_equal(env.unwrapped.action_masks(), info["action_mask"])
                break


def test_illegal_action_raises_on_the_masked_game():
    env = gym.make("KnightTour-v0")
    _, info = env.reset(seed=3)
    position = env.unwrapped._obs()["position"]
    for illegal in (position, *np.flatnonzero(~info["action_mask"])[:5]):
        with pytest.raises(ValueError, match="illegal action"):
            env.step(int(illegal))
    # revisiting a cell is illegal too: hop there and back
    start = position
    env.step(int(np.flatnonzero(info["action_mask"])[0]))
    with pytest.raises(ValueError, match="illegal action"):
        env.step(int(start))


def test_random_legal_rollouts_never_raise_and_end():
    env = gym.make("KnightTour-v0", illegal="raise")
    for seed in range(50):
        trace = rollout_legal(env, seed)
        final_visited = trace[-1][1]
        assert trace[-1][3] is True  # terminated, not truncated
        assert final_visited.sum() == len(trace)  # every step visits a new cell


@pytest.mark.parametrize("env_id", ["KnightTour-v0", "KnightTourNoMask-v0"])
def test_illegal_actions_are_penalised_without_a_mask_or_when_asked(env_id):
    masked = env_id == "KnightTour-v0"
    env = gym.make(env_id, illegal="penalize") if masked else gym.make(env_id)
    assert hasattr(env.unwrapped, "action_masks") == masked
    obs, info = env.reset(seed=0)
    assert ("action_mask" in info) == masked
    position = obs["position"]
    for count in range(1, 11):
        obs, reward, terminated, truncated, info = env.step(int(position))  # staying put is illegal
        assert ("action_mask" in info) == masked
        assert reward == -1.0 and obs["position"] == position and obs["visited"].sum() == 1
        assert terminated == (count == 10) and not truncated


def test_masked_and_unmasked_games_are_the_same():
    masked, unmasked = gym.make("KnightTour-v0", illegal="penalize"), gym.make("KnightTourNoMask-v0")
    rng = np.random.default_rng(0)
    for seed in range(10):
        masked.reset(seed=seed)
        unmasked.reset(seed=seed)
        done = False
        while not done:
            action = int(rng.integers(25))
            out_m, out_u = masked.step(action), unmasked.step(action)
            for key in ("visited", "position"):
                np.testing.assert_array_equal(out_m[0][key], out_u[0][key])
            assert out_m[1:4] == out_u[1:4]
            done = out_m[2] or out_m[3]


def test_no_mask_variant_cannot_raise():
    with pytest.raises(ValueError, match="needs a mask"):
        gym.make("KnightTourNoMask-v0", illegal="raise")


def test_random_policy_on_no_mask_always_ends():
    env = gym.make("KnightTourNoMask-v0")
    env.action_space.seed(0)
    for seed in range(30):
        env.reset(seed=seed)
        steps, ended = 0, False
        while not ended:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, ended = steps + 1, terminated or truncated
        assert terminated and steps <= 34  # 24 new cells + 10 illegal actions at most


def test_knight_determinism():
    env_a, env_b = gym.make("KnightTour-v0"), gym.make("KnightTour-v0")
    for seed in (0, 1, 7):
        a, b = rollout_legal(env_a, seed), rollout_legal(env_b, seed)
        assert len(a) == len(b)
        for step_a, step_b in zip(a, b, strict=True):
            assert (
                step_a[0] == step_b[0] and np.array_equal(step_a[1], step_b[1]) and step_a[2:] == step_b[2:]
            )
    starts = {gym.make("KnightTour-v0").reset(seed=s)[0]["position"] for s in range(40)}
    assert len(starts) > 10


def test_pixels_spaces_and_sizes():
    env = gym.make("PixelChase-v0")
    assert env.observation_space == spaces.Box(0, 255, (16, 16, 3), np.uint8)
    assert env.action_space == spaces.Discrete(4)
    assert gym.make("PixelChase-v0", size=84).observation_space.shape == (84, 84, 3)
    assert gym.make("PixelChase-v0", size=32, channels_first=True).observation_space.shape == (3, 32, 32)
    for bad in (15, 85):
        with pytest.raises(ValueError, match="size"):
            gym.make("PixelChase-v0", size=bad)


@pytest.mark.parametrize("size", [16, 21, 84])
def test_channels_first_is_the_transpose_of_channels_last(size):
    last = gym.make("PixelChase-v0", size=size)
    first = gym.make("PixelChase-v0", size=size, channels_first=True)
    obs_last, _ = last.reset(seed=5)
    obs_first, _ = first.reset(seed=5)
    np.testing.assert_array_equal(obs_first, obs_last.transpose(2, 0, 1))
    for action in [0, 1, 2, 3, 3, 1, 0, 2] * 3:
        obs_last, r_last, t_last, *_ = last.step(action)
        obs_first, r_first, t_first, *_ = first.step(action)
        np.testing.assert_array_equal(obs_first, obs_last.transpose(2, 0, 1))
        assert (r_last, t_last) == (r_first, t_first)
        if t_last:
            break


def test_pixels_show_the_positions_and_shortest_path_wins():
    env = gym.make("PixelChase-v0", render_mode="rgb_array")
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        u, distance = env.unwrapped, info["distance"]
        blue = (obs == (60, 140, 255)).all(axis=-1)
        red = (obs == (255, 70, 40)).all(axis=-1)
        assert blue.sum() == 4 and red.sum() == 4  # 2 x 2 pixel squares on the 16 x 16 picture
        ys, xs = np.nonzero(blue)
        assert (ys.min() // 2, xs.min() // 2) == tuple(u._agent)
        total, steps = 0.0, 0
        terminated = False
        while not terminated:
            dr, dc = u._target - u._agent
            action = (0 if dr < 0 else 1) if dr else (2 if dc < 0 else 3)
            obs, reward, terminated, _, info = env.step(action)
            total, steps = total + reward, steps + 1
        assert (
            steps == distance and info["distance"] == 0 and total == pytest.approx(1.0 - 0.01 * (steps - 1))
        )
        frame = env.render()
        assert frame.shape == (256, 256, 3)
        np.testing.assert_array_equal(frame[::16, ::16], obs)


def test_pixels_determinism():
    a, b = gym.make("PixelChase-v0"), gym.make("PixelChase-v0")
    for seed in (0, 1, 2):
        obs_a, _ = a.reset(seed=seed)
        obs_b, _ = b.reset(seed=seed)
        np.testing.assert_array_equal(obs_a, obs_b)
        for action in (0, 3, 1, 2, 3):
            out_a, out_b = a.step(action), b.step(action)
            np.testing.assert_array_equal(out_a[0], out_b[0])
            assert out_a[1:4] == out_b[1:4]
    firsts = {gym.make("PixelChase-v0").reset(seed=s)[0].tobytes() for s in range(20)}
    assert len(firsts) == 20
