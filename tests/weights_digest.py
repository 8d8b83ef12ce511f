"""SHA-256 of the final weights of a handful of short, seeded trainings (a bit-for-bit check).

Run it on two commits and compare the output: a refactoring of the hot path (the numpy fast
path, autograd, the learner, the collectives) must not change a single bit of the weights.

    PYTHONPATH=. python tests/weights_digest.py            # every configuration
    PYTHONPATH=. python tests/weights_digest.py cartpole   # those whose name contains 'cartpole'

Each configuration trains in two ``learn()`` calls (so that the second call's path, with the
optimizer already built, is covered too). Not collected by pytest (no ``test_`` prefix).
"""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

SMALL = {"env.num_envs": 4, "ppo.n_steps": 128, "ppo.minibatch_size": 128, "ppo.n_epochs": 4}
LANDER = {"env.id": "LunarLander-v3", **SMALL}
CONTINUOUS = {**LANDER, "env.kwargs": {"continuous": True}}
CARTPOLE = {"env.id": "CartPole-v1", **SMALL}

#: name -> (overrides, steps of each of the two learn() calls)
CONFIGS: dict[str, tuple[dict, int]] = {
    "lunarlander-fast": ({**LANDER, "run.analytic_gradients": True}, 4096),
    "lunarlander-autograd": ({**LANDER, "run.analytic_gradients": False}, 4096),
    "lunarlander-continuous-fast": ({**CONTINUOUS, "run.analytic_gradients": True}, 4096),
    "lunarlander-continuous-autograd": ({**CONTINUOUS, "run.analytic_gradients": False}, 4096),
    "lunarlander-continuous-vclip-kl": (
        {**CONTINUOUS, "ppo.clip_vloss": True, "ppo.target_kl": 0.02, "env.normalize_obs": True},
        2048,
    ),
    "cartpole-fast": ({**CARTPOLE, "run.analytic_gradients": True, "ppo.anneal_lr": False}, 4096),
    "cartpole-autograd": ({**CARTPOLE, "run.analytic_gradients": False, "policy.shared_trunk": True}, 4096),
    "cartpole-relu-fast": ({**CARTPOLE, "policy.activation": "relu", "ppo.norm_adv": False}, 4096),
    "lunarlander-squashed": ({**CONTINUOUS, "policy.squash": True}, 1024),  # unsupported: autograd fallback
    "masked-pick-fast": ({"env.id": "MaskedPick-v0", **SMALL, "run.analytic_gradients": True}, 4096),
    "masked-multi-autograd": ({"env.id": "MaskedMulti-v0", **SMALL, "run.analytic_gradients": False}, 4096),
    "cartpole-compile": ({**CARTPOLE, "run.analytic_gradients": False, "run.compile": True}, 512),
    "cartpole-lstm": ({**CARTPOLE, "policy.recurrent": "lstm", "ppo.sequence_length": 16}, 1024),
    "pixelchase-cnn": ({"env.id": "PixelChase-v0", **SMALL, "ppo.n_steps": 64}, 512),
    "lunarlander-processes2-fast": ({**LANDER, "run.processes": 2, "run.analytic_gradients": True}, 4096),
    "lunarlander-processes2-autograd": (
        {**LANDER, "run.processes": 2, "run.analytic_gradients": False},
        1024,
    ),
}


def _load_envs() -> None:
    from ppo_envkit.environments.discovery import load_env_module

    load_env_module(str(REPO / "envs" / "pixels.py"))
    sys.path.append(str(REPO))  # after PYTHONPATH: the ppo_envkit under test stays first
    from tests.masked_envs import register_masked

    register_masked()


def digest(state_dict: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state_dict):
        h.update(name.encode())
        h.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train(overrides: dict, steps: int) -> str:
    from ppo_envkit import PPO, TrainConfig

    config = TrainConfig().with_overrides(
        {"run.seed": 7, "run.eval_interval": 0, "run.torch_threads": 1, **overrides}
    )
    agent = PPO(config=config)
    try:
        agent.learn(steps)
        agent.learn(steps)
        return digest(agent.policy.state_dict())
    finally:
        agent.close()


def main(patterns: list[str]) -> None:
    import ppo_envkit

    print("ppo_envkit from", Path(ppo_envkit.__file__).parent, flush=True)
    _load_envs()
    for name, (overrides, steps) in CONFIGS.items():
        if patterns and not any(p in name for p in patterns):
            continue
        start = time.perf_counter()
        value = train(overrides, steps)
        print(f"{name:34s} {value}  ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
