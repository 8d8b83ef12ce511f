"""A curriculum as a callback: KeyDoor-v0 (envs/key_door.py) in a big room, with the key and the
door placed farther away as the agent learns.

In an 11 x 11 room, a random walk rarely picks up the key and then opens the door within the
100-step limit, so the only reward (at the door) almost never comes and the defaults learn
little in 160,000 steps. The curriculum starts with the key within 2 steps of the agent and
the door within 2 steps of the key (``reach``), and doubles ``reach`` whenever ``promote`` of
the last ``window`` training episodes opened the door, until the objects lie anywhere (the
task the fixed run trains on from the start). Each change goes through
``agent.env_set("reach", level)``, which changes every training copy (every vectorization,
every rank) at the start of the next iteration and is part of the run's state; the callback's
own state (level, recent results) is saved with every checkpoint through ``state_dict()``, so
``train --resume`` (give ``--callback`` again) goes on exactly.

    ppo-envkit train KeyDoor-v0 --env-module envs/key_door.py --set env.kwargs.size=11 \\
        --total-timesteps 160000 --callback examples/curriculum.py:ReachCurriculum

    python examples/curriculum.py            # the measurement in docs/callbacks.md

Evaluations use copies built from the settings (anywhere in the room): they measure the
target task all along, whatever the curriculum's level.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ppo_envkit import Callback


class ReachCurriculum(Callback):
    """KeyDoor's ``reach``: ``start`` at first, doubled whenever ``promote`` of the last
    ``window`` training episodes opened the door; None (anywhere) once it spans the room."""

    def __init__(self, start: int = 2, window: int = 100, promote: float = 0.8):
        self.start, self.window, self.promote = start, window, promote
        self.level: int | None = None  # the current reach; None: anywhere (the target task)
        self.started = False
        self.results: list[float] = []

    def on_training_start(self, event):
        if not self.started:  # a new run (a resumed one gets its level from the checkpoint)
            self.started = True
            self.level = self.start
            self.agent.env_set("reach", self.level)

    def on_episode_end(self, episode):
        self.results.append(float(episode.episode_return > 0))  # 1: the door was opened
        del self.results[: -self.window]

    def on_update_end(self, update):
        if self.level is None or len(self.results) < self.window:
            return
        if sum(self.results) / len(self.results) >= self.promote:
            size = int(self.agent.config.env.kwargs.get("size", 7))
            self.level = 2 * self.level if 2 * self.level < 2 * (size - 1) else None
            self.agent.env_set("reach", self.level)
            self.results = []  # judge the new level on its own episodes

    def state_dict(self):
        return {"level": self.level, "started": self.started, "results": self.results}

    def load_state_dict(self, state):
        self.level, self.started = state["level"], state["started"]
        self.results = list(state["results"])


def main(steps: int = 160_000, size: int = 11, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Fixed difficulty against the curriculum, the same steps and seeds, the defaults;
    deterministic evaluation on the target task (100 episodes)."""
    from ppo_envkit import PPO, TrainConfig, load_env_module

    load_env_module(str(Path(__file__).resolve().parents[1] / "envs" / "key_door.py"))
    print(f"KeyDoor-v0 in a {size} x {size} room, {steps:,} steps, defaults; evaluation: 100 episodes")
    for seed in seeds:
        row = []
        for curriculum in (False, True):
            overrides = {"env.id": "KeyDoor-v0", "env.kwargs": {"size": size}, "run.seed": seed}
            agent = PPO(config=TrainConfig().with_overrides({**overrides, "run.eval_interval": 0}))
            callback = ReachCurriculum() if curriculum else None
            started = time.perf_counter()
            agent.learn(steps, callback=callback)
            seconds = time.perf_counter() - started
            result = agent.evaluate(100, seed=1000)
            agent.close()
            level = ""
            if callback is not None:
                level = " (reach: anywhere)" if callback.level is None else f" (reach {callback.level})"
            name = "curriculum" if curriculum else "fixed"
            row.append(f"{name:10s} {result.mean_return:+.3f}{level} in {seconds:.0f} s")
        print(f"seed {seed}: " + "   ".join(row), flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
