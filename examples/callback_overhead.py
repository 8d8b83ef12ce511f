"""What callbacks cost: the time spent firing every event (``EveryEvent``, a callback that
listens to all of them and does nothing) as a share of training the ``lunarlander`` preset in
one process, and the wall time with and without it, alternating (docs/callbacks.md).

    python examples/callback_overhead.py            # 4 rounds of 131,072 steps each way
"""

from __future__ import annotations

import sys
import time
from typing import Any

import ppo_envkit.algo.trainer as trainer
from ppo_envkit import PPO
from ppo_envkit.algo.callbacks import EveryEvent

#: Seconds spent inside the trainer's ``fire`` (every event goes through it), and calls.
spent = [0.0, 0]
_fire = trainer.fire


def timed_fire(*args: Any) -> bool:
    started = time.perf_counter()
    try:
        return _fire(*args)
    finally:
        spent[0] += time.perf_counter() - started
        spent[1] += 1


def main(rounds: int = 4, steps: int = 131_072) -> None:
    trainer.fire = timed_fire
    for name in ["EveryEvent", "none"] * rounds:
        agent = PPO.from_preset("lunarlander", overrides={"run.processes": 1, "run.eval_interval": 0})
        spent[:] = [0.0, 0]
        started = time.perf_counter()
        agent.learn(steps, callback=EveryEvent() if name == "EveryEvent" else None)
        total = time.perf_counter() - started
        agent.close()
        share = 100 * spent[0] / total
        print(
            f"{name:10s} {total:6.2f} s; in events {spent[0] * 1000:6.1f} ms over {spent[1]} calls "
            f"= {share:.3f} %",
            flush=True,
        )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
