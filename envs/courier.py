"""Courier: pick up a parcel on a grid and deliver it. Dict observations, MultiDiscrete actions.

An example of spaces beyond a flat Box and a single Discrete:

* the observation is a ``Dict``: the courier's, the parcel's and the drop-off's
  positions (each a ``Box`` of two coordinates scaled to [0, 1]) and whether the
  parcel is on board (a ``Discrete(2)``, one-hot encoded by the policy);
* the action is ``MultiDiscrete([3, 3])``: a horizontal and a vertical move, each
  -1, 0 or +1, chosen together (diagonal moves included), so the policy has one
  categorical head per axis.

The grid is 6 x 6. Stepping onto the parcel picks it up (+0.5); stepping onto the
drop-off with it delivers it (+1, the episode ends). Each step costs 0.02, and
episodes last at most 40 steps. A random policy scores about -0.6 and the shortest
route about 1.38 on average: the threshold of 1.3 means near-shortest deliveries.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

SIZE = 6
STEP_COST = 0.02
PICKUP_REWARD = 0.5
DELIVERY_REWARD = 1.0


@register_env("Courier-v0", max_episode_steps=40, reward_threshold=1.3, preset="courier")
class Courier(gym.Env):
    """Deliver a parcel on a 6 x 6 grid, moving on both axes at once."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        position = spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "courier": position,
                "parcel": position,
                "dropoff": position,
                "loaded": spaces.Discrete(2),
            }
        )
        self.action_space = spaces.MultiDiscrete([3, 3])
        self._courier = np.zeros(2, dtype=np.int64)
        self._parcel = np.zeros(2, dtype=np.int64)
        self._dropoff = np.zeros(2, dtype=np.int64)
        self._loaded = False

    def _obs(self) -> dict:
        scale = np.float32(SIZE - 1)
        parcel = self._courier if self._loaded else self._parcel
        return {
            "courier": (self._courier / scale).astype(np.float32),
            "parcel": (parcel / scale).astype(np.float32),
            "dropoff": (self._dropoff / scale).astype(np.float32),
            "loaded": int(self._loaded),
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        cells = self.np_random.choice(SIZE * SIZE, size=3, replace=False)
        self._courier, self._parcel, self._dropoff = (np.array(divmod(int(c), SIZE)) for c in cells)
        self._loaded = False
        return self._obs(), {}

    def step(self, action):
        move = np.asarray(action, dtype=np.int64).reshape(2) - 1  # {0, 1, 2} -> {-1, 0, +1}
        self._courier = np.clip(self._courier + move, 0, SIZE - 1)
        reward = -STEP_COST
        delivered = False
        if not self._loaded and np.array_equal(self._courier, self._parcel):
            self._loaded = True
            reward += PICKUP_REWARD
        elif self._loaded and np.array_equal(self._courier, self._dropoff):
            delivered = True
            reward += DELIVERY_REWARD
        return self._obs(), reward, delivered, False, {"loaded": self._loaded}

    def render(self):
        """The grid: drop-off green, parcel brown, courier blue (yellow-rimmed when loaded)."""
        if self.render_mode != "rgb_array":
            return None
        cell = 32
        frame = np.full((SIZE * cell, SIZE * cell, 3), 235, dtype=np.uint8)
        frame[::cell, :] = frame[:, ::cell] = 190  # grid lines

        def fill(pos: np.ndarray, color: tuple[int, int, int], margin: int) -> None:
            row, col = int(pos[0]) * cell, int(pos[1]) * cell
            frame[row + margin : row + cell - margin, col + margin : col + cell - margin] = color

        fill(self._dropoff, (80, 180, 90), 2)
        if not self._loaded:
            fill(self._parcel, (150, 100, 50), 9)
        if self._loaded:
            fill(self._courier, (240, 200, 40), 4)
        fill(self._courier, (40, 90, 200), 7)
        return frame
