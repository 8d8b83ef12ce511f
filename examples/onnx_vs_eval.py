"""100-episode means: ``ppo-envkit eval`` (torch) vs the exported graph in onnxruntime.

    python examples/onnx_vs_eval.py agents/lunarlander agents/lunarlander-continuous --seeds 0 1

Both play the same episodes through the same loop (:class:`ppo_envkit.algo.evaluator.Evaluator`,
which ``ppo-envkit eval`` uses; ``examples/onnx_inference.py`` reproduces it without
ppo-envkit). A third column moves every continuous torch action by one float32 ulp: how much
the mean moves when actions differ by rounding alone, which is what onnxruntime's and torch's
``tanh`` do (they differ in the last bit for some inputs).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from ppo_envkit import PPO
from ppo_envkit.algo.evaluator import Evaluator
from ppo_envkit.export.check import OnnxAgent


def _one_ulp_up(agent: PPO) -> Any:
    """The agent, with every action moved to the next float32 up."""
    return lambda obs, masks, _starts: np.nextafter(agent.predict(obs, action_mask=masks), np.float32(np.inf))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agents", nargs="+", metavar="AGENT_DIR")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    print("| agent | seed | eval (torch) | onnxruntime | identical returns | torch, actions +1 ulp |")
    print("| --- | ---: | ---: | ---: | :---: | ---: |")
    for agent_dir in args.agents:
        agent = PPO.load(agent_dir)
        continuous = isinstance(agent.action_space, spaces.Box)
        with tempfile.TemporaryDirectory() as tmp:
            model = OnnxAgent(agent.export_onnx(Path(tmp) / "m.onnx"))
            evaluator = Evaluator(agent.config.env, args.episodes)
            try:
                for seed in args.seeds:
                    torch_run = evaluator.run(agent.policy, agent.generator, seed=seed)
                    onnx_run = evaluator.play(
                        lambda obs, masks, _s, m=model: m.predict(obs, masks), seed=seed
                    )
                    nudged = "n/a"
                    if continuous:
                        nudged = f"{evaluator.play(_one_ulp_up(agent), seed=seed).mean_return:.2f}"
                    same = "yes" if torch_run.returns == onnx_run.returns else "no"
                    print(
                        f"| {Path(agent_dir).name} | {seed} | {torch_run.mean_return:.2f} | "
                        f"{onnx_run.mean_return:.2f} | {same} | {nudged} |"
                    )
            finally:
                evaluator.close()


if __name__ == "__main__":
    main()
