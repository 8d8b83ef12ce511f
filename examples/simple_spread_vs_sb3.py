"""Several agents: ppo-envkit against Stable-Baselines3 + SuperSuit on MPE's ``simple_spread_v3``.

Both train one policy shared by the 3 agents, on the discrete-action version
(``continuous_actions=False``, ``max_cycles=25``), for the same number of agent-steps:

* ppo-envkit: ``mpe2.simple_spread_v3:parallel_env`` as it is (its ``AgentStack`` makes each
  agent of each copy a row of the policy), with its default settings;
* SB3: ``PPO("MlpPolicy")`` with SB3's defaults on SuperSuit's vector of agents
  (``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1``), the usual recipe.

Both are then evaluated by the same code (ppo-envkit's ``Evaluator`` with each library's
policy acting per agent) on the same seeded episodes, deterministic and stochastic: the score
is the mean per-agent episode return (simple_spread's reward is shared, so it is the team's).
Training wall times are printed side by side (evaluation excluded).

The time limit is where the two could differ: simple_spread ends every episode by truncation
at ``max_cycles``. SuperSuit's vector reports the end to SB3 as ``done`` without
``TimeLimit.truncated``, so SB3 treats it as the end of the task (no bootstrap). ppo-envkit's
default (``env.time_limit=auto``) does the same for a PettingZoo environment (it resolves to
``terminal``: the score is the return within the 25 steps). The second line trains ppo-envkit
with ``env.time_limit=bootstrap`` (the default before ``auto``, and what ``auto`` picks for
Gymnasium environments): each agent's value is bootstrapped from its final observation there,
as Gymnasium asks of a truncation. Both ppo-envkit runs take the ``--set`` settings too (``--set
run.processes=2``, or ``--set env.vectorization=async --set env.num_workers=2``: two cores, the
learning unchanged).

Wall and CPU time of each training are printed (CPU: this process and its worker processes).

    python examples/simple_spread_vs_sb3.py                       # 196,608 agent-steps each
    python examples/simple_spread_vs_sb3.py --seed 1 --set run.processes=2
    python examples/simple_spread_vs_sb3.py --steps 100000 --copies 4 --episodes 50
"""

from __future__ import annotations

import argparse
import resource
import time
from typing import Any

import numpy as np

ENV_ID = "mpe2.simple_spread_v3:parallel_env"
KWARGS = {"N": 3, "max_cycles": 25, "continuous_actions": False}


def envkit_config(copies: int, seed: int, **settings: Any) -> Any:
    """ppo-envkit's default settings for simple_spread (``settings``: dotted keys changed)."""
    from ppo_envkit import TrainConfig

    return TrainConfig().with_overrides(
        {"env.id": ENV_ID, "env.kwargs": KWARGS, "env.num_envs": copies, "run.seed": seed, **settings}
    )


def resolved_time_limit(setting: Any) -> str:
    """What ``env.time_limit=setting`` means for simple_spread (``auto``: by where it comes from)."""
    from ppo_envkit import make_env
    from ppo_envkit.environments.multiagent import resolve_time_limit

    env = make_env(ENV_ID, KWARGS)
    try:
        return resolve_time_limit(setting, env.metadata).value
    finally:
        env.close()


def cpu_seconds() -> float:
    """CPU time of this process and of its ended children (worker processes, other ranks)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def train_envkit(steps: int, copies: int, seed: int, **settings: Any) -> tuple[Any, float, float]:
    from ppo_envkit import PPO

    agent = PPO(config=envkit_config(copies, seed, **settings))
    agent.prepare()
    start, cpu = time.perf_counter(), cpu_seconds()
    agent.learn(steps)  # agent-steps
    elapsed = time.perf_counter() - start
    agent.close()  # (ends the worker processes, so that their CPU time is counted)
    return agent, elapsed, cpu_seconds() - cpu


def train_sb3(steps: int, copies: int, seed: int) -> tuple[Any, float, float]:
    import supersuit as ss
    from mpe2 import simple_spread_v3
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.utils import set_random_seed

    env = simple_spread_v3.parallel_env(**KWARGS)
    env = ss.pettingzoo_env_to_vec_env_v1(env)
    env = ss.concat_vec_envs_v1(env, copies, num_cpus=0, base_class="stable_baselines3")
    set_random_seed(seed)  # (not PPO(seed=...): SuperSuit's ConcatVecEnv has no seed() for SB3 to call)
    model = SB3PPO("MlpPolicy", env, verbose=0, device="cpu")
    start, cpu = time.perf_counter(), cpu_seconds()
    model.learn(steps)  # SuperSuit's vector has one slot per agent: timesteps are agent-steps
    elapsed, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if model.num_timesteps != steps:
        print(f"(SB3 trained {model.num_timesteps:,} agent-steps: its rollouts are 2048 x {copies * 3})")
    env.close()
    return model, elapsed, cpu


def evaluate(actor: Any, episodes: int, deterministic: bool, seed: int) -> tuple[float, float]:
    """Mean and std of the per-agent episode return (ppo-envkit's Evaluator, same episodes for both)."""
    from ppo_envkit import TrainConfig
    from ppo_envkit.algo.evaluator import Evaluator

    env = TrainConfig().with_overrides({"env.id": ENV_ID, "env.kwargs": KWARGS}).env
    evaluator = Evaluator(env, episodes)
    try:
        result = evaluator.play(actor, deterministic=deterministic, seed=seed)
    finally:
        evaluator.close()
    return result.mean_return, result.std_return


def envkit_actor(agent: Any, deterministic: bool) -> Any:
    def act(obs: np.ndarray, masks: Any, starts: np.ndarray) -> np.ndarray:
        n, a = obs.shape[:2]
        return np.asarray(agent.predict(obs.reshape(n * a, -1), deterministic=deterministic)).reshape(n, a)

    return act


def sb3_actor(model: Any, deterministic: bool) -> Any:
    def act(obs: np.ndarray, masks: Any, starts: np.ndarray) -> np.ndarray:
        n, a = obs.shape[:2]
        actions, _ = model.predict(obs.reshape(n * a, -1), deterministic=deterministic)
        return np.asarray(actions).reshape(n, a)

    return act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--steps", type=int, default=196_608, help="agent-steps each trains (SB3 rounds up to whole rollouts)"
    )
    parser.add_argument("--copies", type=int, default=8, help="copies of the environment (3 agents each)")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set", nargs="*", default=[], help="KEY=VALUE settings of both ppo-envkit runs (YAML values)"
    )
    args = parser.parse_args()
    import torch
    import yaml

    torch.set_num_threads(1)
    settings = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    results = {}
    runs = [
        ("ppo-envkit", lambda *a: train_envkit(*a, **settings), envkit_actor),
        (
            "ppo-envkit boot.",
            lambda *a: train_envkit(*a, **settings, **{"env.time_limit": "bootstrap"}),
            envkit_actor,
        ),
        ("SB3+SuperSuit", train_sb3, sb3_actor),
    ]
    for name, train, actor in runs:
        model, wall, cpu = train(args.steps, args.copies, args.seed)
        det = evaluate(actor(model, True), args.episodes, True, 10_000)
        sto = evaluate(actor(model, False), args.episodes, False, 10_000)
        results[name] = (det, sto, wall, cpu)
        print(f"{name}: trained {args.steps:,} agent-steps in {wall:.1f} s ({cpu:.1f} s CPU)", flush=True)
    extra = f", ppo-envkit with {' '.join(args.set)}" if args.set else ""
    default = envkit_config(args.copies, args.seed, **settings).env.time_limit
    print(
        f"\nsimple_spread_v3 (N=3, max_cycles=25, discrete), {args.steps:,} agent-steps, "
        f"{args.copies} copies, seed {args.seed}{extra}; ppo-envkit: env.time_limit={default} "
        f"({resolved_time_limit(default)} here); boot.: env.time_limit=bootstrap"
    )
    print(
        f"{'':18}{'deterministic':>22}{'stochastic':>22}{'train wall s':>14}{'CPU s':>8}{'agent-steps/s':>15}"
    )
    for name, (det, sto, wall, cpu) in results.items():
        print(
            f"{name:18}{det[0]:>14.2f} +- {det[1]:<5.2f}{sto[0]:>14.2f} +- {sto[1]:<5.2f}"
            f"{wall:>14.1f}{cpu:>8.1f}{args.steps / wall:>15.0f}"
        )
    sb3 = results["SB3+SuperSuit"]
    for name in ("ppo-envkit", "ppo-envkit boot."):
        wall, cpu = results[name][2:]
        print(f"{name}: {wall / sb3[2]:.2f} of SB3's wall time, {cpu / sb3[3]:.2f} of its CPU time")


if __name__ == "__main__":
    main()
