"""Several agents: ``env.time_limit`` bootstrap against terminal (and SB3 + SuperSuit) on any
PettingZoo parallel environment, one run per call, evaluated as ``simple_spread_vs_sb3.py``
evaluates (the same seeded episodes, deterministic and stochastic, mean per-agent return).

The measurements behind the ``auto`` rule of ``env.time_limit`` (docs/several-agents.md): a
PettingZoo environment's ``max_cycles`` is the length of its game, so ``auto`` (the default)
treats it as the end of the task (``terminal``); here the two values are compared beyond
``simple_spread``. Without ``--set``, the run is the defaults' (``terminal`` for a PettingZoo id).

    python examples/time_limit_envs.py --env mpe2.simple_v3:parallel_env --set env.time_limit=terminal
    python examples/time_limit_envs.py --env mpe2.simple_v3:parallel_env --set env.time_limit=bootstrap
    python examples/time_limit_envs.py --env Foragers-v0 --seed 0
    python examples/time_limit_envs.py --env mpe2.simple_reference_v3:parallel_env --seed 0 --sb3

``--kwargs`` (JSON) are the environment's keyword arguments: by default, for ``mpe2`` ids,
``{"max_cycles": 25, "continuous_actions": false}`` (the discrete actions SB3's ``MlpPolicy``
takes). ``--sb3`` trains SB3's ``PPO("MlpPolicy")`` with its defaults on SuperSuit's vector of
agents instead (an ``module:factory`` id of a parallel environment whose agents share spaces and
never die: SuperSuit needs ``black_death`` otherwise). One JSON line is printed per run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from typing import Any

import yaml


def default_kwargs(env_id: str) -> dict[str, Any]:
    return {"max_cycles": 25, "continuous_actions": False} if env_id.startswith("mpe2.") else {}


def train_sb3(
    env_id: str, kwargs: dict[str, Any], steps: int, copies: int, seed: int
) -> tuple[Any, float, float]:
    import supersuit as ss
    from simple_spread_vs_sb3 import cpu_seconds  # this script's neighbour
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.utils import set_random_seed

    module, _, factory = env_id.partition(":")
    env = getattr(importlib.import_module(module), factory)(**kwargs)
    env = ss.pettingzoo_env_to_vec_env_v1(env)
    env = ss.concat_vec_envs_v1(env, copies, num_cpus=0, base_class="stable_baselines3")
    set_random_seed(seed)  # (SuperSuit's ConcatVecEnv has no seed() for SB3 to call)
    model = SB3PPO("MlpPolicy", env, verbose=0, device="cpu")
    start, cpu = time.perf_counter(), cpu_seconds()
    model.learn(steps)  # one slot per agent: timesteps are agent-steps
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    env.close()
    return model, elapsed, cpu


def train_envkit(
    env_id: str, kwargs: dict[str, Any], steps: int, copies: int, seed: int, settings: dict[str, Any]
) -> tuple[Any, float, float]:
    from simple_spread_vs_sb3 import cpu_seconds

    from ppo_envkit import PPO, TrainConfig

    config = TrainConfig().with_overrides(
        {"env.id": env_id, "env.kwargs": kwargs, "env.num_envs": copies, "run.seed": seed, **settings}
    )
    agent = PPO(config=config)
    agent.prepare()
    start, cpu = time.perf_counter(), cpu_seconds()
    agent.learn(steps)  # agent-steps
    elapsed = time.perf_counter() - start
    agent.close()
    return agent, elapsed, cpu_seconds() - cpu


def evaluate(env_id: str, kwargs: dict[str, Any], actor: Any, episodes: int, deterministic: bool) -> float:
    """Mean per-agent episode return over ``episodes`` seeded episodes (seeds 10,000 on)."""
    from ppo_envkit import TrainConfig
    from ppo_envkit.algo.evaluator import Evaluator

    env = TrainConfig().with_overrides({"env.id": env_id, "env.kwargs": kwargs}).env
    evaluator = Evaluator(env, episodes)
    try:
        return evaluator.play(actor, deterministic=deterministic, seed=10_000).mean_return
    finally:
        evaluator.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True, help="module:factory or a registered id")
    parser.add_argument("--kwargs", default=None, help="the environment's keyword arguments (JSON)")
    parser.add_argument("--steps", type=int, default=196_608, help="agent-steps")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="KEY=VALUE ppo-envkit settings (YAML values)")
    parser.add_argument("--sb3", action="store_true", help="train SB3 + SuperSuit (SB3's defaults)")
    args = parser.parse_args()
    import torch
    from simple_spread_vs_sb3 import envkit_actor, sb3_actor

    torch.set_num_threads(1)
    kwargs = json.loads(args.kwargs) if args.kwargs else default_kwargs(args.env)
    settings = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    if args.sb3:
        model, wall, cpu = train_sb3(args.env, kwargs, args.steps, args.copies, args.seed)
        actor, label = sb3_actor, "SB3+SuperSuit"
    else:
        model, wall, cpu = train_envkit(args.env, kwargs, args.steps, args.copies, args.seed, settings)
        actor, label = envkit_actor, " ".join(args.set) or "defaults"
    det = evaluate(args.env, kwargs, actor(model, True), args.episodes, True)
    sto = evaluate(args.env, kwargs, actor(model, False), args.episodes, False)
    result = {"env": args.env, "run": label, "seed": args.seed, "det": round(det, 2), "stoch": round(sto, 2)}
    print(json.dumps({**result, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}), flush=True)


if __name__ == "__main__":
    main()
