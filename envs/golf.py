"""Golf: a parametrized action space (a discrete choice of club, each with its own power).

An example of a composite action space, the kind that Platform and Goal (Masson et al.,
2016) made known: the action is ``Tuple((Discrete(3), Tuple((Box, Box, Box))))``, a club
(drive, chip, putt) and one signed power in [-1, 1] per club, of which the environment
uses the chosen club's only. That is the layout ``policy.composite_params`` reads (``auto``,
the default, and ``chosen``): the i-th Box belongs to choice i.

The ball and the hole lie on a line. A drive moves the ball by up to 8 (give or take 10 %
of the shot), a chip by up to 2.5 (give or take 4 %), a putt by up to 0.6, exactly; the
ball is holed when it stops within 0.05 of the hole (+1, the episode ends). Each stroke
costs 0.05, and moving the ball closer is rewarded by the distance gained / 10 (further:
the same, negative). At most 10 strokes. The hole starts 2 to 14 away.

Good play is a drive or two, a chip, and a putt with the right power: a policy that can set
its power finely holes out in about 3 strokes (a return of about 1.9); one whose powers come
in coarse steps keeps missing the hole by a fraction of a step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

#: Club: (name, longest shot, relative spread of the shot)
CLUBS = (("drive", 8.0, 0.10), ("chip", 2.5, 0.04), ("putt", 0.6, 0.0))
HOLE_RADIUS = 0.05
STROKE_COST = 0.05
MAX_STROKES = 10
SCALE = 10.0


@register_env("Golf-v0", max_episode_steps=MAX_STROKES, reward_threshold=1.7)
class Golf(gym.Env):
    """Hole out on a line: choose a club and the power of the shot."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    #: Names of the choices (viewers show them).
    action_names = [name for name, _, _ in CLUBS]

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        power = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Tuple((spaces.Discrete(len(CLUBS)), spaces.Tuple((power,) * len(CLUBS))))
        # (hole - ball) / 10, its size, strokes played / 10
        self.observation_space = spaces.Box(-2.0, 2.0, shape=(3,), dtype=np.float32)
        self._ball = 0.0
        self._hole = 0.0
        self._strokes = 0

    def _obs(self) -> np.ndarray:
        gap = (self._hole - self._ball) / SCALE
        return np.array([gap, abs(gap), self._strokes / MAX_STROKES], dtype=np.float32).clip(-2.0, 2.0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ball = 0.0
        self._hole = float(self.np_random.uniform(2.0, 14.0)) * float(self.np_random.choice((-1.0, 1.0)))
        self._strokes = 0
        return self._obs(), {}

    def step(self, action):
        club, powers = action
        club = int(club)
        _, longest, spread = CLUBS[club]
        power = float(np.clip(np.asarray(powers[club], dtype=np.float64).reshape(-1)[0], -1.0, 1.0))
        before = abs(self._hole - self._ball)
        shot = longest * power
        if spread:
            shot *= 1.0 + spread * float(self.np_random.uniform(-1.0, 1.0))
        self._ball += shot
        self._strokes += 1
        after = abs(self._hole - self._ball)
        reward = (before - after) / SCALE - STROKE_COST
        holed = after <= HOLE_RADIUS
        if holed:
            reward += 1.0
        return self._obs(), float(reward), holed, False, {"holed": holed}

    def render(self) -> np.ndarray | None:
        """The line from -16 to 16 seen from above: the hole dark, the ball white."""
        if self.render_mode != "rgb_array":
            return None
        height, width = 64, 384
        frame = np.zeros((height, width, 3), np.uint8)
        frame[...] = (60, 140, 60)

        def column(x: float) -> int:
            return int(np.clip((x + 16.0) / 32.0 * (width - 1), 0, width - 1))

        hole, ball = column(self._hole), column(self._ball)
        frame[height // 2 - 5 : height // 2 + 6, max(hole - 5, 0) : hole + 6] = (20, 30, 20)
        frame[height // 2 - 2 : height // 2 + 3, max(ball - 2, 0) : ball + 3] = (250, 250, 250)
        return frame
