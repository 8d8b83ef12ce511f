"""A composite (Tuple) action head against the two usual workarounds, at equal steps.

On ``Golf-v0`` (``envs/golf.py``: a club among 3, each with its own signed power), four
agents train for the same number of steps with the same settings (the defaults, 8 copies),
over a few seeds:

* ``composite``: the environment's own ``Tuple((Discrete(3), Tuple((Box, Box, Box))))``,
  independent parts (the default);
* ``composite-chosen``: the same, with ``policy.composite_params=chosen`` (only the chosen
  club's power counts in the loss) and ``policy.composite=conditional``;
* ``discretized``: one ``Discrete(3 * LEVELS)``, every club with LEVELS evenly spaced powers;
* ``flat-box``: one ``Box(6)``: the club is the argmax of the first 3 values, the powers the rest.

Each final agent plays 100 episodes with its most likely action (``agent.evaluate``); the
table gives the mean return per seed and over seeds.

    python examples/composite_vs_workarounds.py                         # 3 seeds, 60,000 steps
    python examples/composite_vs_workarounds.py --seeds 0 1 --steps 20000 --methods composite flat-box
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))

from golf import CLUBS, Golf

from ppo_envkit import PPO, TrainConfig, register_env

#: Powers per club of the discretized workaround (evenly spaced in [-1, 1]).
LEVELS = 21


@register_env("GolfDiscretized-v0", max_episode_steps=10)
class GolfDiscretized(Golf):
    """Golf with one Discrete(3 * LEVELS): club = a // LEVELS, power = level a % LEVELS."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.action_space = spaces.Discrete(len(CLUBS) * LEVELS)

    def step(self, action):
        club, level = divmod(int(action), LEVELS)
        power = np.float32(-1.0 + 2.0 * level / (LEVELS - 1))
        powers = tuple(np.full(1, power, np.float32) for _ in CLUBS)
        return super().step((club, powers))


@register_env("GolfFlatBox-v0", max_episode_steps=10)
class GolfFlatBox(Golf):
    """Golf with one Box(6): the club is the argmax of the first 3 values, the powers the last 3."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2 * len(CLUBS),), dtype=np.float32)

    def step(self, action):
        action = np.asarray(action, np.float32)
        k = len(CLUBS)
        club = int(np.argmax(action[:k]))
        return super().step((club, tuple(action[k + i : k + i + 1] for i in range(k))))


METHODS = {
    "composite": ("Golf-v0", {}),
    "composite-chosen": ("Golf-v0", {"composite": "conditional", "composite_params": "chosen"}),
    "discretized": ("GolfDiscretized-v0", {}),
    "flat-box": ("GolfFlatBox-v0", {}),
}


def run(method: str, seed: int, steps: int, episodes: int) -> tuple[float, float, float]:
    """(mean return of ``episodes`` deterministic episodes, share holed, seconds of training)."""
    env_id, policy = METHODS[method]
    config = TrainConfig.model_validate(
        {
            "env": {"id": env_id, "num_envs": 8},
            "policy": policy,
            "run": {"seed": seed, "total_timesteps": steps},
        }
    )
    agent = PPO(env_id, config=config)
    start = time.perf_counter()
    agent.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    result = agent.evaluate(episodes, seed=1000 + seed)
    agent.close()
    returns = np.asarray(result.returns, dtype=np.float64)
    return float(returns.mean()), float((returns > 0.5).mean()), seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args(argv)
    gym.logger.min_level = 40
    rows = []
    for method in args.methods:
        scores = []
        for seed in args.seeds:
            mean, holed, seconds = run(method, seed, args.steps, args.episodes)
            scores.append(mean)
            print(
                f"{method:18s} seed {seed}: return {mean:6.3f}  holed {holed:4.0%}  ({seconds:.0f} s)",
                flush=True,
            )
        rows.append((method, scores))
    print(f"\nGolf-v0, {args.steps:,} steps, {args.episodes} deterministic episodes per seed")
    print(f"{'method':18s} {'mean':>7s} {'std':>6s}  per seed")
    for method, scores in rows:
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        each = " ".join(f"{s:6.3f}" for s in scores)
        print(f"{method:18s} {statistics.mean(scores):7.3f} {std:6.3f}  {each}")


if __name__ == "__main__":
    main()
