"""Moving-v0 of gym-hybrid (thomashirtz/gym-hybrid), written again from its published description.

A third parametrized-action task for ``composite_vs_workarounds.py``, whose rules nobody here
chose. gym-hybrid is not on PyPI (``pip download --no-deps gym-hybrid`` finds nothing) and it
targets the old ``gym`` API, so this module follows the README's description (with the
package's default settings) instead of wrapping the package:

* the field is the square ``[-1, 1]^2``; a target circle of radius 0.1 lies inside it
  (centre uniform in ``[-0.9, 0.9]^2``); the agent starts anywhere on the field, at rest,
  facing a uniform direction;
* three actions: ``accelerate(a)``, ``a`` in [0, 1], adds ``0.5 a`` to the speed; ``turn(r)``,
  ``r`` in [-1, 1], turns the heading by ``r pi/2``; ``break`` (their spelling) lowers the
  speed by 0.1 (to 0 below that). After every action the agent moves by ``0.005 * speed``
  along its heading;
* reward: the distance to the target before the step minus after it, minus 0.001; +1 more,
  and the episode ends, when the agent stops (speed 0) inside the target; -1 (instead of the
  step's reward), and the end, when it leaves the field or after 200 steps;
* the 10 observations: position (x, y), speed, heading (cos, sin), target (x, y), distance,
  whether inside the target (0 / 1), step / 200.

The published action is ``(action_id, [acceleration, rotation])``, the environment reading
the chosen action's parameter only (break has none). :class:`Moving` declares that space;
:class:`MovingParametrized` (``MovingParam-v0``) declares the same actions in the
parametrized layout the composite head reads (a choice and one Box per choice:
``Box(1)`` in [0, 1], ``Box(1)`` in [-1, 1] and a ``Box`` of no values for break).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

ACTIONS = ("accelerate", "turn", "break")
FIELD = 1.0
TARGET_RADIUS = 0.1
MAX_TURN = np.pi / 2
MAX_ACCELERATION = 0.5
BREAK_VALUE = 0.1
DELTA_T = 0.005
MAX_STEP = 200
PENALTY = 0.001


class Moving(gym.Env):
    """Stop inside the target: accelerate(a), turn(r) or break, with the published action space."""

    metadata = {"render_modes": [], "render_fps": 30}
    action_names = list(ACTIONS)

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.action_space = spaces.Tuple(
            (
                spaces.Discrete(3),
                spaces.Box(np.array([0.0, -1.0], np.float32), np.array([1.0, 1.0], np.float32)),
            )
        )
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(10,), dtype=np.float32)
        self._pos = np.zeros(2)
        self._target = np.zeros(2)
        self._theta = 0.0
        self._speed = 0.0
        self._steps = 0

    def _distance(self) -> float:
        return float(np.hypot(*(self._pos - self._target)))

    def _obs(self) -> np.ndarray:
        d = self._distance()
        values = [
            *self._pos,
            self._speed,
            np.cos(self._theta),
            np.sin(self._theta),
            *self._target,
            d,
            float(d <= TARGET_RADIUS),
            self._steps / MAX_STEP,
        ]
        return np.array(values, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng = self.np_random
        limit = FIELD - TARGET_RADIUS
        self._target = rng.uniform(-limit, limit, 2)
        self._pos = rng.uniform(-FIELD, FIELD, 2)
        self._theta = float(rng.uniform(0.0, 2 * np.pi))
        self._speed = 0.0
        self._steps = 0
        return self._obs(), {}

    def act(self, choice: int, parameter: float) -> tuple[np.ndarray, float, bool, bool, dict]:
        """One step of action ``choice`` with its parameter (ignored by break)."""
        before = self._distance()
        self._steps += 1
        if choice == 0:
            self._speed += MAX_ACCELERATION * float(np.clip(parameter, 0.0, 1.0))
        elif choice == 1:
            self._theta = (self._theta + MAX_TURN * float(np.clip(parameter, -1.0, 1.0))) % (2 * np.pi)
        else:
            self._speed = 0.0 if self._speed < BREAK_VALUE else self._speed - BREAK_VALUE
        self._pos = self._pos + DELTA_T * self._speed * np.array([np.cos(self._theta), np.sin(self._theta)])
        after = self._distance()
        if after < TARGET_RADIUS and self._speed == 0.0:
            return self._obs(), before - after - PENALTY + 1.0, True, False, {"goal": True}
        if np.any(np.abs(self._pos) > FIELD) or self._steps > MAX_STEP:
            return self._obs(), -1.0, True, False, {"goal": False}
        return self._obs(), before - after - PENALTY, False, False, {"goal": False}

    def step(self, action):
        choice, params = action
        choice = int(choice)
        values = np.asarray(params, dtype=np.float64).reshape(-1)
        return self.act(choice, float(values[choice]) if choice < 2 else 0.0)


class MovingParametrized(Moving):
    """:class:`Moving` with its actions in the parametrized layout: one Box per choice."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode)
        self.action_space = spaces.Tuple(
            (
                spaces.Discrete(3),
                spaces.Tuple(
                    (
                        spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32),
                        spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32),
                        spaces.Box(-1.0, 1.0, shape=(0,), dtype=np.float32),
                    )
                ),
            )
        )

    def step(self, action):
        choice, params = action
        choice = int(choice)
        values = np.asarray(params[choice], dtype=np.float64).reshape(-1)
        return self.act(choice, float(values[0]) if values.size else 0.0)


# Steps are counted (and ended, with -1) by the environment itself, as the original does.
register_env("Moving-v0", Moving)
register_env("MovingParam-v0", MovingParametrized)
