"""Striker: a second parametrized action space, a shot on goal in the style of Goal.

Where Golf (``envs/golf.py``) gives every choice one parameter, Striker mixes sizes, as the
Goal benchmark of Masson et al. (2016) does: the action is
``Tuple((Discrete(3), Tuple((Box(2), Box(1), Box(1)))))``, a choice and the parameters of
each choice, of which the environment uses the chosen one's only:

* ``dribble(dx, dy)``: move the ball by up to 1.5 along each axis (give or take 0.1);
* ``shoot_left(y)``: shoot at a point of the goal line on the keeper's left, ``y`` in [0, 2];
* ``shoot_right(y)``: the same on the right, ``y`` in [-2, 0].

The goal mouth is ``|y| < 1.5`` on the line ``x = 10``; the keeper stands at a random place of
it and saves a shot that arrives within its reach. The farther the shot, the wider it
scatters (a normal spread of 0.1 per unit of distance) and the more the keeper reaches
(0.4 + 0.1 per unit). A shot ends the episode: +1 for a goal, 0 otherwise; each dribble
costs 0.02. At most 10 actions. The ball starts 5 to 10 from the goal line, up to 4 to the
side.

Good play dribbles close (to 1 from the line, the nearest the ball may go) and towards the
middle, then shoots at the side of the mouth away from the keeper, inside the post: a policy
that does it scores about 0.77 (one that shoots at once, with the best aim: about 0.4;
random play: 0.18).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

#: Names of the choices (viewers show them).
ACTIONS = ("dribble", "shoot_left", "shoot_right")
GOAL_X = 10.0
HALF_WIDTH = 1.5
DRIBBLE = 1.5
DRIBBLE_NOISE = 0.1
NEAREST = 1.0
SPREAD = 0.1
REACH, REACH_PER_UNIT = 0.4, 0.1
DRIBBLE_COST = 0.02
MAX_ACTIONS = 10
SIDE = 5.0


@register_env("Striker-v0", max_episode_steps=MAX_ACTIONS, reward_threshold=0.8)
class Striker(gym.Env):
    """Dribble, then shoot past the keeper: a choice of action, each with its own parameters."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    action_names = list(ACTIONS)

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.action_space = spaces.Tuple(
            (
                spaces.Discrete(len(ACTIONS)),
                spaces.Tuple(
                    (
                        spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32),
                        spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
                        spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
                    )
                ),
            )
        )
        # distance to the goal line / 10, the ball's side / 5, the keeper's place / 1.5, actions / 10
        self.observation_space = spaces.Box(-2.0, 2.0, shape=(4,), dtype=np.float32)
        self._ball = np.zeros(2)
        self._keeper = 0.0
        self._actions = 0

    def _obs(self) -> np.ndarray:
        x, y = self._ball
        values = [(GOAL_X - x) / 10.0, y / SIDE, self._keeper / HALF_WIDTH, self._actions / MAX_ACTIONS]
        return np.array(values, dtype=np.float32).clip(-2.0, 2.0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        self._ball = np.array([GOAL_X - rng.uniform(5.0, 10.0), rng.uniform(-4.0, 4.0)])
        self._keeper = float(rng.uniform(-1.0, 1.0))
        self._actions = 0
        return self._obs(), {}

    def _shot(self, aim: float) -> bool:
        """Whether a shot aimed at ``(GOAL_X, aim)`` goes in past the keeper."""
        distance = float(np.hypot(GOAL_X - self._ball[0], aim - self._ball[1]))
        y = aim + SPREAD * distance * float(self.np_random.normal())
        reach = REACH + REACH_PER_UNIT * distance
        return abs(y) < HALF_WIDTH and abs(y - self._keeper) > reach

    def step(self, action):
        choice, params = action
        choice = int(choice)
        p = np.clip(np.asarray(params[choice], dtype=np.float64).reshape(-1), -1.0, 1.0)
        self._actions += 1
        if choice == 0:
            move = DRIBBLE * p + DRIBBLE_NOISE * self.np_random.normal(size=2)
            self._ball = self._ball + move
            self._ball[0] = min(self._ball[0], GOAL_X - NEAREST)
            self._ball[1] = float(np.clip(self._ball[1], -SIDE, SIDE))
            return self._obs(), -DRIBBLE_COST, False, False, {"goal": False}
        # shoot_left aims at y in [0, 2], shoot_right at y in [-2, 0]
        aim = (1.0 + float(p[0])) if choice == 1 else -(1.0 + float(p[0]))
        goal = self._shot(aim)
        return self._obs(), float(goal), True, False, {"goal": goal}

    def render(self) -> np.ndarray | None:
        """The half field from above: the goal line on the right, keeper dark, ball white."""
        if self.render_mode != "rgb_array":
            return None
        height, width = 200, 220
        frame = np.zeros((height, width, 3), np.uint8)
        frame[...] = (60, 140, 60)

        def pixel(x: float, y: float) -> tuple[int, int]:
            col = int(np.clip(x / (GOAL_X + 1.0) * (width - 1), 0, width - 1))
            row = int(np.clip((SIDE - y) / (2 * SIDE) * (height - 1), 0, height - 1))
            return row, col

        top, line = pixel(GOAL_X, HALF_WIDTH)
        bottom, _ = pixel(GOAL_X, -HALF_WIDTH)
        frame[top : bottom + 1, line : line + 3] = (240, 240, 240)
        row, col = pixel(GOAL_X, self._keeper)
        frame[max(row - 4, 0) : row + 5, max(col - 3, 0) : col + 3] = (20, 30, 120)
        row, col = pixel(*self._ball)
        frame[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = (250, 250, 250)
        return frame
