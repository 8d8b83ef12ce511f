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

The two do not see the time limit the same way: simple_spread ends every episode by
truncation at ``max_cycles``; ppo-envkit bootstraps each agent's value from its final
observation there, as a time limit asks, but SuperSuit's vector reports the end to SB3 as
``done`` without ``TimeLimit.truncated``, so SB3 treats it as termination (no bootstrap).
``--time-limit-ends`` also trains ppo-envkit on the same game with the time limit reported as
termination (:func:`make_time_limit_ends`), what SB3 sees, and prints that third line.

    python examples/simple_spread_vs_sb3.py                       # 196,608 agent-steps each
    python examples/simple_spread_vs_sb3.py --seed 1 --time-limit-ends
    python examples/simple_spread_vs_sb3.py --steps 100000 --copies 4 --episodes 50
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

ENV_ID = "mpe2.simple_spread_v3:parallel_env"
KWARGS = {"N": 3, "max_cycles": 25, "continuous_actions": False}
ENDS_ID = "SpreadTimeLimitEnds-v0"


def make_time_limit_ends(**kwargs: Any) -> Any:
    """simple_spread whose time limit is each agent's termination, not truncation: what SB3
    sees through SuperSuit (the same game otherwise: same observations, rewards and seeds)."""
    from mpe2 import simple_spread_v3
    from pettingzoo.utils import BaseParallelWrapper

    class TimeLimitEnds(BaseParallelWrapper):
        def step(self, actions: Any) -> Any:
            obs, rewards, terms, truncs, infos = self.env.step(actions)
            terms = {a: bool(terms[a] or truncs[a]) for a in terms}
            return obs, rewards, terms, {a: False for a in truncs}, infos

    return TimeLimitEnds(simple_spread_v3.parallel_env(**kwargs))


def envkit_config(copies: int, seed: int, time_limit_ends: bool = False, **settings: Any) -> Any:
    """ppo-envkit's default settings for simple_spread (``settings``: dotted keys changed)."""
    from ppo_envkit import TrainConfig, register_env

    env_id = ENV_ID
    if time_limit_ends:
        register_env(ENDS_ID, make_time_limit_ends, overwrite=True)
        env_id = ENDS_ID
    return TrainConfig().with_overrides(
        {"env.id": env_id, "env.kwargs": KWARGS, "env.num_envs": copies, "run.seed": seed, **settings}
    )


def train_envkit(steps: int, copies: int, seed: int, time_limit_ends: bool = False) -> tuple[Any, float]:
    from ppo_envkit import PPO

    config = envkit_config(copies, seed, time_limit_ends)
    agent = PPO(config=config)
    agent.prepare()
    start = time.perf_counter()
    agent.learn(steps)  # agent-steps
    elapsed = time.perf_counter() - start
    agent.close()
    return agent, elapsed


def train_sb3(steps: int, copies: int, seed: int) -> tuple[Any, float]:
    import supersuit as ss
    from mpe2 import simple_spread_v3
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.utils import set_random_seed

    env = simple_spread_v3.parallel_env(**KWARGS)
    env = ss.pettingzoo_env_to_vec_env_v1(env)
    env = ss.concat_vec_envs_v1(env, copies, num_cpus=0, base_class="stable_baselines3")
    set_random_seed(seed)  # (not PPO(seed=...): SuperSuit's ConcatVecEnv has no seed() for SB3 to call)
    model = SB3PPO("MlpPolicy", env, verbose=0, device="cpu")
    start = time.perf_counter()
    model.learn(steps)  # SuperSuit's vector has one slot per agent: timesteps are agent-steps
    elapsed = time.perf_counter() - start
    if model.num_timesteps != steps:
        print(f"(SB3 trained {model.num_timesteps:,} agent-steps: its rollouts are 2048 x {copies * 3})")
    env.close()
    return model, elapsed


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
        "--time-limit-ends",
        action="store_true",
        help="also train ppo-envkit with the time limit as termination (as SB3 sees it)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {}
    runs = [("ppo-envkit", train_envkit, envkit_actor), ("SB3+SuperSuit", train_sb3, sb3_actor)]
    if args.time_limit_ends:
        runs.insert(1, ("ppo-envkit ends", lambda *a: train_envkit(*a, time_limit_ends=True), envkit_actor))
    for name, train, actor in runs:
        model, wall = train(args.steps, args.copies, args.seed)
        det = evaluate(actor(model, True), args.episodes, True, 10_000)
        sto = evaluate(actor(model, False), args.episodes, False, 10_000)
        results[name] = (det, sto, wall)
        print(f"{name}: trained {args.steps:,} agent-steps in {wall:.1f} s", flush=True)
    print(
        f"\nsimple_spread_v3 (N=3, max_cycles=25, discrete), {args.steps:,} agent-steps, {args.copies} copies"
    )
    print(f"{'':16}{'deterministic':>22}{'stochastic':>22}{'train wall s':>14}{'agent-steps/s':>15}")
    for name, (det, sto, wall) in results.items():
        print(
            f"{name:16}{det[0]:>14.2f} +- {det[1]:<5.2f}{sto[0]:>14.2f} +- {sto[1]:<5.2f}"
            f"{wall:>14.1f}{args.steps / wall:>15.0f}"
        )
    ratio = results["SB3+SuperSuit"][2] / results["ppo-envkit"][2]
    print(f"ppo-envkit's training took {1 / ratio:.2f} of SB3's wall time ({ratio:.1f}x faster)")


if __name__ == "__main__":
    main()
