"""What a composite agent does on Moving-v0 as it trains: the choice's probabilities and each
parameter's mean and standard deviation (in the environment's units; mean over probe states ±
spread between them), the return of its most likely action beside that of its stochastic
policy, and how the most likely action plays (share of each choice, mean acceleration and |turn|
taken, mean speed, how the episodes end).

    python examples/moving_diagnose.py --steps 100000 --seed 0

The probe states are fixed: 256 states after 0 to 39 random steps. The evaluations draw from the
agent's own generator, so a run of this script is not bit for bit the run of the same seed in
``composite_vs_workarounds.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hybrid_moving import MAX_STEP, MovingParametrized

from ppo_envkit import PPO, TrainConfig


def probe_states(count: int = 256, seed: int = 7) -> np.ndarray:
    """Observations after 0 to 39 random steps (small accelerations, any turn)."""
    env, rng, out = MovingParametrized(), np.random.default_rng(seed), []
    for i in range(count):
        obs, _ = env.reset(seed=seed + i)
        for _ in range(int(rng.integers(0, 40))):
            choice = int(rng.integers(0, 3))
            acc = np.array([rng.uniform(0, 0.3)], np.float32)
            turn = np.array([rng.uniform(-1, 1)], np.float32)
            obs, _, terminated, _, _ = env.step((choice, (acc, turn, np.zeros(0, np.float32))))
            if terminated:
                obs, _ = env.reset(seed=seed + 1000 + i)
        out.append(obs)
    return np.array(out, np.float32)


def play(agent: PPO, episodes: int = 50, seed: int = 1000) -> str:
    """How the most likely action plays."""
    env = MovingParametrized()
    counts, ends = np.zeros(3), {"goal": 0, "out": 0, "time": 0}
    accs, turns, speeds = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, info = False, {}
        while not done:
            action = agent.predict(obs, deterministic=True)
            choice = int(action[0])
            counts[choice] += 1
            if choice < 2:
                value = float(np.asarray(action[1][choice]).reshape(-1)[0])
                (accs if choice == 0 else turns).append(abs(value))
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            speeds.append(env._speed)
        ends["goal" if info["goal"] else "time" if env._steps > MAX_STEP else "out"] += 1
    share = np.array2string(counts / counts.sum(), precision=2)
    acc = np.mean(accs) if accs else float("nan")
    turn = np.mean(turns) if turns else float("nan")
    return (
        f"most likely action: choices {share}, acceleration {acc:.2f}, |turn| {turn:.2f}, "
        f"speed {np.mean(speeds):.2f}, ends {ends}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=25_000, help="steps between two rows")
    parser.add_argument("--policy", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    policy = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.policy)}
    config = TrainConfig.model_validate(
        {
            "env": {"id": "MovingParam-v0", "num_envs": 8},
            "policy": policy,
            "run": {"seed": args.seed, "total_timesteps": args.steps},
        }
    )
    agent = PPO("MovingParam-v0", config=config)
    states = probe_states()
    while agent.num_timesteps < args.steps:
        agent.learn(total_timesteps=min(args.every, args.steps - agent.num_timesteps))
        with torch.no_grad():
            policy_ = agent.policy
            d = policy_.head.describe(policy_.actor_params(policy_.obs_norm(policy_.obs_to_tensor(states))))
        probs = np.array2string(d["0.probs"].mean(0), precision=2)
        keys = ("1/0.mean", "1/0.std", "1/1.mean", "1/1.std")
        acc_mean, acc_std, turn_mean, turn_std = (f"{d[k].mean():.2f}±{d[k].std():.2f}" for k in keys)
        print(
            f"{agent.num_timesteps:7d}  p(accelerate, turn, break) {probs}  acceleration: mean "
            f"{acc_mean} std {acc_std}  turn: mean {turn_mean} std {turn_std}",
            flush=True,
        )
        greedy = np.mean(agent.evaluate(50, seed=1000).returns)
        stochastic = np.mean(agent.evaluate(50, deterministic=False, seed=1000).returns)
        print(f"{'':7s}  return: most likely action {greedy:.3f}, stochastic {stochastic:.3f}", flush=True)
        print(f"{'':7s}  {play(agent)}", flush=True)
    agent.close()


if __name__ == "__main__":
    main()
