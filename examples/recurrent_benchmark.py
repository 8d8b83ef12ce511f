"""Benchmark of recurrent policies: what memory buys, and what it costs against sb3-contrib.

    python examples/recurrent_benchmark.py                      # recall + blind, seeds 0 1 2 (~5 min)
    python examples/recurrent_benchmark.py --part speed         # vs sb3-contrib's RecurrentPPO
                                                                # (pip install -e ".[compare]")

recall: the ``recall`` preset (``Recall-v0``: a cue at the first step, asked for 11 steps
later, 4 cues) with its LSTM and with ``policy.recurrent=none``, same steps and seed;
success rate over 200 deterministic episodes (chance is 0.25).

blind: ``BlindCartPole-v0`` (CartPole without velocities), the library's defaults with
``policy.recurrent`` none / lstm / gru for 100,000 steps each; mean return over 20
deterministic episodes (500 is the maximum).

speed: training throughput on BlindCartPole-v0, ppo-envkit (LSTM) against sb3-contrib's
``RecurrentPPO`` at the same settings (16 copies x 128 steps, minibatches of 128 samples,
10 epochs, one LSTM of 64 units shared by actor and critic, then 64-64 tanh MLPs, no
observation or reward normalization), each in its own process, taking turns in chunks
so that both meet the same machine conditions. Whole training time, collection and updates.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
N_ENVS, N_STEPS, BATCH, EPOCHS, HIDDEN = 16, 128, 128, 10, 64


def _envs() -> None:
    from ppo_envkit import load_env_module

    load_env_module(str(ROOT / "envs" / "recall.py"))
    load_env_module(str(ROOT / "envs" / "blind_cartpole.py"))


def recall(seeds: list[int]) -> None:
    from ppo_envkit import PPO, evaluate

    print("| seed | policy | steps | answered right (200 episodes) | train s |")
    print("| --- | --- | --- | --- | --- |")
    for seed in seeds:
        for recurrent in ("lstm", "none"):
            overrides = {"run.seed": seed, "policy.recurrent": recurrent, "run.eval_interval": 0}
            agent = PPO.from_preset("recall", overrides=overrides)
            start = time.perf_counter()
            agent.learn()
            seconds = time.perf_counter() - start
            result = evaluate(agent, 200, seed=10_000 + 1000 * seed)
            name = "LSTM" if recurrent == "lstm" else "feed-forward"
            print(f"| {seed} | {name} | {agent.num_timesteps:,} | {result.mean_return:.3f} | {seconds:.1f} |")
            agent.close()


def blind(seeds: list[int], steps: int) -> None:
    from ppo_envkit import PPO, TrainConfig, evaluate

    print("| seed | policy | steps | mean return (20 episodes) | train s |")
    print("| --- | --- | --- | --- | --- |")
    for seed in seeds:
        for recurrent in ("none", "lstm", "gru"):
            config = TrainConfig().with_overrides(
                {
                    "env.id": "BlindCartPole-v0",
                    "policy.recurrent": recurrent,
                    "run.seed": seed,
                    "run.eval_interval": 0,
                }
            )
            agent = PPO(config=config)
            start = time.perf_counter()
            agent.learn(steps)
            seconds = time.perf_counter() - start
            result = evaluate(agent, 20, seed=10_000 + 1000 * seed)
            print(f"| {seed} | {recurrent} | {steps:,} | {result.mean_return:.1f} | {seconds:.1f} |")
            agent.close()


# ----------------------------------------------------------------------------- speed


def _learner(kind: str, seed: int, requests: Any, replies: Any) -> None:
    """One learner in its own process: train a chunk of steps per request, reply the seconds."""
    import torch

    torch.set_num_threads(1)
    _envs()
    if kind == "ours":
        from ppo_envkit import PPO, TrainConfig

        config = TrainConfig().with_overrides(
            {
                "env.id": "BlindCartPole-v0",
                "env.num_envs": N_ENVS,
                "env.normalize_obs": False,
                "env.normalize_reward": False,
                "ppo.n_steps": N_STEPS,
                "ppo.minibatch_size": BATCH,
                "ppo.n_epochs": EPOCHS,
                "ppo.gae_lambda": 0.95,
                "policy.recurrent": "lstm",
                "policy.recurrent_size": HIDDEN,
                "run.seed": seed,
                "run.eval_interval": 0,
            }
        )
        agent: Any = PPO(config=config)
        agent.prepare()

        def train(steps: int) -> None:
            agent.learn(steps)
    else:
        import gymnasium as gym
        from sb3_contrib import RecurrentPPO
        from stable_baselines3.common.env_util import make_vec_env

        envs = make_vec_env(lambda: gym.make("BlindCartPole-v0"), n_envs=N_ENVS, seed=seed)
        policy_kwargs = {
            "lstm_hidden_size": HIDDEN,
            "shared_lstm": True,
            "enable_critic_lstm": False,
            "net_arch": {"pi": [64, 64], "vf": [64, 64]},
        }
        model = RecurrentPPO(
            "MlpLstmPolicy",
            envs,
            n_steps=N_STEPS,
            batch_size=BATCH,
            n_epochs=EPOCHS,
            gae_lambda=0.95,
            policy_kwargs=policy_kwargs,
            seed=seed,
            device="cpu",
            verbose=0,
        )

        def train(steps: int) -> None:
            model.learn(steps, reset_num_timesteps=False)

    replies.put("ready")
    while (steps := requests.get()) is not None:
        start = time.perf_counter()
        train(steps)
        replies.put(time.perf_counter() - start)


def speed(steps: int, chunks: int, seed: int) -> None:
    ctx = mp.get_context("spawn")
    learners = {}
    for kind in ("ours", "sb3-contrib"):
        requests, replies = ctx.Queue(), ctx.Queue()
        proc = ctx.Process(target=_learner, args=(kind, seed, requests, replies))
        proc.start()
        learners[kind] = (proc, requests, replies)
    for _, _, replies in learners.values():
        replies.get()
    seconds = dict.fromkeys(learners, 0.0)
    chunk = steps // chunks
    for _ in range(chunks):
        for kind, (_, requests, replies) in learners.items():
            requests.put(chunk)
            seconds[kind] += replies.get()
    for proc, requests, _ in learners.values():
        requests.put(None)
        proc.join()
    print("| learner | steps | train s | steps/s |")
    print("| --- | --- | --- | --- |")
    for kind, total in seconds.items():
        print(f"| {kind} | {chunk * chunks:,} | {total:.1f} | {chunk * chunks / total:,.0f} |")
    print(f"ppo-envkit / sb3-contrib steps per second: {seconds['sb3-contrib'] / seconds['ours']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["recall", "blind", "speed", "all"], default="all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--blind-steps", type=int, default=100_000)
    parser.add_argument("--speed-steps", type=int, default=65_536)
    args = parser.parse_args()
    _envs()
    if args.part in ("recall", "all"):
        recall(args.seeds)
    if args.part in ("blind", "all"):
        blind(args.seeds, args.blind_steps)
    if args.part in ("speed", "all"):
        speed(args.speed_steps, 4, args.seeds[0])


if __name__ == "__main__":
    main()
