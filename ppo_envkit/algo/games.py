"""Evaluating an agent in a turn-based game: wins, draws and losses from each seat against an
opponent (a random legal player, the run's snapshot pool, a ``module:function`` or another agent).

The agent acts deterministically (its most likely legal action, as every evaluation does);
opponents sample (a deterministic opponent would play the same game every time). Each seat
plays ``games`` games with seeds ``seed, seed + 1, ...``, so two evaluations with the same
seed and opponent play the same games.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import EnvConfig
from ..environments.factory import make_configured_env
from ..environments.turns import Opponent, RandomLegal, TurnBasedEnv, load_callable
from ..errors import ConfigError
from .policy import ActorCritic
from .selfplay import SnapshotPlayer, pool_payloads, snapshot_payload

OUTCOMES = ("win", "draw", "loss")


@dataclass
class SeatRecord:
    """Games of one seat: counts of each outcome, and illegal moves by the agent."""

    games: int = 0
    win: int = 0
    draw: int = 0
    loss: int = 0
    illegal_moves: int = 0

    def rates(self) -> dict[str, float]:
        n = max(self.games, 1)
        return {"win_rate": self.win / n, "draw_rate": self.draw / n, "loss_rate": self.loss / n}

    def to_dict(self) -> dict[str, Any]:
        return {
            "games": self.games,
            "wins": self.win,
            "draws": self.draw,
            "losses": self.loss,
            "illegal_moves": self.illegal_moves,
            **self.rates(),
        }


@dataclass
class GameResult:
    """Outcomes per seat (``first``, ``second``) against one opponent."""

    opponent: str
    seats: dict[str, SeatRecord] = field(default_factory=dict)

    @property
    def total(self) -> SeatRecord:
        out = SeatRecord()
        for record in self.seats.values():
            for name in ("games", "win", "draw", "loss", "illegal_moves"):
                setattr(out, name, getattr(out, name) + getattr(record, name))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "opponent": self.opponent,
            **self.total.to_dict(),
            "seats": {seat: record.to_dict() for seat, record in self.seats.items()},
        }

    def line(self) -> str:
        parts = []
        for seat, record in self.seats.items():
            rates = record.rates()
            parts.append(
                f"{seat} seat: win {rates['win_rate']:.1%}, draw {rates['draw_rate']:.1%}, "
                f"loss {rates['loss_rate']:.1%} ({record.games} games)"
            )
        illegal = self.total.illegal_moves
        return f"vs {self.opponent}: " + "; ".join(parts) + f"; illegal moves {illegal}"


def play_games(
    policy: ActorCritic | None,
    env_config: EnvConfig,
    opponents: list[Opponent] | Opponent,
    games: int = 100,
    *,
    seed: int = 0,
    name: str = "opponent",
    agent: Opponent | None = None,
) -> GameResult:
    """``games`` games from each seat of the agent (``policy``, deterministic; or ``agent``, any
    player) against ``opponents`` (one, or several taken in turn, game by game)."""
    pool = opponents if isinstance(opponents, list) else [opponents]
    if not pool:
        raise ConfigError("no opponent to play against (the snapshot pool is empty)")
    if agent is None:
        if policy is None:
            raise ValueError("play_games needs a policy or an agent player")
        agent = SnapshotPlayer(snapshot_payload(policy), deterministic=True)
    player = agent
    env = make_configured_env(env_config)
    base = env.unwrapped
    if not isinstance(base, TurnBasedEnv):
        env.close()
        raise ConfigError(f"environment {env_config.id} is not a turn-based game (a PettingZoo AECEnv)")
    rng = np.random.default_rng(seed)
    result = GameResult(name)
    try:
        for seat in ("first", "second"):
            base.configure_selfplay(seat=seat)
            record = result.seats[seat] = SeatRecord()
            for game in range(games):
                base.set_opponent(pool[game % len(pool)], name)
                obs, info = env.reset(seed=seed + game)
                done = False
                while not done:
                    obs, _, terminated, truncated, info = env.step(player(obs, info.get("action_mask"), rng))
                    done = terminated or truncated
                record.games += 1
                outcome = info.get("outcome", "draw")
                setattr(record, outcome, getattr(record, outcome) + 1)
                record.illegal_moves += int(info.get("illegal_moves", 0))
    finally:
        env.close()
    return result


def random_opponent(env_config: EnvConfig) -> Opponent:
    """A uniformly random legal player of the game."""
    env = make_configured_env(env_config)
    try:
        return RandomLegal(env.action_space)
    finally:
        env.close()


def pool_opponents(run_dir: str | Path, pool_size: int) -> list[Opponent]:
    """The snapshot pool of a run (from its latest checkpoint), as sampling players."""
    from ..io.checkpoint import checkpoint_dirs, load_trainer_state

    checkpoints = checkpoint_dirs(run_dir)
    if not checkpoints:
        raise ConfigError(
            f"{run_dir} has no checkpoint, so no snapshot pool: --opponent pool needs a run directory"
        )
    meta, _ = load_trainer_state(checkpoints[-1])
    changes = list(meta.get("episodes", {}).get("changes", [])) + list(meta.get("env_changes_pending", []))
    payloads = pool_payloads(changes, pool_size)
    if not payloads:
        raise ConfigError(
            f"the run {run_dir} has no snapshot yet (selfplay.snapshot_interval iterations first)"
        )
    return [SnapshotPlayer(payload) for _, payload in payloads]


def resolve_opponent(
    spec: str, env_config: EnvConfig, run_dir: str | Path | None, pool_size: int
) -> list[Opponent]:
    """``random``, ``pool`` (the run's snapshots) or ``module:function`` (an opponent callable);
    an agent directory is the facade's to load (``PPO.play``)."""
    if spec == "random":
        return [random_opponent(env_config)]
    if spec == "pool":
        if run_dir is None:
            raise ConfigError("--opponent pool needs the run directory of a self-play training")
        return pool_opponents(run_dir, pool_size)
    if ":" in spec:
        try:
            return [load_callable(spec)]
        except (ImportError, AttributeError, ValueError) as exc:
            raise ConfigError(f"--opponent {spec}: cannot import it ({exc})") from None
    raise ConfigError(f"--opponent {spec!r}: expected random, pool, module:function or an agent directory")


__all__ = [
    "OUTCOMES",
    "GameResult",
    "SeatRecord",
    "play_games",
    "pool_opponents",
    "random_opponent",
    "resolve_opponent",
]
