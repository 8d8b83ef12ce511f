"""Several agents: what rows of one shared policy cost, in training agent-steps per second.

Trains on ``Foragers-v0`` (envs/foragers.py) with ``--agents`` foragers per copy, and on
``SoloForager-v0``, the same game with one forager written as a plain Gymnasium environment
(no AgentStack), so that one agent-step costs the environment about the same in both. Both
train the same number of agent-steps with the same number of rows per step (``--rows``:
``rows / agents`` copies of Foragers, ``rows`` copies of the solo game), with ppo-envkit's
default settings otherwise. Printed: agent-steps per second of training (collection +
update), of collection alone, and the raw step rate of each environment (the ceiling).

    python examples/agents_throughput.py                  # 4 agents, 16 rows, 50k agent-steps
    python examples/agents_throughput.py --agents 8 --rows 32 --steps 100000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # envs/ importable from anywhere

from envs.foragers import Foragers
from ppo_envkit import PPO, TrainConfig, make_env, register_env


class SoloForager(gym.Env):
    """Foragers' game with one forager, as a single-agent Gymnasium environment."""

    def __init__(self, render_mode: str | None = None):
        self.game = Foragers(num_agents=1)
        self.observation_space = self.game.observation_space("forager_0")
        self.action_space = self.game.action_space("forager_0")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, _ = self.game.reset(seed=seed)
        return obs["forager_0"], {}

    def step(self, action: Any):
        obs, rewards, terminations, truncations, _ = self.game.step({"forager_0": action})
        a = "forager_0"
        return obs[a], rewards[a], terminations[a], truncations[a], {}


register_env("SoloForager-v0", SoloForager, overwrite=True)


def raw_rate(env_id: str, kwargs: dict[str, Any], agents: int, seconds: float = 3.0) -> float:
    """Agent-steps per second of the environment alone, random actions, one copy."""
    env = make_env(env_id, kwargs)
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        action = rng.integers(0, 5, agents) if agents > 1 else int(rng.integers(0, 5))
        _, _, terminated, truncated, _ = env.step(action)
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps * agents / (time.perf_counter() - start)


def train_rate(env_id: str, kwargs: dict[str, Any], copies: int, steps: int) -> tuple[float, float]:
    config = TrainConfig().with_overrides({"env.id": env_id, "env.kwargs": kwargs, "env.num_envs": copies})
    agent = PPO(config=config)
    agent.prepare()
    start = time.perf_counter()
    agent.learn(steps)
    elapsed = time.perf_counter() - start
    collect = agent.last_metrics["collect_sps"]
    agent.close()
    return agent.num_timesteps / elapsed, collect


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--rows", type=int, default=16, help="rows per step (copies x agents)")
    parser.add_argument("--steps", type=int, default=51_200, help="agent-steps each trains")
    args = parser.parse_args()
    if args.rows % args.agents:
        parser.error("--rows must be a multiple of --agents")
    cases = {
        f"Foragers-v0, {args.agents} agents": ("Foragers-v0", {"num_agents": args.agents}, args.agents),
        "SoloForager-v0, 1 agent": ("SoloForager-v0", {}, 1),
    }
    print(f"{args.steps:,} agent-steps, {args.rows} rows per step; agent-steps per second:")
    print(f"{'':30}{'train':>10}{'collect':>10}{'env alone':>12}")
    rates = {}
    for name, (env_id, kwargs, agents) in cases.items():
        train, collect = train_rate(env_id, kwargs, args.rows // agents, args.steps)
        raw = raw_rate(env_id, kwargs, agents)
        rates[name] = train
        print(f"{name:30}{train:>10.0f}{collect:>10.0f}{raw:>12.0f}", flush=True)
    several, solo = rates.values()
    print(f"several agents train at {several / solo:.2f}x the solo game's agent-steps per second")


if __name__ == "__main__":
    main()
