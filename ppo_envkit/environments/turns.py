"""Turn-based games (PettingZoo ``AECEnv``) as one-seat Gymnasium environments.

The learner takes one seat of the game; whenever another seat is to move, that seat's
**opponent** moves inside :meth:`TurnBasedEnv.step`, until it is the learner's turn again or
the game ends. Seen from the learner the game is an ordinary single-agent environment, so
vectorization, several processes, exact resume, evaluation and export work unchanged.

* **Observation and mask**: PettingZoo's games give ``{"observation", "action_mask"}``; the
  observation is the seat's ``observation`` part and the mask goes to ``info["action_mask"]``
  (where :mod:`.masks` reads it).
* **Reward**: the learner's reward for one step is everything credited to its seat from its
  action until its next turn or the game's end, i.e. the AEC cumulative reward of the seat
  (``env.last()``), rewards given during the opponents' moves included.
* **Opponents** are picklable callables ``opponent(observation, action_mask, rng) -> action``.
  Before any snapshot exists the opponent is a uniformly random legal player; afterwards each
  episode draws one from the pool (the latest with probability ``latest_prob``, else one
  uniformly; a random legal player with probability ``random_prob``), with the environment's
  random stream, which the episode's seed sets: a seeded episode (every training episode is)
  replays exactly.
* **Seat**: ``alternate`` (a seeded episode takes seat ``seed % seats``, so the copies' and
  episodes' seats mix evenly and replay exactly; unseeded resets take the next seat),
  ``first`` or ``second``.
* ``info`` always holds the learner's ``seat``; at the game's end also its ``outcome``
  (``win``/``draw``/``loss``, the sign of the learner's last reward) and ``illegal_moves``
  (moves the mask forbade, by the learner; a game that ends on an illegal move counts too).

The snapshots themselves come from the algorithm's side (``ppo_envkit.algo.selfplay``) as
data, through :meth:`TurnBasedEnv.add_snapshot`, an environment change the trainer records,
so that checkpoints and exact resume keep the pool.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .multiagent import split_observation

#: ``opponent(observation, action_mask or None, rng) -> action``
Opponent = Callable[[Any, "np.ndarray | None", np.random.Generator], Any]
SEATS = ("alternate", "first", "second")


class RandomLegal:
    """A uniformly random legal player (the opponent before any snapshot exists)."""

    def __init__(self, action_space: spaces.Space):
        self.action_space = action_space

    def __call__(self, observation: Any, mask: np.ndarray | None, rng: np.random.Generator) -> Any:
        if mask is not None and isinstance(self.action_space, spaces.Discrete):
            legal = np.flatnonzero(mask)
            return int(self.action_space.start + legal[rng.integers(len(legal))])
        if mask is None and isinstance(self.action_space, spaces.Discrete):
            return int(self.action_space.start + rng.integers(self.action_space.n))
        self.action_space.seed(int(rng.integers(2**31)))
        return self.action_space.sample(mask=None if mask is None else mask.astype(np.int8))


def load_callable(name: str) -> Any:
    """The object named ``module:attribute`` (dots in the attribute walk into it)."""
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"{name!r} is not module:function")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class TurnBasedEnv(gym.Env):
    """One seat of a PettingZoo ``AECEnv``; the other seats are played by opponents."""

    def __init__(self, aec: Any, seat: str = "alternate"):
        self.aec = aec
        agents = list(aec.possible_agents)
        if len(agents) < 2:
            raise ValueError(f"a turn-based game needs two seats or more; this one has {agents}")
        self.seats = agents
        obs_spaces = [aec.observation_space(a) for a in agents]
        act_spaces = [aec.action_space(a) for a in agents]
        if any(s != obs_spaces[0] for s in obs_spaces) or any(s != act_spaces[0] for s in act_spaces):
            raise ValueError(
                "the game's seats have different observation or action spaces; one policy plays "
                "every seat here, so they must be the same"
            )
        space = obs_spaces[0]
        if isinstance(space, spaces.Dict) and "observation" in space.spaces and "action_mask" in space.spaces:
            space = space["observation"]
        self.observation_space = space
        self.action_space = act_spaces[0]
        self.metadata = {**dict(getattr(aec, "metadata", {}) or {}), "turn_based": True}
        self.render_mode = getattr(aec, "render_mode", None)
        self.seat = "alternate"
        #: Snapshot players, oldest first: ``(name, player)``.
        self.pool: list[tuple[str, Opponent]] = []
        self.pool_size = 20
        self.latest_prob = 0.5
        self.random_prob = 0.5
        #: A fixed opponent for every seat (evaluation against a chosen player); None: the pool.
        self.fixed_opponent: Opponent | None = None
        self._fixed_name = "fixed"
        self.random_player = RandomLegal(self.action_space)
        self._rng = np.random.default_rng()
        self._next_seat = 0
        self.learner = agents[0]
        self.opponent: Opponent = self.random_player
        self.opponent_name = "random"
        self._mask: np.ndarray | None = None
        self._carry = 0.0
        self.illegal_moves = 0
        self.configure_selfplay(seat=seat)

    # ------------------------------------------------------------------ configuration

    def configure_selfplay(
        self,
        seat: str | None = None,
        pool_size: int | None = None,
        latest_prob: float | None = None,
        random_prob: float | None = None,
    ) -> None:
        """The self-play settings (``selfplay.*``), applied when the copies are built."""
        if seat is not None:
            if seat not in SEATS:
                raise ValueError(f"selfplay.seat must be one of {', '.join(SEATS)}, not {seat!r}")
            self.seat = seat
        if pool_size is not None:
            self.pool_size = int(pool_size)
            del self.pool[: max(0, len(self.pool) - self.pool_size)]
        if latest_prob is not None:
            self.latest_prob = float(latest_prob)
        if random_prob is not None:
            self.random_prob = float(random_prob)

    def add_snapshot(self, factory: str, payload: Any, name: str = "") -> None:
        """Add a player built by ``factory(payload)`` (``module:function``, JSON-ready payload) to
        the pool; the oldest leaves when the pool is full. Takes effect at the next episode."""
        player = load_callable(factory)(payload)
        self.pool.append((name or f"snapshot{len(self.pool)}", player))
        del self.pool[: max(0, len(self.pool) - self.pool_size)]

    def set_opponent(self, opponent: Opponent | None, name: str = "fixed") -> None:
        """Play every episode against ``opponent`` (None: back to the pool). Not for training
        (an object is not an environment change): evaluation uses it."""
        self.fixed_opponent = opponent
        self._fixed_name = name

    # ------------------------------------------------------------------ the game

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if self.seat == "first":
            index = 0
        elif self.seat == "second":
            index = 1
        elif seed is not None:
            index = int(seed) % len(self.seats)
        else:
            index = self._next_seat
        self._next_seat = (index + 1) % len(self.seats)
        self.learner = self.seats[index]
        self.opponent, self.opponent_name = self._draw_opponent()
        self.aec.reset(seed=None if seed is None else int(self._rng.integers(2**31)), options=options)
        self.illegal_moves = 0
        self._carry = 0.0
        obs, reward, _done, info = self._advance()
        self._carry = reward  # rewards before the learner's first move go to its first step
        info = {**info, "seat": self.learner, "opponent": self.opponent_name}
        if self._mask is not None:
            info["action_mask"] = self._mask
        return obs, info

    def _draw_opponent(self) -> tuple[Opponent, str]:
        if self.fixed_opponent is not None:
            return self.fixed_opponent, self._fixed_name
        if not self.pool:
            return self.random_player, "random"
        if self.random_prob > 0 and self._rng.random() < self.random_prob:
            return self.random_player, "random"
        if self._rng.random() < self.latest_prob:
            name, player = self.pool[-1]
        else:
            name, player = self.pool[int(self._rng.integers(len(self.pool)))]
        return player, name

    def _cumulative(self) -> dict[str, float]:
        return self.aec._cumulative_rewards  # (the AEC API's own record, also through wrappers)

    def _advance(self) -> tuple[Any, float, bool, dict[str, Any]]:
        """Let the other seats move until the learner's turn or the game's end; returns the
        learner's observation, the reward credited to its seat since its last move, whether
        the game ended for it, and its info."""
        aec = self.aec
        while True:
            if not aec.agents or self.learner not in aec.agents:
                reward = float(self._cumulative().get(self.learner, 0.0))
                return self._final_obs(), reward, True, {}
            agent = aec.agent_selection
            raw, reward, terminated, truncated, info = aec.last()
            if agent == self.learner:
                self._cumulative()[agent] = 0.0  # credited now (some games do not clear it)
                obs, mask = split_observation(raw)
                if mask is None and isinstance(info, dict) and "action_mask" in info:
                    mask = np.asarray(info["action_mask"]).astype(bool)
                self._mask = mask
                self._last_obs = obs
                return obs, float(reward), bool(terminated or truncated), dict(info or {})
            if terminated or truncated:
                aec.step(None)
                continue
            obs, mask = split_observation(raw)
            if mask is None and isinstance(info, dict) and "action_mask" in info:
                mask = np.asarray(info["action_mask"]).astype(bool)
            aec.step(self.opponent(obs, mask, self._rng))

    def _final_obs(self) -> Any:
        try:
            obs, _ = split_observation(self.aec.observe(self.learner))
            return obs
        except Exception:  # the seat has left the game: its last observation stands
            return self._last_obs

    def step(self, action: Any):
        aec = self.aec
        if self.learner not in aec.agents or aec.terminations[self.learner] or aec.truncations[self.learner]:
            raise RuntimeError("step() after the game ended for the learner's seat: call reset() first")
        mask = self._mask
        if mask is not None and isinstance(self.action_space, spaces.Discrete):
            if not mask[int(action) - int(self.action_space.start)]:
                self.illegal_moves += 1
        self.aec.step(action)
        obs, reward, done, info = self._advance()
        reward += self._carry
        self._carry = 0.0
        info = {**info, "seat": self.learner, "opponent": self.opponent_name}
        if done:
            info["outcome"] = "win" if reward > 0 else "loss" if reward < 0 else "draw"
            info["illegal_moves"] = self.illegal_moves
            info.pop("action_mask", None)
            truncated = bool(self.aec.truncations.get(self.learner, False)) and not bool(
                self.aec.terminations.get(self.learner, False)
            )
            return obs, reward, not truncated, truncated, info
        if self._mask is not None:
            info["action_mask"] = self._mask
        return obs, reward, False, False, info

    def render(self) -> Any:
        return self.aec.render()

    def close(self) -> None:
        self.aec.close()


__all__ = ["SEATS", "Opponent", "RandomLegal", "TurnBasedEnv", "load_callable"]
