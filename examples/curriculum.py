"""A curriculum as a callback: Recall-v0 (envs/recall.py) with its delay raised as the agent learns.

Recall shows a cue once and asks for it ``delay`` steps later. Learning to remember over a
long delay from the start is hard (the reward comes only at the end, and only by luck at
first); starting with a short delay and doubling it whenever the agent answers right in
90% of its recent training episodes gets there sooner. Each change goes through
``agent.env_set("delay", level)``, which changes every training copy (every vectorization,
every rank) at the start of the next iteration and is part of the run's state; the
callback's own state (level, recent answers) is saved with every checkpoint through
``state_dict()``, so ``train --resume`` (give ``--callback`` again) goes on exactly.

    ppo-envkit train Recall-v0 --env-module envs/recall.py --set env.kwargs.delay=24 \\
        --total-timesteps 40000 --callback examples/curriculum.py:DelayCurriculum

    python examples/curriculum.py            # the measurement in docs/callbacks.md

Evaluations use copies built from the settings (``env.kwargs.delay``): they measure the
target delay all along, whatever the curriculum's level.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ppo_envkit import Callback


class DelayCurriculum(Callback):
    """Recall's ``delay``: ``start`` at first, doubled (up to ``target``: the configured
    ``env.kwargs.delay``) whenever ``promote`` of the last ``window`` training episodes were
    answered right."""

    def __init__(self, start: int = 2, window: int = 100, promote: float = 0.9):
        self.start, self.window, self.promote = start, window, promote
        self.level: int | None = None  # None: not started
        self.answers: list[float] = []

    def on_training_start(self, event):
        if self.level is None:  # a new run (a resumed one gets its level from the checkpoint)
            self.level = min(self.start, self.target)
            self.agent.env_set("delay", self.level)

    @property
    def target(self) -> int:
        return int(self.agent.config.env.kwargs.get("delay", 10))

    def on_episode_end(self, episode):
        self.answers.append(episode.episode_return)  # 1: right, 0: wrong
        del self.answers[: -self.window]

    def on_update_end(self, update):
        full = len(self.answers) >= self.window
        if full and sum(self.answers) / len(self.answers) >= self.promote and self.level < self.target:
            self.level = min(2 * self.level, self.target)
            self.agent.env_set("delay", self.level)
            self.answers = []  # judge the new level on its own episodes

    def state_dict(self):
        return {"level": self.level, "answers": self.answers}

    def load_state_dict(self, state):
        self.level, self.answers = state["level"], list(state["answers"])


def main(steps: int = 40_000, delay: int = 24, seeds: tuple[int, ...] = (0, 1)) -> None:
    """Fixed delay against the curriculum, the same steps and seeds; deterministic evaluation
    at the target delay (100 episodes)."""
    from ppo_envkit import PPO, load_env_module

    load_env_module(str(Path(__file__).resolve().parents[1] / "envs" / "recall.py"))
    print(
        f"Recall-v0, delay {delay}, {steps} steps, recall preset; evaluation: 100 episodes at delay {delay}"
    )
    for seed in seeds:
        row = []
        for curriculum in (False, True):
            overrides = {"env.kwargs": {"delay": delay}, "run.seed": seed, "run.eval_interval": 0}
            agent = PPO.from_preset("recall", overrides=overrides)
            callback = DelayCurriculum() if curriculum else None
            agent.learn(steps, callback=callback)
            result = agent.evaluate(100, seed=1000)
            agent.close()
            level = f" (reached delay {callback.level})" if callback else ""
            row.append(f"{'curriculum' if curriculum else 'fixed':10s} {result.mean_return:.2f}{level}")
        print(f"seed {seed}: " + "   ".join(row), flush=True)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
