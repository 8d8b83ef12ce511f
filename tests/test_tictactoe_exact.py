"""examples/tictactoe_exact.py: the exact tic-tac-toe evaluation behind docs/several-agents.md
(its ceilings, its board as PettingZoo's game plays it, its minimax opponent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from gymnasium.spaces import Discrete

pytest.importorskip("pettingzoo")

from ppo_envkit.algo.games import play_games
from ppo_envkit.config import EnvConfig
from ppo_envkit.environments.turns import RandomLegal

PATH = Path(__file__).resolve().parents[1] / "examples" / "tictactoe_exact.py"
spec = importlib.util.spec_from_file_location("tictactoe_exact", PATH)
exact = importlib.util.module_from_spec(spec)
spec.loader.exec_module(exact)

TICTACTOE = EnvConfig(id="pettingzoo.classic.tictactoe_v3:env")
START = (0,) * 9


def first_legal(obs, mask, rng):
    return int(np.flatnonzero(mask)[0])


def test_ceilings_against_a_random_player():
    assert exact.minimax(START, 1, 1) == 0  # a draw with perfect play
    assert exact.best_vs_random(START, 1, 1) == pytest.approx(191 / 192)
    assert exact.best_vs_random(START, 1, 1, sound=True) == pytest.approx(191 / 192)
    assert exact.best_vs_random(START, 1, 2) == pytest.approx(0.938624, abs=1e-6)
    assert exact.best_vs_random(START, 1, 2, sound=True) == pytest.approx(0.916402, abs=1e-6)
    # the expectimax answers an edge opening in a far corner: unsound (it loses to perfect play)
    edge = (0, 1, 0, 0, 0, 0, 0, 0, 0)
    far_corner = (*edge[:6], 2, *edge[7:])
    assert exact.minimax(far_corner, 1, 2) == -1
    assert exact.best_vs_random(far_corner, 1, 2) == exact.best_vs_random(edge, 2, 2)


def test_exact_outcomes_match_games_played_through_the_adapter():
    """The example's board, seats and random player are PettingZoo's game as the adapter plays
    it: a deterministic player's exact outcome probabilities match 1000 sampled games."""
    n = 1000
    played = play_games(None, TICTACTOE, RandomLegal(Discrete(9)), n, agent=first_legal)
    for me, seat in ((1, "first"), (2, "second")):
        outcome, moves = exact.exact_outcomes(lambda b: b.index(0), me)
        assert outcome.sum() == pytest.approx(1.0)
        assert all(cost >= -1e-12 for cost, *_ in moves)
        record = played.seats[seat]
        for p, count in zip(outcome, (record.win, record.draw, record.loss), strict=True):
            assert abs(count / n - p) < 4 * (p * (1 - p) / n) ** 0.5 + 1e-9, (seat, outcome, record)


def test_perfect_player_never_loses():
    against_itself = play_games(None, TICTACTOE, exact.perfect, 30, agent=exact.perfect)
    assert against_itself.total.draw == against_itself.total.games
    random = RandomLegal(Discrete(9))
    against_random = play_games(None, TICTACTOE, random, 100, agent=exact.perfect)
    assert against_random.total.loss == 0 and against_random.total.illegal_moves == 0


def test_seat_rates_are_each_seats_exact_win():
    """``--checkpoints``' numbers: the win probability of each seat, as exact_outcomes gives it
    (a player that takes the first empty square wins these many games against random play)."""
    first, second = exact.seat_rates(lambda me: lambda b: b.index(0))
    assert first == pytest.approx(exact.exact_outcomes(lambda b: b.index(0), 1)[0][0])
    assert second == pytest.approx(exact.exact_outcomes(lambda b: b.index(0), 2)[0][0])
    assert first != second


def test_checkpoints_are_listed_by_step(tmp_path):
    for step in (1_000_000, 200_704, 99_328):  # lexical order is not step order without padding
        (tmp_path / "checkpoints" / f"step_{step}").mkdir(parents=True)
    (tmp_path / "checkpoints" / "latest.json").touch()  # not a checkpoint directory
    assert [step for step, _ in exact.checkpoints(tmp_path)] == [99_328, 200_704, 1_000_000]
    assert exact.checkpoints(tmp_path / "missing") == []


def test_sampled_outcomes_of_a_deterministic_policy_are_its_exact_outcomes():
    """A policy that puts all its probability on one move is the deterministic player; a uniform
    one is the random player, which wins these many games as first and second seat."""
    first_empty = lambda b: np.eye(9)[b.index(0)]  # noqa: E731
    for me in (1, 2):
        assert exact.sampled_outcomes(first_empty, me) == pytest.approx(
            exact.exact_outcomes(lambda b: b.index(0), me)[0]
        )
    uniform = lambda b: np.asarray(exact.legal(b), dtype=float) / exact.legal(b).sum()  # noqa: E731
    win_first, draw, loss_first = exact.sampled_outcomes(uniform, 1)
    win_second, draw_again, loss_second = exact.sampled_outcomes(uniform, 2)
    # random against random, seen from both seats: the same games; the first seat wins 58.5 %
    assert win_first == pytest.approx(loss_second) and loss_first == pytest.approx(win_second)
    assert draw == pytest.approx(draw_again)
    assert win_first == pytest.approx(0.5849, abs=1e-4)
