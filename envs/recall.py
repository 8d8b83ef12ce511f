"""Recall: a cue shown once, asked for later. Solving it needs memory.

At the first step the observation shows one of ``cues`` cues (a one-hot code); then
``delay`` steps show nothing (all zeros); then a question flag appears and the agent must
answer with the action equal to the cue: +1 if right, 0 if wrong, and the episode ends.
Actions before the question change nothing. Episodes last ``delay + 2`` steps.

A feed-forward policy sees the same observation at the question whatever the cue was, so
it cannot beat chance: 1 / cues (0.25 with the default 4 cues). A recurrent policy
(``--set policy.recurrent=lstm``, or the ``recall`` preset) remembers the cue and answers
right nearly every time. The threshold is 0.95 (answered right in 95% of episodes).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env

COLORS = np.array(
    [[230, 80, 70], [70, 170, 90], [70, 120, 230], [240, 200, 60], [170, 90, 200], [60, 200, 200]]
)


@register_env("Recall-v0", reward_threshold=0.95, preset="recall")
class Recall(gym.Env):
    """Remember the cue of the first step; answer with it when asked."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, cues: int = 4, delay: int = 10, render_mode: str | None = None):
        if not 2 <= cues <= len(COLORS):
            raise ValueError(f"cues must be between 2 and {len(COLORS)}, got {cues}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.cues, self.delay, self.render_mode = cues, delay, render_mode
        # [one-hot cue (first step only), question flag (last step only)]
        self.observation_space = spaces.Box(0.0, 1.0, (cues + 1,), np.float32)
        self.action_space = spaces.Discrete(cues)
        self._cue = 0
        self._t = 0
        self._answer: int | None = None

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.cues + 1, np.float32)
        if self._t == 0:
            obs[self._cue] = 1.0
        if self._t == self.delay + 1:
            obs[-1] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.cues))
        self._t = 0
        self._answer = None
        return self._obs(), {}

    def step(self, action):
        action = int(action)
        if not 0 <= action < self.cues:
            raise ValueError(f"action {action} is outside 0..{self.cues - 1}")
        if self._t == self.delay + 1:  # the question: answer
            self._answer = action
            correct = action == self._cue
            return self._obs(), float(correct), True, False, {"correct": correct, "cue": self._cue}
        self._t += 1
        return self._obs(), 0.0, False, False, {}

    def render(self):
        """The steps as boxes: the cue's colour first, grey while waiting, the answer last."""
        cell, n = 24, self.delay + 2
        frame = np.full((cell + 16, n * cell + 8, 3), 30, np.uint8)
        for k in range(n):
            x = 4 + k * cell
            if k == 0:
                color = COLORS[self._cue] if self._t == 0 else (90, 90, 90)  # shown once
            elif k == n - 1 and self._answer is not None:
                color = COLORS[self._answer]
            elif k == n - 1:
                color = (200, 200, 200) if self._t == n - 1 else (60, 60, 60)
            else:
                color = (110, 110, 110) if k <= self._t else (60, 60, 60)
            frame[8 : 8 + cell - 4, x : x + cell - 4] = color
        return frame
