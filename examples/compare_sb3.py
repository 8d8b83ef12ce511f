"""Side-by-side comparison with Stable-Baselines3 on LunarLander-v3, in one run.

Each learner lives in its own process and they take turns: learner A trains one
chunk of steps while the others wait, then B, and so on, so that they share the
machine's conditions (and drift) evenly. After every chunk each learner is
evaluated on the same seeds (deterministic actions); evaluation time is not
counted as training time. The raw environment step rate is measured in the same
run, as the ceiling.

    pip install -e ".[compare]"          # stable-baselines3, never a runtime dependency
    python examples/compare_sb3.py                         # discrete, 1M steps each (~23 min here)
    python examples/compare_sb3.py --variant continuous
    python examples/compare_sb3.py --steps 196608 --learners sb3 zoo   # throughput only, ~5 min

Learners: ``sb3`` (SB3 PPO with rl-baselines3-zoo's LunarLander-v3 settings),
``zoo`` (ppo-envkit with the identical ``zoo-lunarlander`` preset) and ``ours``
(ppo-envkit with its own ``lunarlander`` / ``lunarlander-continuous`` preset).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time
from typing import Any

ZOO = {"n_steps": 1024, "batch_size": 64, "n_epochs": 4, "gamma": 0.999, "gae_lambda": 0.98, "ent_coef": 0.01}
N_ENVS = 16
ENV_ID = "LunarLander-v3"


def _peak_mb(agent: Any) -> float:
    """Peak resident memory of this learner plus its other training processes (run.processes)."""
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    helpers = agent.helpers_peak_rss_mb() if hasattr(agent, "helpers_peak_rss_mb") else 0.0
    return usage + helpers


def _learner(kind: str, continuous: bool, seed: int, total: int, conn: Any) -> None:
    """Worker: build one learner, then obey ('train', steps) / ('eval', episodes, seed) / ('stop',)."""
    from ppo_envkit import PPO, TrainConfig
    from ppo_envkit.algo.evaluator import Evaluator

    kwargs = {"continuous": continuous}
    config = TrainConfig().with_overrides({"env.id": ENV_ID, "env.kwargs": kwargs})
    if kind == "sb3":
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env

        vec = make_vec_env(ENV_ID, n_envs=N_ENVS, seed=seed, env_kwargs=kwargs)
        model = SB3PPO("MlpPolicy", vec, seed=seed, device="cpu", verbose=0, **ZOO)
        agent: Any = model
        trained = 0

        def evaluate(episodes: int, eval_seed: int) -> Any:  # SB3's policy, on the same episodes
            evaluator = Evaluator(config.env, episodes)
            try:
                act = lambda obs, _m, _s: model.predict(obs, deterministic=True)[0]  # noqa: E731
                return evaluator.play(act, seed=eval_seed)
            finally:
                evaluator.close()

        def train(steps: int) -> int:
            nonlocal trained
            model.learn(total_timesteps=steps, reset_num_timesteps=False)
            trained = model.num_timesteps
            return trained
    else:
        preset = (
            "zoo-lunarlander"
            if kind == "zoo"
            else ("lunarlander-continuous" if continuous else "lunarlander")
        )
        agent = PPO.from_preset(preset, overrides={"env.kwargs": kwargs, "run.seed": seed})
        if kind == "ours":  # our presets plan their own length (the learning-rate schedule spans it)
            total = max(total, agent.config.run.total_timesteps)

        def train(steps: int) -> int:
            stop_at = agent.num_timesteps + steps
            agent.train(callback=lambda a, _m: a.num_timesteps < stop_at, target_timesteps=total)
            return agent.num_timesteps

        def evaluate(episodes: int, eval_seed: int) -> Any:
            return agent.evaluate(episodes, seed=eval_seed)

    conn.send(("ready", total))
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the coordinator is gone
            return
        if msg[0] == "train":
            start = time.perf_counter()
            steps = train(msg[1])
            conn.send((steps, time.perf_counter() - start, _peak_mb(agent)))
        elif msg[0] == "eval":
            result = evaluate(msg[1], msg[2])
            conn.send((result.mean_return, result.std_return))
        else:
            conn.close()
            return


def _raw_rate(continuous: bool, steps: int = 50_000) -> float:
    from ppo_envkit.cli.measure import raw_env_rate

    return raw_env_rate(ENV_ID, {"continuous": continuous}, 1, steps, 0)["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", choices=["discrete", "continuous"], default="discrete")
    parser.add_argument(
        "--learners", nargs="+", default=["sb3", "zoo", "ours"], choices=["sb3", "zoo", "ours"]
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=1_015_808,
        help="steps per learner; ours runs at least its preset's planned length",
    )
    parser.add_argument("--chunk", type=int, default=49_152, help="steps per turn (3 SB3 rollouts)")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--final-episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    continuous = args.variant == "continuous"
    ctx = mp.get_context("spawn")
    learners: dict[str, Any] = {}
    for kind in args.learners:
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_learner, args=(kind, continuous, args.seed, args.steps, child), daemon=True
        )
        proc.start()
        learners[kind] = {
            "conn": parent,
            "proc": proc,
            "steps": 0,
            "train_s": 0.0,
            "first200": None,
            "evals": [],
            "total": parent.recv()[1],
            "peak_mb": 0.0,
        }
    raw_before = _raw_rate(continuous)
    print(f"LunarLander-v3 {args.variant}; raw env {raw_before:.0f} steps/s; learners {', '.join(learners)}")
    done = 0
    while any(st["steps"] < st["total"] for st in learners.values()):
        done += args.chunk
        for kind, st in learners.items():
            if st["steps"] >= st["total"]:
                continue
            st["conn"].send(("train", args.chunk))
            steps, seconds, peak = st["conn"].recv()
            st["steps"], st["train_s"], st["peak_mb"] = steps, st["train_s"] + seconds, peak
            st["conn"].send(("eval", args.eval_episodes, 10_000 + done))
            mean, std = st["conn"].recv()
            st["evals"].append((steps, round(st["train_s"], 1), round(mean, 1)))
            if st["first200"] is None and mean >= 200:
                st["first200"] = (steps, st["train_s"])
            print(
                f"{kind:>5} {steps:8d} steps {st['train_s']:7.1f}s train  "
                f"{steps / st['train_s']:6.0f} steps/s  eval {mean:7.1f} +- {std:5.1f}",
                flush=True,
            )
    raw_after = _raw_rate(continuous)
    raw = (raw_before + raw_after) / 2
    summary: dict[str, Any] = {"variant": args.variant, "raw_env_steps_per_s": round(raw), "learners": {}}
    for kind, st in learners.items():
        st["conn"].send(("eval", args.final_episodes, 123_456))
        final_mean, final_std = st["conn"].recv()
        st["conn"].send(("stop",))
        summary["learners"][kind] = {
            "steps": st["steps"],
            "train_seconds": round(st["train_s"], 1),
            "steps_per_s": round(st["steps"] / st["train_s"]),
            "x_raw_env": round(st["steps"] / st["train_s"] / raw, 2),
            "first_eval_ge_200": None
            if st["first200"] is None
            else {"steps": st["first200"][0], "seconds": round(st["first200"][1], 1)},
            f"final_{args.final_episodes}_episodes": f"{final_mean:.1f} +- {final_std:.1f}",
            "peak_mb": round(st["peak_mb"]),
        }
    if "sb3" in learners:
        base = summary["learners"]["sb3"]
        for row in summary["learners"].values():
            row["throughput_x_sb3"] = round(row["steps_per_s"] / base["steps_per_s"], 2)
            if row["first_eval_ge_200"] and base["first_eval_ge_200"]:
                row["time_to_200_fraction_of_sb3"] = round(
                    row["first_eval_ge_200"]["seconds"] / base["first_eval_ge_200"]["seconds"], 3
                )
    print(json.dumps(summary, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)


if __name__ == "__main__":
    main()
