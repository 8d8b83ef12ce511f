"""One ppo-envkit run of ``simple_spread_v3`` with settings changed from the defaults, evaluated
as ``examples/simple_spread_vs_sb3.py`` evaluates (same 50 seeded episodes, deterministic and
stochastic): the ablations behind docs/several-agents.md's "Numbers".

    python examples/simple_spread_ablation.py --seed 0 --set ppo.gae_lambda=0.95
    python examples/simple_spread_ablation.py --seed 0 --set env.time_limit=bootstrap   # Gymnasium's meaning
    python examples/simple_spread_ablation.py --seed 0 --set env.time_limit=bootstrap ppo.gae_lambda=0.95

The default ``env.time_limit=auto`` ends the task at the time limit (``max_cycles``) without
bootstrapping (``terminal``, for a PettingZoo environment): what SB3 does through SuperSuit,
whose vector gives SB3 ``done`` without ``TimeLimit.truncated``. ``bootstrap`` (the default
before ``auto``) bootstraps each agent's value from its final observation there; the ablation
table of the docs changed one setting at a time from that.
"""

from __future__ import annotations

import argparse
import json
import time

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=196_608)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], help="KEY=VALUE settings (YAML values)")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    import torch
    from simple_spread_vs_sb3 import envkit_actor, envkit_config, evaluate  # this script's neighbour

    from ppo_envkit import PPO

    torch.set_num_threads(1)
    settings = {}
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = yaml.safe_load(value)
    agent = PPO(config=envkit_config(args.copies, args.seed, **settings))
    agent.prepare()
    start = time.perf_counter()
    agent.learn(args.steps)
    wall = time.perf_counter() - start
    agent.close()
    det = evaluate(envkit_actor(agent, True), args.episodes, True, 10_000)
    sto = evaluate(envkit_actor(agent, False), args.episodes, False, 10_000)
    print(
        json.dumps(
            {
                "label": args.label or " ".join(args.set) or "defaults",
                "seed": args.seed,
                "det": round(det[0], 2),
                "stoch": round(sto[0], 2),
                "wall_s": round(wall, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
