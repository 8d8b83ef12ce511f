"""The ``mujoco`` preset against CleanRL's published PPO results on MuJoCo locomotion.

CleanRL's ``ppo_continuous_action.py`` reports, after 1M steps (mean +- std over seeds of the
training episodes' returns): HalfCheetah 1,443 +- 46, Hopper 2,383 +- 272, Walker2d
2,288 +- 572, about 25 minutes per run (https://docs.cleanrl.dev/rl-algorithms/ppo/).

Each run here is the command a user types, in a fresh process, timed as a whole:

    ppo-envkit train TASK --preset mujoco --seed S --total-timesteps 1000000 --run-dir DIR

then the agent it saved is evaluated on 10 episodes with sampled actions (as CleanRL's
numbers are returns of the training policy, which samples) and on 10 with the most likely
action (``ppo-envkit eval``), outside the timing.

    pip install -e . "gymnasium[mujoco]"
    python examples/mujoco_vs_cleanrl.py                              # 3 tasks x 3 seeds, one at a time
    python examples/mujoco_vs_cleanrl.py --jobs 9 --threads 1         # on a machine with 9+ free cores
    python examples/mujoco_vs_cleanrl.py --tasks Hopper-v5 --seeds 0 --steps 200000
    python examples/mujoco_vs_cleanrl.py --set ppo.n_epochs=5         # try other settings

``--jobs N`` runs N trainings at once (each then should have its own cores: ``--threads 1
--processes 1``); the wall time printed is then that of a shared machine. A table is printed
at the end and, with ``--out FILE``, written as JSON with every run's numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

#: task -> (CleanRL's published mean, std) at 1M steps, ppo_continuous_action.py
CLEANRL = {
    "HalfCheetah-v5": (1443.0, 46.0),
    "Hopper-v5": (2383.0, 272.0),
    "Walker2d-v5": (2288.0, 572.0),
}
CLEANRL_MINUTES = 25.0
EVAL_EPISODES = 10
EVAL_SEED = 10_000


def _command() -> list[str]:
    return [sys.executable, "-m", "ppo_envkit"]


def _evaluate(run_dir: Path, stochastic: bool, env: dict[str, str]) -> float | None:
    args = [*_command(), "eval", str(run_dir), "--episodes", str(EVAL_EPISODES), "--seed", str(EVAL_SEED)]
    args += ["--json", "--no-compare", "--stochastic" if stochastic else "--deterministic"]
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        print(f"eval of {run_dir} failed: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return float(result["mean_return"])


def _last_training_return(run_dir: Path) -> float | None:
    """The mean training return logged last (``progress.csv``), the number CleanRL reports."""
    lines = (run_dir / "progress.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    column = header.index("episode_return")
    for line in reversed(lines[1:]):
        value = line.split(",")[column]
        if value:
            return float(value)
    return None


def run_one(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    run_dir = Path(args.runs) / f"{task}-seed{seed}"
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    train = [*_command(), "train", task, "--preset", args.preset, "--seed", str(seed)]
    train += ["--total-timesteps", str(args.steps), "--run-dir", str(run_dir), "--no-progress"]
    if args.processes:
        train += ["--processes", str(args.processes)]
    for item in args.set:
        train += ["--set", item]
    start = time.perf_counter()
    done = subprocess.run(train, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{task} seed {seed}: train failed: {done.stderr.strip()[-800:]}")
    result = {
        "task": task,
        "seed": seed,
        "seconds": round(seconds, 1),
        "training_return": _last_training_return(run_dir),
        "eval_stochastic": _evaluate(run_dir, True, env),
        "eval_deterministic": _evaluate(run_dir, False, env),
    }
    print(json.dumps(result), flush=True)
    return result


def _mean(values: list[float | None]) -> tuple[float, float] | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return statistics.fmean(known), (statistics.stdev(known) if len(known) > 1 else 0.0)


def _cell(stat: tuple[float, float] | None) -> str:
    return "-" if stat is None else f"{stat[0]:,.0f} +- {stat[1]:,.0f}"


def table(results: list[dict[str, Any]], steps: int) -> str:
    rows = [
        f"| task | CleanRL at 1M ({CLEANRL_MINUTES:.0f} min) | ours, sampled actions "
        "| ours, most likely action | ours, training return | seeds | minutes per run |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in dict.fromkeys(r["task"] for r in results):
        mine = [r for r in results if r["task"] == task]
        cleanrl = CLEANRL.get(task)
        minutes = statistics.fmean(r["seconds"] for r in mine) / 60
        rows.append(
            f"| {task} | {_cell(cleanrl)} | {_cell(_mean([r['eval_stochastic'] for r in mine]))} "
            f"| {_cell(_mean([r['eval_deterministic'] for r in mine]))} "
            f"| {_cell(_mean([r['training_return'] for r in mine]))} "
            f"| {', '.join(str(r['seed']) for r in mine)} | {minutes:.1f} |"
        )
    return f"{steps:,} steps per run\n" + "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(CLEANRL))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--preset", default="mujoco")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per training (0: its own)")
    parser.add_argument("--processes", type=int, default=0, help="run.processes (0: the preset's)")
    parser.add_argument("--runs", default="runs/mujoco-vs-cleanrl", help="folder of the run directories")
    parser.add_argument("--out", help="write every run's numbers here as JSON")
    args = parser.parse_args()
    jobs = [(task, seed) for task in args.tasks for seed in args.seeds]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda job: run_one(*job, args), jobs))
    report = table(results, args.steps)
    print(report)
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "table": report}, indent=1))


if __name__ == "__main__":
    main()
