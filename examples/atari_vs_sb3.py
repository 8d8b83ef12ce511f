"""Atari-sized pixels: ppo-envkit beside Stable-Baselines3's ``CnnPolicy`` and beside the CNN's
own compute floor, at identical settings, in one run.

Breakout through Gymnasium's ``AtariPreprocessing`` (the base environment made with
``frameskip=1``; 84 x 84 grey, 4 frames skipped per step), 4 stacked frames, 8 copies x 128
steps, 4 epochs of minibatches of 256, NatureCNN with 512 features, no normalization:

* ``ours``: ppo-envkit with those settings (what ``--preset atari`` trains with, at 8 copies);
* ``ours-2`` (not run by default): the same with the copies stepped in two processes at once
  (``env.vectorization=async``, ``env.num_workers=2``: this one and a worker), so that the
  environments use the second core; its CPU time counts this process only;
* ``ours-ale`` (not run by default): the same game, preprocessing and settings, with the copies
  stepped and preprocessed by the ALE's own C++ vector (``env.vectorization=ale``: a thread per
  core); its CPU time counts those threads;
* ``sb3``: SB3 PPO ``CnnPolicy`` (a ``DummyVecEnv`` of the same environments);
* ``floor``: ppo-envkit's CNN policy alone, on random frames: the forward passes that
  collection makes (one batch of 8 per step) and the forward and backward passes of the PPO
  loss of every minibatch; no environment, no rollout storage, no optimizer step. Training
  can be no faster than this; ``ours / floor`` is the fraction of the time spent elsewhere.

Each trial is a whole process (imports, building the environments and the network, training),
started one after the other, alternating ``ours, sb3, floor`` per round so that they share
the machine's conditions. Wall time is the whole process; train time is ``learn()`` alone.

    python examples/atari_vs_sb3.py                        # 8,192 steps, 2 rounds, CPU
    python examples/atari_vs_sb3.py --steps 16384 --rounds 3
    python examples/atari_vs_sb3.py --device cuda          # the same on a GPU (both libraries)
    python examples/atari_vs_sb3.py --threads 1            # torch threads for both (default: torch's)
    python examples/atari_vs_sb3.py --learners ours ours-2 floor   # ours-2: copies stepped in 2 processes
    python examples/atari_vs_sb3.py --learners ours ours-ale sb3 floor   # ours-ale: the ALE's C++ vector

Needs ``pip install "gymnasium[atari]" stable-baselines3`` (ale-py ships the ROMs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

ENV_ID = "BreakoutPreprocessed-v0"
N_ENVS, N_STEPS, MINIBATCH, EPOCHS = 8, 128, 256, 4
#: The published CleanRL/rl-zoo PPO Atari settings (both sides)
SB3 = {
    "n_steps": N_STEPS,
    "batch_size": MINIBATCH,
    "n_epochs": EPOCHS,
    "learning_rate": 2.5e-4,
    "clip_range": 0.1,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "max_grad_norm": 0.5,
}
OURS = {
    "env.id": ENV_ID,
    "env.frame_stack": 4,
    "env.num_envs": N_ENVS,
    "env.normalize_obs": False,
    "env.normalize_reward": False,
    # as SB3 (and the atari preset): only the first reset is seeded (a seeded ALE reset reloads the ROM)
    "env.seed_every_episode": False,
    "ppo.n_steps": N_STEPS,
    "ppo.minibatch_size": MINIBATCH,
    "ppo.n_epochs": EPOCHS,
    "ppo.learning_rate": 2.5e-4,
    "ppo.clip_coef": 0.1,
    "ppo.ent_coef": 0.01,
    "ppo.vf_coef": 0.5,
    "ppo.gamma": 0.99,
    "ppo.gae_lambda": 0.95,
    "ppo.max_grad_norm": 0.5,
    "policy.image_encoder": "nature",
    "policy.cnn_features": 512,
    "policy.shared_trunk": True,  # one 512-unit layer after the CNN, shared (CleanRL: none)
    "policy.hidden_sizes": [512],
    "policy.activation": "relu",
    "run.eval_interval": 0,
    "run.checkpoint_interval": 0,
}


def breakout() -> Any:
    """Breakout-v5 with frameskip=1, through AtariPreprocessing (84 x 84 grey, skip 4, noop 30)."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return gym.wrappers.AtariPreprocessing(gym.make("ALE/Breakout-v5", frameskip=1))


def _child(kind: str, steps: int, device: str, threads: int | None, seed: int) -> dict[str, Any]:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    out: dict[str, Any] = {"kind": kind}
    if kind == "sb3":
        import gymnasium as gym
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env

        vec = make_vec_env(
            lambda: gym.wrappers.FrameStackObservation(breakout(), 4), n_envs=N_ENVS, seed=seed
        )
        model = SB3PPO("CnnPolicy", vec, seed=seed, device=device, verbose=0, **SB3)
        out["threads"] = torch.get_num_threads()
        start, cpu = time.perf_counter(), time.process_time()
        model.learn(steps)
        out["train_s"], out["train_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
        vec.close()
        return out
    import ppo_envkit
    from ppo_envkit import PPO, TrainConfig

    ppo_envkit.register_env(ENV_ID, breakout)
    settings = {**OURS, "run.seed": seed, "run.device": device}
    if kind == "ours-2":  # the copies stepped in two processes (this one and a worker), in parallel
        kind = "ours"
        settings.update({"env.vectorization": "async", "env.num_workers": 2})
    if kind == "ours-ale":  # the same game and preprocessing, stepped by the ALE's C++ vector
        kind = "ours"
        settings.update(
            {
                "env.id": "ale_py:ALE/Breakout-v5",
                "env.kwargs": {"frameskip": 1},
                "env.wrappers": ["gymnasium.wrappers:AtariPreprocessing"],
                "env.vectorization": "ale",
            }
        )
    if threads is not None:
        settings["run.torch_threads"] = threads
    agent = PPO(config=TrainConfig().with_overrides(settings))
    out["threads"] = torch.get_num_threads()
    encoder = agent.policy.encoder
    out["precision"] = str(encoder.autocast_dtype(agent.policy.device) or torch.float32)
    if kind == "ours":
        start, cpu = time.perf_counter(), time.process_time()
        agent.learn(steps)
        out["train_s"], out["train_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
        rollout = agent._trainer.collector.rollout
        out["rollout_image_mb"] = rollout.pixels.numel() * rollout.pixels.element_size() / 2**20
        # before: the image columns as float32, stored and again packed for minibatches
        out["rollout_image_mb_float32"] = 2 * 4 * rollout.pixels.numel() / 2**20
        agent.close()
        return out
    cpu = time.process_time()
    out["train_s"] = _floor(agent, steps)
    out["train_cpu_s"] = time.process_time() - cpu
    agent.close()
    return out


def _floor(agent: Any, steps: int) -> float:
    """Seconds of the policy's forward passes (collection) and of the PPO loss's forward and
    backward passes (updates) for ``steps`` steps, on random frames already in memory."""
    import torch

    from ppo_envkit.algo.losses import LossSettings, ppo_losses
    from ppo_envkit.algo.rollout import Minibatch

    policy, device = agent.policy, agent.policy.device
    gen = torch.Generator(device=device).manual_seed(0)
    dim = policy.flattener.flat_dim
    frames = torch.randint(0, 256, (N_ENVS * N_STEPS, dim), generator=gen, device=device).float()
    settings = LossSettings.from_config(agent.config.ppo)
    params = [p for p in policy.parameters() if p.requires_grad]
    rows = N_ENVS * N_STEPS
    zeros = torch.zeros(MINIBATCH, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    start = time.perf_counter()
    for _ in range(steps // rows):
        with policy.acting_with_fixed_weights():  # (as collection: no gradients, weights cast once)
            for t in range(N_STEPS):
                policy.act(frames[t * N_ENVS : (t + 1) * N_ENVS], generator=gen)
        with policy.training_precision():
            for _ in range(EPOCHS):
                for first in range(0, rows, MINIBATCH):
                    obs = frames[first : first + MINIBATCH]
                    actions = torch.zeros(len(obs), 1, device=device)
                    batch = Minibatch(obs, actions, zeros, zeros + 1, zeros, zeros)
                    terms = ppo_losses(policy, batch, settings, lambda a: a, gen)
                    torch.autograd.grad(terms.loss, params, allow_unused=True)
    sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8192)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every learner")
    parser.add_argument("--learners", nargs="+", default=["ours", "sb3", "floor"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = _child(args.child, args.steps, args.device, args.threads, args.seed)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(result), flush=True)
        return
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in args.learners}
    print(f"{args.steps:,} steps each, {args.rounds} rounds, device {args.device}, load {os.getloadavg()}")
    for r in range(args.rounds):
        for kind in args.learners:
            cmd = [sys.executable, __file__, "--child", kind, "--steps", str(args.steps)]
            cmd += ["--device", args.device, "--seed", str(args.seed + r)]
            if args.threads is not None:
                cmd += ["--threads", str(args.threads)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            wall = time.perf_counter() - start
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                sys.exit(f"{kind} failed:\n{proc.stderr[-3000:]}")
            result = {**json.loads(line[0][7:]), "wall_s": wall}
            results[kind].append(result)
            extra = {k: v for k, v in result.items() if k not in ("kind", "train_s", "wall_s")}
            extra = {k: round(v, 1) if isinstance(v, float) else v for k, v in extra.items()}
            print(
                f"round {r + 1} {kind:5s}: process {wall:6.1f} s, train {result['train_s']:6.1f} s "
                f"({args.steps / result['train_s']:5.0f} steps/s) {extra}",
                flush=True,
            )
    med = {k: statistics.median(x["wall_s"] for x in v) for k, v in results.items()}
    train = {k: statistics.median(x["train_s"] for x in v) for k, v in results.items()}
    print("median process wall s: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    print("median train s:        " + ", ".join(f"{k} {v:.1f}" for k, v in train.items()))
    for ours in ("ours", "ours-2", "ours-ale"):
        if ours not in med or "sb3" not in med:
            continue
        pairs = [s["wall_s"] / o["wall_s"] for o, s in zip(results[ours], results["sb3"], strict=False)]
        print(f"{ours} vs SB3 CnnPolicy (whole process, per round): {', '.join(f'{p:.2f}x' for p in pairs)}")
        both = zip(results[ours], results["sb3"], strict=False)
        pairs = [s["train_cpu_s"] / o["train_cpu_s"] for o, s in both]
        print(f"{ours} vs SB3, CPU time of learn() (per round): {', '.join(f'{p:.2f}x' for p in pairs)}")
    for ours in ("ours", "ours-2", "ours-ale"):
        if ours in train and "floor" in train:
            for key in ("train_s", "train_cpu_s"):
                pairs = [o[key] / f[key] for o, f in zip(results[ours], results["floor"], strict=False)]
                print(f"{ours} / floor ({key}, per round): {', '.join(f'{p:.2f}' for p in pairs)}")


if __name__ == "__main__":
    main()
