"""ppo-envkit's defaults against Stable-Baselines3's defaults, on a varied suite of environments.

Each learner trains each environment of the suite for the same number of steps (default
100,000) with its defaults and a fixed seed, in a fresh process; the time counted is the
whole process up to the end of training (imports, set-up, training, and ppo-envkit's
default evaluations). Then both are evaluated on the same 20 episodes (deterministic
actions, the same reset seeds), outside the timing.

    pip install -e ".[compare]"              # stable-baselines3, never a runtime dependency
    python examples/defaults_vs_sb3.py                        # the whole suite, one seed
    python examples/defaults_vs_sb3.py --envs CartPole-v1 Hover2D-v0 --seeds 0 1 2
    python examples/defaults_vs_sb3.py --learners ours --set ppo.n_epochs=5   # try other settings

SB3 is ``PPO("MlpPolicy", make_vec_env(ID, n_envs=1, seed=SEED))`` (``MultiInputPolicy``
for Dict observations), nothing else set. ppo-envkit is ``PPO(ID)`` with its defaults.
``--cache FILE`` keeps results between invocations (the key includes the settings), so
that SB3's slow runs need not be repeated while ppo-envkit's settings are varied.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

#: label -> (environment id, constructor arguments, file that registers it)
SUITE: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "CartPole-v1": ("CartPole-v1", {}, None),
    "Acrobot-v1": ("Acrobot-v1", {}, None),
    "MountainCar-v0": ("MountainCar-v0", {}, None),
    "Pendulum-v1": ("Pendulum-v1", {}, None),
    "LunarLander-v3": ("LunarLander-v3", {}, None),
    "LunarLander-v3 continuous": ("LunarLander-v3", {"continuous": True}, None),
    "Hover2D-v0": ("Hover2D-v0", {}, "envs/hover.py"),
    "Hover2D-v0 continuous": ("Hover2D-v0", {"continuous": True}, "envs/hover.py"),
    "Reservoir-v0": ("Reservoir-v0", {}, "envs/reservoir.py"),
    "KeyDoor-v0": ("KeyDoor-v0", {}, "envs/key_door.py"),
    "Docking-v0": ("Docking-v0", {}, "envs/docking.py"),
    "Courier-v0": ("Courier-v0", {}, "envs/courier.py"),
}
EVAL_EPISODES = 20
EVAL_SEED = 10_000


def _train(learner: str, label: str, steps: int, seed: int, overrides: list[str], launched: float) -> dict:
    """In a fresh process: train, note the time, then evaluate (not timed)."""
    from ppo_envkit import TrainConfig, load_env_module
    from ppo_envkit.algo.evaluator import Evaluator

    env_id, kwargs, module = SUITE[label]
    if module:
        load_env_module(str(REPO / module))
    env_config = TrainConfig().with_overrides({"env.id": env_id, "env.kwargs": kwargs}).env
    if learner == "sb3":
        import gymnasium as gym
        from stable_baselines3 import PPO as SB3PPO
        from stable_baselines3.common.env_util import make_vec_env

        vec = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=kwargs)
        policy = "MultiInputPolicy" if isinstance(vec.observation_space, gym.spaces.Dict) else "MlpPolicy"
        model = SB3PPO(policy, vec, seed=seed, device="cpu", verbose=0)
        model.learn(total_timesteps=steps)
        act: Any = lambda obs, _masks, _starts: model.predict(obs, deterministic=True)[0]  # noqa: E731
    else:
        from ppo_envkit import PPO

        config = TrainConfig().with_overrides({"env.id": env_id, "env.kwargs": kwargs, "run.seed": seed})
        agent = PPO(config=config.with_overrides(overrides) if overrides else config)
        agent.learn(steps)
        agent.close()
        act = agent.stateful(deterministic=True)
    seconds = time.time() - launched
    evaluator = Evaluator(env_config, EVAL_EPISODES)
    result = evaluator.play(act, deterministic=True, seed=EVAL_SEED)
    evaluator.close()
    return {"seconds": seconds, "mean": result.mean_return, "std": result.std_return}


def _launch(learner: str, label: str, steps: int, seed: int, overrides: list[str]) -> dict:
    """One measurement in a fresh interpreter; its time counts from the launch."""
    job = json.dumps([learner, label, steps, seed, overrides, time.time()])
    done = subprocess.run([sys.executable, __file__, "--child", job], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{learner} on {label} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _key(learner: str, label: str, steps: int, seed: int, overrides: list[str]) -> str:
    settings = "" if learner == "sb3" else " ".join(overrides)
    return f"{learner}|{label}|{steps}|{seed}|{settings}"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(_train(*json.loads(sys.argv[2]))))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", nargs="+", default=list(SUITE), choices=list(SUITE), metavar="ENV")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--learners", nargs="+", default=["sb3", "ours"], choices=["sb3", "ours"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=1, help="measurements at once (1 for fair times)")
    parser.add_argument("--cache", type=Path, help="JSON file of earlier results to reuse and extend")
    parser.add_argument("--json", type=Path, help="write all results here")
    args = parser.parse_args()

    cache: dict[str, dict] = json.loads(args.cache.read_text()) if args.cache and args.cache.exists() else {}
    todo = [
        (learner, label, seed)
        for label in args.envs
        for seed in args.seeds
        for learner in args.learners
        if _key(learner, label, args.steps, seed, args.overrides) not in cache
    ]
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            job: pool.submit(_launch, job[0], job[1], args.steps, job[2], args.overrides) for job in todo
        }
        for (learner, label, seed), future in futures.items():
            result = future.result()
            cache[_key(learner, label, args.steps, seed, args.overrides)] = result
            print(
                f"{learner:4s} {label:26s} seed {seed}: {result['mean']:10.2f} +- {result['std']:8.2f}"
                f"  {result['seconds']:6.1f} s",
                flush=True,
            )
            if args.cache:
                args.cache.write_text(json.dumps(cache, indent=1))
    _print_table(args, cache)
    if args.json:
        args.json.write_text(json.dumps(cache, indent=1))


def _number(value: float, scale: float) -> str:
    """``value`` with as many decimals as the size of ``scale`` calls for (0.903, 187.1, 492603)."""
    size = abs(scale)
    decimals = 0 if size >= 1000 else 1 if size >= 10 else 3
    return f"{value:.{decimals}f}"


def _print_table(args: argparse.Namespace, cache: dict[str, dict]) -> None:
    print(f"\n{args.steps:,} steps, {EVAL_EPISODES} deterministic evaluation episodes, seeds {args.seeds}")
    print("| environment | SB3 defaults | ppo-envkit defaults | SB3 time | ppo-envkit time | time ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    wins = ties = 0
    for label in args.envs:
        cells = []
        found = {}
        for learner in ("sb3", "ours"):
            runs = [cache.get(_key(learner, label, args.steps, s, args.overrides)) for s in args.seeds]
            runs = [r for r in runs if r]
            found[learner] = runs
            if runs:
                means = ", ".join(
                    f"{_number(r['mean'], r['mean'])} +- {_number(r['std'], r['mean'])}" for r in runs
                )
                cells.append(means)
            else:
                cells.append("-")
        times = [
            sum(r["seconds"] for r in found[k]) / len(found[k]) if found[k] else None for k in ("sb3", "ours")
        ]
        ratio = f"{times[1] / times[0]:.3f}" if all(times) else "-"
        time_cells = [f"{t:.0f} s" if t else "-" for t in times]
        print(f"| {label} | {cells[0]} | {cells[1]} | {time_cells[0]} | {time_cells[1]} | {ratio} |")
        if found["sb3"] and found["ours"]:
            sb3 = sum(r["mean"] for r in found["sb3"]) / len(found["sb3"])
            ours = sum(r["mean"] for r in found["ours"]) / len(found["ours"])
            spread = max(r["std"] for r in found["sb3"])
            wins += ours > sb3
            ties += ours <= sb3 <= ours + spread
    print(
        f"\nppo-envkit's mean above SB3's on {wins} of {len(args.envs)}; "
        f"equal or below but within SB3's standard deviation on {ties}"
    )


if __name__ == "__main__":
    main()
