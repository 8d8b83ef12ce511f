"""Steps and wall time to half a hand-written rule's score, on a suite of pixel games.

The suite (tests/pixel_suite.py and envs/pixels.py): catch falling balls, dodge falling
rocks, walk to a target; RGB pictures of 16 to 84 pixels. Each run trains with the library's
defaults (the image defaults apply: nothing is set but the environment and the seed),
evaluating every ``--every`` steps (20 deterministic episodes, not counted as training
time), and stops once an evaluation reaches half the rule's score, or after ``--steps``.

    python examples/pixel_defaults.py                            # the suite, seeds 0 1
    python examples/pixel_defaults.py --games catch16 avoid32 --seeds 0 1 2
    python examples/pixel_defaults.py --set ppo.n_epochs=10 ppo.minibatch_size=64   # other settings
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: name -> (environment id, size, threshold: half the rule's mean score, the rule's score)
GAMES = {
    "catch16": ("PixelCatch-v0", 16, 5.0, 10.0),
    "catch32": ("PixelCatch-v0", 32, 5.0, 10.0),
    "avoid16": ("PixelAvoid-v0", 16, 2.0, 4.0),
    "avoid32": ("PixelAvoid-v0", 32, 2.0, 4.0),
    "chase16": ("PixelChase-v0", 16, 0.48, 0.96),
    "chase32": ("PixelChase-v0", 32, 0.48, 0.96),
    "catch84": ("PixelCatch-v0", 84, 5.0, 10.0),
}


def run(
    game: str, seed: int, steps: int, overrides: list[str], every: int
) -> tuple[int | None, float, float]:
    """(steps to the threshold or None, training seconds to it or to the end, last evaluation's
    mean): trains in chunks of ``every`` steps, each followed by an evaluation (20 episodes,
    deterministic, fixed seeds; not counted as training time)."""
    from ppo_envkit import PPO, TrainConfig, evaluate

    env_id, size, threshold, _ = GAMES[game]
    config = TrainConfig().with_overrides(
        {"env.id": env_id, "env.kwargs": {"size": size}, "run.seed": seed, "run.total_timesteps": steps,
         "run.eval_interval": 0, "run.checkpoint_interval": 0}
    )  # fmt: skip
    if overrides:
        config = config.with_overrides(overrides)
    agent = PPO(config=config)
    wall, score, reached = 0.0, float("nan"), None
    while agent.state.num_timesteps < steps:
        start = time.perf_counter()
        agent.learn(min(every, steps - agent.state.num_timesteps))
        wall += time.perf_counter() - start
        score = evaluate(agent, 20, seed=10_000).mean_return
        print(
            f"  {game} seed {seed}: {agent.state.num_timesteps:,} steps, {wall:.0f} s, eval {score:.2f}",
            flush=True,
        )
        if score >= threshold:
            reached = agent.state.num_timesteps
            break
    agent.close()
    return reached, wall, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--games", nargs="+", default=["catch16", "catch32", "avoid32", "chase16", "chase32"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides")
    parser.add_argument("--every", type=int, default=16_384, help="steps between evaluations")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from ppo_envkit.environments.discovery import load_env_module
    from tests.pixel_suite import register_suite

    load_env_module(str(REPO / "envs" / "pixels.py"))
    register_suite()
    rows = []
    for game in args.games:
        for seed in args.seeds:
            reached, wall, final = run(game, seed, args.steps, args.overrides, args.every)
            rows.append((game, seed, reached, wall, final))
            to = f"{reached:,} steps" if reached else f"not within {args.steps:,} steps"
            print(f"{game:8s} seed {seed}: threshold {GAMES[game][2]} {to}, {wall:5.0f} s, "
                  f"final eval {final:.2f} (rule {GAMES[game][3]})", flush=True)  # fmt: skip
    print("\ngame      reached   median steps   median s")
    for game in args.games:
        mine = [r for r in rows if r[0] == game]
        hits = [r for r in mine if r[2]]
        steps = statistics.median(r[2] for r in hits) if hits else float("nan")
        secs = statistics.median(r[3] for r in mine)
        print(f"{game:8s} {len(hits)}/{len(mine)}      {steps:>10,.0f}   {secs:8.0f}")


if __name__ == "__main__":
    main()
