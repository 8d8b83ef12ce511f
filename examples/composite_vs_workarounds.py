"""A composite (Tuple) action head against the two usual workarounds, at equal steps.

On a parametrized-action task (a discrete choice, each choice with its own continuous
parameters), agents train for the same number of steps with the same settings (the defaults,
8 copies), over a few seeds:

* ``composite``: the environment's own ``Tuple((Discrete(k), Tuple((Box, ...))))`` with the
  default head settings (independent parts; ``composite_params=auto``, which for this layout
  counts only the chosen choice's parameters in the loss and starts the choice's
  probabilities in proportion to the volume of each choice's parameter box;
  ``composite_std=auto``, which for this layout makes each parameter's standard deviation an
  output of the network; ``box_coords=auto``, which puts each parameter's Gaussian in its box's
  own coordinates: the same as the environment's units for a box [-1, 1], so on Golf and Striker
  only Moving's acceleration box [0, 1] differs; ``--policy box_coords=env`` gives the default
  before);
* ``composite-fixed-std`` / ``composite-state-std``: the same with ``composite_std=fixed`` (one
  learned standard deviation per parameter, the same in every state: the default before) /
  ``state``;
* ``composite-all``: the same with ``policy.composite_params=all`` (every parameter counts in
  the loss, chosen or not: the default before ``auto``);
* ``composite-conditional``: ``composite=conditional`` (one mean per choice in every Box part)
  with the chosen parameters only and the fixed standard deviation (as it was measured);
* ``composite-beta``: the same with ``policy.box_distribution=beta`` (each parameter a Beta on its
  box, parametrized by its mode and log-concentration, its spread per state; the greedy action is
  the Beta's mode, and the line also gives the return of the Beta's mean played greedily, by the
  same agent over the same episodes); ``composite-beta-softplus``: the Beta parametrized by
  alpha, beta = 1 + softplus (``box_distribution=beta-softplus``, Chou et al. 2017);
* ``discretized``: one ``Discrete``, every choice with a grid of its parameters;
* ``flat-box``: one ``Box``: the choice is the argmax of the first k values, the parameters
  the rest.

Three tasks: ``golf`` (``envs/golf.py``: a club among 3, each with one signed power),
``striker`` (``envs/striker.py``: dribble(dx, dy), shoot_left(y), shoot_right(y)) and ``moving``
(``examples/hybrid_moving.py``: gym-hybrid's Moving-v0 written again from its published
description: accelerate(a), turn(r), break).
Each final agent plays 100 episodes with its most likely action (``agent.evaluate``); the
table gives the mean return per seed and over seeds (Moving: the share of episodes that stop in
the target is counted by the environment, in the same number of greedy episodes).

    python examples/composite_vs_workarounds.py --task golf              # 3 seeds, 60,000 steps
    python examples/composite_vs_workarounds.py --task striker --seeds 0 1 --steps 20000 \\
        --methods composite flat-box
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import yaml
from gymnasium import spaces

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from golf import Golf
from hybrid_moving import MovingParametrized
from striker import Striker

from ppo_envkit import PPO, TrainConfig, register_env
from ppo_envkit.algo.heads import BetaHead

#: Grid points of a one-parameter choice in the discretized workaround (evenly spaced in
#: [-1, 1]); a choice with two parameters gets LEVELS_2D points along each (LEVELS_2D ** 2).
LEVELS = 21
LEVELS_2D = 7


def _grid(box: spaces.Box) -> np.ndarray:
    """The parameter values of one choice in the discretized workaround, ``[points, size]``,
    evenly spaced between the box's bounds (a choice without parameters: one point)."""
    size = int(np.prod(box.shape))
    levels = LEVELS if size == 1 else LEVELS_2D
    low, high = box.low.reshape(-1), box.high.reshape(-1)
    axes = [np.linspace(low[j], high[j], levels, dtype=np.float32) for j in range(size)]
    points = list(itertools.product(*axes))
    return np.array(points, dtype=np.float32).reshape(len(points), size)


def _boxes(env: gym.Env) -> tuple[spaces.Box, ...]:
    return tuple(env.action_space.spaces[1].spaces)


def discretized(base: type[gym.Env]) -> type[gym.Env]:
    """``base`` with one Discrete action: every (choice, grid point of its parameters) pair."""

    class Discretized(base):
        def __init__(self, render_mode: str | None = None):
            super().__init__(render_mode)
            self._boxes = _boxes(self)
            self._table = [(c, v) for c, box in enumerate(self._boxes) for v in _grid(box)]
            self.action_space = spaces.Discrete(len(self._table))

        def step(self, action):
            choice, value = self._table[int(action)]
            params = tuple(
                value.reshape(box.shape) if c == choice else np.zeros(box.shape, np.float32)
                for c, box in enumerate(self._boxes)
            )
            return super().step((choice, params))

    Discretized.__name__ = f"{base.__name__}Discretized"
    return Discretized


def flat_box(base: type[gym.Env]) -> type[gym.Env]:
    """``base`` with one Box: the choice is the argmax of the first k values, the parameters the rest."""

    class FlatBox(base):
        def __init__(self, render_mode: str | None = None):
            super().__init__(render_mode)
            self._boxes = _boxes(self)
            self._sizes = [int(np.prod(box.shape)) for box in self._boxes]
            k = len(self._boxes)
            self.action_space = spaces.Box(-1.0, 1.0, shape=(k + sum(self._sizes),), dtype=np.float32)

        def step(self, action):
            action = np.asarray(action, np.float32)
            k = len(self._boxes)
            ends = np.cumsum([k, *self._sizes])
            params = tuple(
                action[ends[c] : ends[c + 1]].reshape(box.shape) for c, box in enumerate(self._boxes)
            )
            return super().step((int(np.argmax(action[:k])), params))

    FlatBox.__name__ = f"{base.__name__}FlatBox"
    return FlatBox


#: task -> (environment id, its class, max episode steps, what counts as a success); Moving
#: ends its episodes itself (after 200 steps, with -1)
TASKS = {
    "golf": ("Golf-v0", Golf, 10, "holed"),
    "striker": ("Striker-v0", Striker, 10, "goal"),
    "moving": ("MovingParam-v0", MovingParametrized, None, "stopped"),
}
#: environment id -> its class (the composite task's and the workarounds')
CLASSES: dict[str, type[gym.Env]] = {}
for _env_id, _cls, _limit, _ in TASKS.values():
    _name = _env_id.removesuffix("-v0")
    CLASSES[_env_id] = _cls
    CLASSES[f"{_name}Discretized-v0"] = discretized(_cls)
    CLASSES[f"{_name}FlatBox-v0"] = flat_box(_cls)
    register_env(f"{_name}Discretized-v0", max_episode_steps=_limit)(CLASSES[f"{_name}Discretized-v0"])
    register_env(f"{_name}FlatBox-v0", max_episode_steps=_limit)(CLASSES[f"{_name}FlatBox-v0"])

#: method -> (environment id suffix, policy settings)
METHODS = {
    "composite": ("", {}),
    "composite-all": ("", {"composite_params": "all"}),
    "composite-conditional": (
        "",
        {"composite": "conditional", "composite_params": "chosen", "composite_std": "fixed"},
    ),
    "composite-state-std": ("", {"composite_std": "state"}),
    "composite-fixed-std": ("", {"composite_std": "fixed"}),
    "composite-beta": ("", {"box_distribution": "beta"}),
    "composite-censored": ("", {"box_distribution": "gaussian-censored"}),
    "composite-beta-softplus": ("", {"box_distribution": "beta-softplus"}),
    "discretized": ("Discretized", {}),
    "flat-box": ("FlatBox", {}),
}


def run(task: str, method: str, seed: int, steps: int, episodes: int, policy: dict | None = None):
    """(mean return of ``episodes`` deterministic episodes, share of successes, seconds of training,
    the mean return of the same episodes with each Beta part's mean as its greedy action: None
    without Beta parts)."""
    base_id = TASKS[task][0]
    suffix, settings = METHODS[method]
    env_id = base_id.replace("-v0", f"{suffix}-v0")
    config = TrainConfig.model_validate(
        {
            "env": {"id": env_id, "num_envs": 8},
            "policy": {**settings, **(policy or {})},
            "run": {"seed": seed, "total_timesteps": steps},
        }
    )
    agent = PPO(env_id, config=config)
    start = time.perf_counter()
    agent.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    result = agent.evaluate(episodes, seed=1000 + seed)
    returns = np.asarray(result.returns, dtype=np.float64)
    share = float((returns > 0.5).mean())
    if task == "moving":  # a return does not tell a stop in the target; the environment does
        share = _goal_share(agent, CLASSES[env_id](), episodes, 1000 + seed)
    betas = [m for m in agent.policy.head.modules() if isinstance(m, BetaHead)]
    by_mean = None
    if betas:
        for head in betas:
            head.greedy = "mean"
        by_mean = float(np.mean(agent.evaluate(episodes, seed=1000 + seed).returns))
        for head in betas:
            head.greedy = BetaHead.greedy
    agent.close()
    return float(returns.mean()), share, seconds, by_mean


def _goal_share(agent: PPO, env: gym.Env, episodes: int, seed: int) -> float:
    """Share of ``episodes`` deterministic episodes that end with ``info["goal"]``."""
    goals = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(agent.predict(obs, deterministic=True))
            done = terminated or truncated
        goals += bool(info["goal"])
    return goals / episodes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="golf", choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--policy",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="policy settings for every method (e.g. log_std_init=-1.0), to try what they change",
    )
    args = parser.parse_args(argv)
    policy = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.policy)}
    gym.logger.min_level = 40
    success = TASKS[args.task][3]
    rows = []
    for method in args.methods:
        scores = []
        for seed in args.seeds:
            mean, share, seconds, by_mean = run(args.task, method, seed, args.steps, args.episodes, policy)
            scores.append(mean)
            line = f"{method:22s} seed {seed}: return {mean:6.3f}  {success} {share:4.0%}  ({seconds:.0f} s)"
            also = "" if by_mean is None else f"  (Beta's mean played: {by_mean:6.3f})"
            print(line + also, flush=True)
        rows.append((method, scores))
    print(f"\n{TASKS[args.task][0]}, {args.steps:,} steps, {args.episodes} deterministic episodes per seed")
    print(f"{'method':22s} {'mean':>7s} {'std':>6s}  per seed")
    for method, scores in rows:
        std = statistics.stdev(scores) if len(scores) > 1 else 0.0
        each = " ".join(f"{s:6.3f}" for s in scores)
        print(f"{method:22s} {statistics.mean(scores):7.3f} {std:6.3f}  {each}")


if __name__ == "__main__":
    main()
