"""Turn-based games and self-play: the adapter's reward crediting, masks, seats and opponent
draws (environments/turns.py), snapshots and their exact resume, and game evaluation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from ppo_envkit import PPO, TrainConfig, make_env
from ppo_envkit.algo.games import play_games
from ppo_envkit.algo.selfplay import SnapshotPlayer, snapshot_payload
from ppo_envkit.config import EnvConfig
from ppo_envkit.environments.turns import RandomLegal, TurnBasedEnv
from tests.resume import assert_resume_is_exact
from tests.turn_games import (
    RewardEveryTurn,
    TakeLast,
    always_first_legal,
    optimal_take_last,
)

TICTACTOE = "pettingzoo.classic.tictactoe_v3:env"


def naive_rewards(seats: int, learner: int, learner_actions: list[int], moves: int) -> list[float]:
    """The learner's reward per step by hand: every reward its seat gets from each move, summed
    from its own move until its next one (the end of the game closes the last step). Rewards
    before its first move belong to its first step."""
    rewards: list[float] = []
    bucket, actions = 0.0, iter(learner_actions)
    moved = False
    for move in range(moves):
        mover = move % seats
        if mover == learner:
            if moved:
                rewards.append(bucket)
                bucket = 0.0
            moved = True
            action = next(actions)
        else:  # the scripted opponents: (move number + their seat) % 3
            action = (move + mover) % 3
        bucket += RewardEveryTurn.reward(move, mover, learner, action)
    rewards.append(bucket)
    return rewards


@pytest.mark.parametrize("learner", [0, 1, 2])
def test_rewards_credited_across_turns_match_a_naive_sum(learner):
    game = RewardEveryTurn(seats=3, moves=10)
    env = TurnBasedEnv(game, seat="alternate")
    # scripted opponents play (move number + their seat) % 3: one callable that reads the seat
    env.set_opponent(lambda obs, mask, rng: int(obs[0] + obs[1]) % 3, "scripted")
    seed = next(s for s in range(100) if s % 3 == learner)
    _, info = env.reset(seed=seed)
    assert info["seat"] == f"p{learner}"
    rng = np.random.default_rng(learner)
    actions, got, done = [], [], False
    while not done:
        action = int(rng.integers(3))
        actions.append(action)
        _obs, reward, terminated, truncated, info = env.step(action)
        got.append(reward)
        done = terminated or truncated
    expected = naive_rewards(3, learner, actions, 10)
    assert len(got) == len(expected)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    assert terminated and not truncated


def test_differing_seat_spaces_are_refused_in_one_line():
    game = TakeLast()
    game.action_space = lambda agent: __import__("gymnasium").spaces.Discrete(2 if agent == "p0" else 3)
    with pytest.raises(ValueError, match="different observation or action spaces") as info:
        TurnBasedEnv(game)
    assert "\n" not in str(info.value)


def test_no_illegal_move_in_random_policy_games():
    """An untrained policy (the collector, masks from info) and snapshot players of it play
    tic-tac-toe: the environment counts every move its mask forbade; none may happen."""
    agent = PPO(
        TICTACTOE,
        config=TrainConfig.model_validate(
            {"env": {"id": TICTACTOE, "num_envs": 4}, "ppo": {"n_steps": 64}, "run": {"eval_interval": 0}}
        ),
    )
    illegal, games = [], []

    from ppo_envkit import Callback

    class Count(Callback):
        def on_episode_end(self, episode):
            illegal.append(episode.info["illegal_moves"])
            games.append(episode.info["outcome"])

    agent.learn(64 * 4 * 4, callback=Count())
    agent.close()
    assert len(games) > 100 and sum(illegal) == 0
    # a random-weight snapshot as the learner against random legal players, from both seats
    result = play_games(agent.policy, agent.config.env, RandomLegal(agent.action_space), 50)
    assert result.total.games == 100 and result.total.illegal_moves == 0


def test_snapshot_player_matches_the_policy():
    agent = PPO(TICTACTOE)
    env = make_env(TICTACTOE)
    agent.policy.obs_norm.update(torch.randn(64, 18) * 0.3 + 0.5)  # non-trivial statistics
    player = SnapshotPlayer(snapshot_payload(agent.policy), deterministic=True)
    obs, info = env.reset(seed=1)
    for _ in range(3):
        mask = info["action_mask"]
        expected = agent.predict(obs, deterministic=True, action_mask=mask)
        with torch.no_grad():
            flat = agent.policy.obs_norm(agent.policy.obs_to_tensor(obs, batched=False))
            logits = agent.policy.actor_params(flat)[0].numpy()
        np.testing.assert_allclose(player.logits(obs), logits, rtol=1e-5, atol=1e-5)
        assert player(obs, mask, np.random.default_rng(0)) == int(expected)
        obs, _, done, _, info = env.step(int(expected))
        if done:
            break


def test_pool_draws_follow_latest_prob_and_the_pool_is_bounded():
    env = TurnBasedEnv(TakeLast(heap=50))
    env.configure_selfplay(pool_size=3, latest_prob=0.4, random_prob=0.0)
    for k in range(7):
        env.add_snapshot("tests.turn_games:Constant", {"action": k % 2}, name=f"s{k}")
    assert [name for name, _ in env.pool] == ["s4", "s5", "s6"]
    n = 6000
    counts = Counter()
    for seed in range(n):
        env.reset(seed=seed)
        counts[env.opponent_name] += 1
    expected = {"s6": 0.4 + 0.6 / 3, "s5": 0.6 / 3, "s4": 0.6 / 3}
    for name, p in expected.items():
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(counts[name] / n - p) < 4 * sigma, (name, counts)
    env.configure_selfplay(random_prob=0.25)
    randoms = 0
    for seed in range(n):
        env.reset(seed=seed)
        randoms += env.opponent_name == "random"
    sigma = (0.25 * 0.75 / n) ** 0.5
    assert abs(randoms / n - 0.25) < 4 * sigma
    # the same seed draws the same opponent (exact resume replays it)
    draws = []
    for _ in range(2):
        env.reset(seed=123)
        draws.append(env.opponent_name)
    assert draws[0] == draws[1]


def test_random_legal_player_before_any_snapshot():
    env = TurnBasedEnv(TakeLast())
    env.reset(seed=0)
    assert env.opponent_name == "random" and not env.pool


def test_seats_alternate_over_seeded_episodes_and_can_be_fixed():
    env = TurnBasedEnv(TakeLast(heap=5))
    seats = [env.reset(seed=s)[1]["seat"] for s in range(10)]
    assert seats == ["p0", "p1"] * 5
    assert env.reset(seed=7)[1]["seat"] == "p1"  # deterministic from the seed
    unseeded = [env.reset()[1]["seat"] for _ in range(4)]
    assert unseeded in (["p0", "p1"] * 2, ["p1", "p0"] * 2)
    for seat, name in (("first", "p0"), ("second", "p1")):
        env.configure_selfplay(seat=seat)
        assert {env.reset(seed=s)[1]["seat"] for s in range(6)} == {name}


def test_outcome_and_rates_against_a_scripted_opponent_on_a_known_game():
    """TakeLast from 4 stones: the optimal player wins every game as first player; as second
    against a random legal player it wins 3/4 (the opponent leaves 2 with probability 1/2, a
    win; else the optimal player leaves 2 and wins when the opponent then takes one: 1/2)."""
    config = EnvConfig(id="tests.turn_games:take_last")
    scripted_always_one = always_first_legal
    result = play_games(None, config, scripted_always_one, 100, agent=optimal_take_last, name="ones")
    assert result.seats["first"].win == 100 and result.seats["second"].win == 100
    rng_result = play_games(
        None, config, RandomLegal(__import__("gymnasium").spaces.Discrete(2)), 2000, agent=optimal_take_last
    )
    first, second = rng_result.seats["first"], rng_result.seats["second"]
    assert first.win == 2000 and first.illegal_moves == 0
    sigma = (0.75 * 0.25 / 2000) ** 0.5
    assert abs(second.win / 2000 - 0.75) < 4 * sigma and second.draw == 0
    assert rng_result.to_dict()["seats"]["second"]["loss_rate"] == pytest.approx(1 - second.win / 2000)


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_snapshots_join_the_pool_and_resume_is_exact(tmp_path, vectorization):
    config = TrainConfig.model_validate(
        {
            "env": {"id": TICTACTOE, "num_envs": 4, "vectorization": vectorization},
            "ppo": {"n_steps": 8, "minibatch_size": 16, "n_epochs": 2},
            "run": {"total_timesteps": 8 * 4 * 6, "seed": 3, "eval_interval": 0},
            "selfplay": {"snapshot_interval": 1, "pool_size": 2, "latest_prob": 0.5},
        }
    )
    _unbroken, _resumed = assert_resume_is_exact(config, tmp_path / "run")
    agent = PPO(config=config)
    try:
        agent.learn(8 * 4 * 3)
        pools = agent._trainer.collector.envs.get_attr("pool")
        assert [len(p) for p in pools] == [2] * 4  # snapshots after iterations 1 and 2 (3 is pending)
        agent.learn(8 * 4 * 5)  # 7 snapshots made: the run's state keeps those a pool can still hold
        changes = agent._trainer.collector.episodes.changes
    finally:
        agent.close()
    adds = [c for c in changes if c[1] == "add_snapshot"]
    # the pool's 2, and at most one more made during a current episode (at most 5 moves long)
    assert 2 <= len(adds) <= 3, [c[2][2] for c in adds]
    assert adds[-1][2][2] == "iteration 7"


def test_eval_cli_plays_games_from_both_seats(tmp_path, capsys):
    import json

    from ppo_envkit.cli import main

    PPO(TICTACTOE).save(tmp_path / "agent")
    assert main(["eval", str(tmp_path / "agent"), "--opponent", "random", "--episodes", "7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["opponent"] == "random" and out["games"] == 14 and out["illegal_moves"] == 0
    assert out["seats"]["first"]["games"] == 7 and out["wins"] + out["draws"] + out["losses"] == 14
    assert main(["eval", str(tmp_path / "agent"), "--opponent", "pool"]) != 0  # no run, no pool: one line
    assert "no snapshot pool" in capsys.readouterr().err


def test_connect_three_passes_pettingzoo_api_test_and_renders():
    import gymnasium as gym
    from pettingzoo.test import api_test

    from ppo_envkit import load_env_module
    from ppo_envkit.environments.registry import temporary_registrations

    with temporary_registrations():
        load_env_module("envs/connect3.py")
        api_test(gym.spec("ConnectThree-v0").entry_point(), num_cycles=200)
        env = make_env("ConnectThree-v0", render_mode="rgb_array")
        _, info = env.reset(seed=0)
        assert info["action_mask"].tolist() == [True] * 5
        frame = env.render()
        assert frame.shape == (160, 200, 3) and frame.dtype == np.uint8
        env.close()


def test_the_hints_after_training_a_game_work_as_printed(tmp_path, capsys, monkeypatch):
    """A turn-based game's run suggests eval against a random player and play; the printed eval
    command runs when pasted (the agent file names its module:factory id)."""
    from ppo_envkit.cli import main

    monkeypatch.chdir(tmp_path)
    env_id = "pettingzoo.classic.tictactoe_v3:env"
    argv = ["train", env_id, "--total-timesteps", "256", "--run-dir", "run", "--no-progress"]
    assert main([*argv, "--set", "env.num_envs=2", "--set", "run.eval_interval=0"]) == 0
    err = capsys.readouterr().err
    hints = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in err.splitlines()}
    assert hints["evaluate"][:5] == ["ppo-envkit", "eval", "run", "--opponent", "random"]
    assert hints["play it"] == ["ppo-envkit", "play", "run"]
    assert main([*hints["evaluate"][1:5], "--episodes", "4", "--json"]) == 0
    assert '"illegal_moves": 0' in capsys.readouterr().out
