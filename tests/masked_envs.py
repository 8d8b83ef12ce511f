"""Environments with action masks and image observations, for tests.

Every masked environment here raises on an illegal action (as a game engine that treats
one as a bug would), so a test that completes proves none was sent.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env


class IllegalAction(ValueError):
    pass


class PickLegal(gym.Env):
    """Discrete(6): each step a random half of the actions is legal, each action has a value
    in the observation; reward = the chosen action's value. Mask from ``action_masks()``.

    Random legal play scores about 0 per step; always taking the best legal action about 0.6
    (10 steps: ~6 per episode).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    N = 6

    def __init__(self, render_mode: str | None = None, via: str = "method"):
        self.render_mode = render_mode
        self.via = via
        self.observation_space = spaces.Box(-1.0, 1.0, (2 * self.N,), np.float32)
        self.action_space = spaces.Discrete(self.N)
        self._values = np.zeros(self.N, np.float32)
        self._legal = np.ones(self.N, bool)
        self.illegal_sent = 0

    def _draw(self) -> None:
        self._values = self.np_random.uniform(-1, 1, self.N).astype(np.float32)
        self._legal = np.zeros(self.N, bool)
        self._legal[self.np_random.choice(self.N, self.N // 2, replace=False)] = True

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._values, self._legal.astype(np.float32)])

    def _info(self) -> dict:
        return {"action_mask": self._legal.copy()} if self.via == "info" else {}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._draw()
        return self._obs(), self._info()

    def step(self, action):
        action = int(action)
        if not self._legal[action]:
            raise IllegalAction(f"illegal action {action}; legal: {np.flatnonzero(self._legal).tolist()}")
        reward = float(self._values[action])
        self._draw()
        return self._obs(), reward, False, False, self._info()

    def render(self):
        return np.zeros((8, 8, 3), np.uint8)


class PickLegalMethod(PickLegal):
    def action_masks(self) -> np.ndarray:
        return self._legal.copy()


class MultiPick(gym.Env):
    """MultiDiscrete([3, 4]) with per-dimension masks in ``info["action_mask"]`` as a list of
    arrays; reward = the sum of the chosen entries' values. Illegal choices raise."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.nvec = np.array([3, 4])
        self.observation_space = spaces.Box(-1.0, 1.0, (14,), np.float32)
        self.action_space = spaces.MultiDiscrete(self.nvec)
        self._values = np.zeros(7, np.float32)
        self._legal = np.ones(7, bool)

    def _draw(self) -> None:
        self._values = self.np_random.uniform(-1, 1, 7).astype(np.float32)
        self._legal = self.np_random.random(7) < 0.5
        for lo, hi in ((0, 3), (3, 7)):
            if not self._legal[lo:hi].any():
                self._legal[lo + int(self.np_random.integers(hi - lo))] = True

    def _obs_info(self):
        obs = np.concatenate([self._values, self._legal.astype(np.float32)])
        return obs, {"action_mask": [self._legal[:3].copy(), self._legal[3:].copy()]}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._draw()
        return self._obs_info()

    def step(self, action):
        a, b = (int(x) for x in action)
        if not (self._legal[a] and self._legal[3 + b]):
            raise IllegalAction(f"illegal action {action}")
        reward = float(self._values[a] + self._values[3 + b])
        self._draw()
        obs, info = self._obs_info()
        return obs, reward, False, False, info


class BinaryPick(gym.Env):
    """MultiBinary(4) with a mask of 8 values (per entry: 0 allowed, 1 allowed) from
    ``action_masks()``; reward = sum over entries set to 1 of their values."""

    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Box(-1.0, 1.0, (12,), np.float32)
        self.action_space = spaces.MultiBinary(4)
        self._values = np.zeros(4, np.float32)
        self._mask = np.ones((4, 2), bool)

    def _draw(self) -> None:
        self._values = self.np_random.uniform(-1, 1, 4).astype(np.float32)
        kind = self.np_random.integers(0, 3, 4)  # 0: only 0, 1: only 1, 2: both
        self._mask = np.stack([kind != 1, kind != 0], 1)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self._values, self._mask.reshape(-1).astype(np.float32)])

    def action_masks(self) -> np.ndarray:
        return self._mask.reshape(-1).copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._draw()
        return self._obs(), {}

    def step(self, action):
        action = np.asarray(action).astype(int)
        if not self._mask[np.arange(4), action].all():
            raise IllegalAction(f"illegal action {action}")
        reward = float((self._values * action).sum())
        self._draw()
        return self._obs(), reward, False, False, {}


class BadMask(PickLegalMethod):
    """Masks that break the rules, by ``kind``: none legal, wrong size, floats, missing later."""

    def __init__(self, render_mode: str | None = None, kind: str = "empty", after: int = 3):
        super().__init__(render_mode)
        self.kind, self.after, self.t = kind, after, 0

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.t += 1
        return super().step(action)

    def action_masks(self):
        mask = self._legal.copy()
        if self.t < self.after:
            return mask
        if self.kind == "empty":
            return np.zeros_like(mask)
        if self.kind == "size":
            return np.ones(self.N + 1, bool)
        if self.kind == "float":
            return mask.astype(np.float32)
        raise AssertionError(self.kind)


class Spot(gym.Env):
    """Image observations: a bright square on a dark 12 x 12 picture, in the left or the right
    half; action 0 = left, 1 = right; reward 1 for the right side, one step per episode.
    ``channels_first`` gives (3, H, W) instead of (H, W, 3)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}
    SIZE = 12

    def __init__(self, render_mode: str | None = None, channels_first: bool = False):
        self.render_mode = render_mode
        self.channels_first = channels_first
        shape = (3, self.SIZE, self.SIZE) if channels_first else (self.SIZE, self.SIZE, 3)
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(2)
        self._side = 0
        self._row = 0

    def _image(self) -> np.ndarray:
        image = np.full((self.SIZE, self.SIZE, 3), 20, np.uint8)
        col = 1 if self._side == 0 else self.SIZE - 4
        image[self._row : self._row + 3, col : col + 3] = (250, 200, 60)
        return image

    def _obs(self) -> np.ndarray:
        image = self._image()
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.channels_first else image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._side = int(self.np_random.integers(2))
        self._row = int(self.np_random.integers(0, self.SIZE - 3))
        return self._obs(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self._side else 0.0
        return self._obs(), reward, True, False, {}

    def render(self):
        return np.kron(self._image(), np.ones((8, 8, 1), np.uint8))


def register_masked() -> dict[str, str]:
    """Register these environments (ids prefixed ``Masked``), return {short name: id}."""
    ids = {
        "pick": "MaskedPick-v0",
        "pick_info": "MaskedPickInfo-v0",
        "multi": "MaskedMulti-v0",
        "binary": "MaskedBinary-v0",
        "spot": "MaskedSpot-v0",
        "spot_cf": "MaskedSpotCF-v0",
    }
    register_env(ids["pick"], PickLegalMethod, max_episode_steps=10, overwrite=True)
    register_env(ids["pick_info"], PickLegal, max_episode_steps=10, overwrite=True, kwargs={"via": "info"})
    register_env(ids["multi"], MultiPick, max_episode_steps=10, overwrite=True)
    register_env(ids["binary"], BinaryPick, max_episode_steps=10, overwrite=True)
    register_env(ids["spot"], Spot, overwrite=True)
    register_env(ids["spot_cf"], Spot, overwrite=True, kwargs={"channels_first": True})
    for kind in ("empty", "size", "float"):
        ids[f"bad_{kind}"] = f"MaskedBad{kind.title()}-v0"
        register_env(ids[f"bad_{kind}"], BadMask, max_episode_steps=10, overwrite=True, kwargs={"kind": kind})
    return ids
