"""What a composite agent does on Striker as it trains: the choice's probabilities, each parameter
part's standard deviation (its mean over states, and how much it differs from state to state),
and, at the end, how its most likely action plays (dribbles per episode, where it shoots from,
goals per kind of shot).

    python examples/composite_diagnose.py --steps 60000 --seed 0 --policy composite_std=fixed
    python examples/composite_diagnose.py --steps 60000 --seed 0 --policy composite_std=state

The probe states are fixed: 256 starts of the task, and 256 states after 1 to 5 random dribbles.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))

from striker import GOAL_X, Striker

from ppo_envkit import PPO, TrainConfig


def probe_states(count: int = 256, seed: int = 123) -> np.ndarray:
    """Observations of ``count`` starts and ``count`` states after a few random dribbles."""
    env, rng = Striker(), np.random.default_rng(seed)
    out = []
    for i in range(count):
        obs, _ = env.reset(seed=seed + i)
        out.append(obs)
        for _ in range(int(rng.integers(1, 6))):
            move = rng.uniform(-0.2, 1.0, 2) * np.array([1.0, -np.sign(env._ball[1])])
            obs, *_ = env.step((0, (move.astype(np.float32), np.zeros(1), np.zeros(1))))
        out.append(obs)
    return np.array(out, dtype=np.float32)


def snapshot(agent: PPO, states: np.ndarray) -> dict[str, np.ndarray]:
    """The head's description (probabilities, means, stds) of every probe state."""
    policy = agent.policy
    with torch.no_grad():
        x = policy.obs_norm(policy.obs_to_tensor(states))
        return policy.head.describe(policy.actor_params(x))


def play(agent: PPO, episodes: int = 100, seed: int = 1000) -> dict[str, float]:
    """Greedy play: dribbles per episode, the distance of the shot, goals per kind of shot."""
    env = Striker()
    dribbles, distances, shots = [], [], {1: [0, 0], 2: [0, 0]}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        count, done, info = 0, False, {}
        while not done:
            action = agent.predict(obs, deterministic=True)
            choice = int(action[0])
            if choice:
                distances.append(GOAL_X - env._ball[0])
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            if choice:
                shots[choice][0] += 1
                shots[choice][1] += int(info["goal"])
            else:
                count += 1
        dribbles.append(count)
    return {
        "dribbles per episode": float(np.mean(dribbles)),
        "distance of the shot": float(np.mean(distances)) if distances else float("nan"),
        **{f"shots {'left' if c == 1 else 'right'} (goals)": f"{n} ({g})" for c, (n, g) in shots.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=10_000, help="steps between two rows")
    parser.add_argument("--policy", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    policy = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.policy)}
    config = TrainConfig.model_validate(
        {
            "env": {"id": "Striker-v0", "num_envs": 8},
            "policy": policy,
            "run": {"seed": args.seed, "total_timesteps": args.steps},
        }
    )
    agent = PPO("Striker-v0", config=config)
    states = probe_states()
    print(
        f"{'steps':>7s}  {'p(dribble, left, right)':24s}  std: dribble dx, dy | left | right "
        "(mean over states, spread between states)"
    )
    while agent.num_timesteps < args.steps:
        agent.learn(total_timesteps=min(args.every, args.steps - agent.num_timesteps))
        d = snapshot(agent, states)
        probs = d["0.probs"].mean(0)
        stds = [d[f"1/{c}.std"] for c in range(3)]
        text = " | ".join(
            ", ".join(f"{s[:, j].mean():.2f}±{s[:, j].std():.2f}" for j in range(s.shape[1])) for s in stds
        )
        # the std where the choice is taken: weighted by the choice's probability state by state
        weights = d["0.probs"] / d["0.probs"].sum(0)
        taken = " | ".join(
            ", ".join(f"{(weights[:, c] * s[:, j]).sum():.2f}" for j in range(s.shape[1]))
            for c, s in enumerate(stds)
        )
        print(f"{agent.num_timesteps:7d}  {np.array2string(probs, precision=2):24s}  {text}", flush=True)
        print(f"{'':7s}  {'(std where it is taken)':24s}  {taken}", flush=True)
    for key, value in play(agent).items():
        print(f"{key}: {value}")
    agent.close()


if __name__ == "__main__":
    main()
