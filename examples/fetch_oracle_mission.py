"""MiniGrid Fetch with its mission replaced by an oracle one-hot code of the target (colour,
type): the most any text encoding could tell the policy, to tell the encoding apart from the
learning. The command is in docs/observations.md (run it from this folder, so that
``env.wrappers=fetch_oracle_mission:OracleMission`` imports this module).
"""

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_NAMES

#: Fetch's object types (its colours are minigrid's COLOR_NAMES)
TYPES = ["key", "ball"]


class OracleMission(gym.ObservationWrapper):
    def __init__(self, env):
        super().__init__(env)
        spaces = dict(env.observation_space.spaces)
        spaces["mission"] = gym.spaces.Box(0, 1, (len(COLOR_NAMES) + len(TYPES),), np.float32)
        self.observation_space = gym.spaces.Dict(spaces)

    def observation(self, obs):
        u = self.env.unwrapped
        code = np.zeros(len(COLOR_NAMES) + len(TYPES), np.float32)
        code[COLOR_NAMES.index(u.targetColor)] = 1
        code[len(COLOR_NAMES) + TYPES.index(u.targetType)] = 1
        return {**obs, "mission": code}
