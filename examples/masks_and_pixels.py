"""Benchmark of the two policy kinds custom environments need: action masks and pixels.

    python examples/masks_and_pixels.py                 # both, seeds 0 1 2 (about 15 minutes)
    python examples/masks_and_pixels.py --part masks --seeds 0

masks: the ``knight-tour`` preset trained on ``KnightTour-v0`` (masks; an illegal action
raises, so finishing proves none was sent) and on ``KnightTourNoMask-v0`` (the same game,
illegal moves merely penalised), same steps, same seed. Each agent then plays 100
deterministic episodes of the game with illegal moves penalised (not raised), so that they
can be counted: the masked agent is given the masks, the other is not.

pixels: the ``pixel-chase`` preset (16 x 16 RGB through the small CNN) against the same
preset with ``policy.image_encoder=none`` (the pixels flattened into the MLP): evaluation
every 10,000 steps (50 episodes), training stops when it reaches the environment's
threshold; the steps it took (or "not reached" at the cap) and the time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from ppo_envkit import PPO, load_env_module

ROOT = Path(__file__).resolve().parent.parent


def play_counting_illegal(agent: PPO, masked: bool, episodes: int, seed: int) -> tuple[float, float]:
    """(mean return, illegal moves per episode) over deterministic episodes, illegal moves penalised."""
    env = gym.make("KnightTour-v0", illegal="penalize")
    returns, illegal = [], []
    for k in range(episodes):
        obs, info = env.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            action = agent.predict(obs, action_mask=info["action_mask"] if masked else None)
            obs, reward, terminated, truncated, info = env.step(action)
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
        illegal.append(info["illegal_moves"])
    return float(np.mean(returns)), float(np.mean(illegal))


def masks(seeds: list[int]) -> None:
    print("| seed | env | steps | mean return (100 episodes) | illegal moves per episode | train s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in seeds:
        for env_id, masked in (("KnightTour-v0", True), ("KnightTourNoMask-v0", False)):
            agent = PPO.from_preset(
                "knight-tour", env_id, overrides={"run.seed": seed, "run.eval_interval": 0}
            )
            start = time.perf_counter()
            agent.learn()  # KnightTour-v0 raises on an illegal action: finishing means none was sent
            seconds = time.perf_counter() - start
            mean, illegal = play_counting_illegal(agent, masked, 100, 10_000 + 100 * seed)
            row = [
                seed,
                env_id,
                f"{agent.num_timesteps:,}",
                f"{mean:.2f}",
                f"{illegal:.2f}",
                f"{seconds:.1f}",
            ]
            print("| " + " | ".join(map(str, row)) + " |")
            agent.close()


def pixels(seeds: list[int], cap_cnn: int, cap_mlp: int) -> None:
    print("| seed | encoder | steps to reach 0.9 | last evaluation | train s |")
    print("| --- | --- | --- | --- | --- |")
    for seed in seeds:
        for encoder, cap in (("auto", cap_cnn), ("none", cap_mlp)):
            overrides = {
                "run.seed": seed,
                "policy.image_encoder": encoder,
                "run.eval_interval": 10_000,
                "run.eval_episodes": 50,
                "run.stop_at": "threshold",
            }
            agent = PPO.from_preset("pixel-chase", overrides=overrides)
            start = time.perf_counter()
            agent.learn(cap)
            seconds = time.perf_counter() - start
            last = agent.last_metrics.get("eval_return", float("nan"))
            reached = f"{agent.num_timesteps:,}" if last >= 0.9 else f"not reached in {cap:,}"
            name = "CNN (small)" if encoder == "auto" else "MLP (flattened)"
            print(f"| {seed} | {name} | {reached} | {last:.3f} | {seconds:.1f} |")
            agent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["masks", "pixels", "both"], default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cap-cnn", type=int, default=300_000)
    parser.add_argument("--cap-mlp", type=int, default=600_000)
    args = parser.parse_args()
    load_env_module(str(ROOT / "envs" / "knight.py"))
    load_env_module(str(ROOT / "envs" / "pixels.py"))
    if args.part in ("masks", "both"):
        masks(args.seeds)
    if args.part in ("pixels", "both"):
        pixels(args.seeds, args.cap_cnn, args.cap_mlp)


if __name__ == "__main__":
    main()
