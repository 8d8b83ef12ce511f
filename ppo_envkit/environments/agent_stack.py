"""Several agents acting at once: a PettingZoo ``ParallelEnv`` as one Gymnasium environment.

:class:`AgentStack` stacks the agents in the environment's ``possible_agents`` order: its
observation and action are ``[A, ...]`` (``A = len(possible_agents)``, fixed for the whole
run), so that everything that steps Gymnasium environments (vectorization in this process, in
worker processes with shared memory, in shards; episodes, seeds and exact-resume replay) works
per copy unchanged. The collector splits each copy's stack into ``A`` rows of one shared policy
(built from the *agent* spaces: :attr:`AgentStack.agent_observation_space`, ...).

What one step says, besides the stacked observation:

* ``info["agent_active"]`` (bool ``[A]``): the agents the returned observation is live for
  (they act next). An agent that has not joined yet or is gone has a row of zeros, and its
  action is not sent to the environment. At the step an agent ends, its row is its final
  observation (as Gymnasium returns a terminal observation), so a truncated agent can be
  bootstrapped from it; it is not active any more.
* ``info["agent_rewards"]``, ``info["agent_terminated"]``, ``info["agent_truncated"]`` (``[A]``):
  each agent's reward and end at this step. An agent that vanishes from ``env.agents`` without
  a flag counts as terminated.
* ``info["action_mask"]`` (``[A, k]``, when the environment uses PettingZoo's
  ``{"observation", "action_mask"}`` dict observations): each agent's legal actions (all legal
  for an agent that is not active).
* The Gymnasium reward is the mean over agents of this step's rewards, so an episode's return
  is the mean per-agent return. The episode ends when no agent is left: truncated when the
  last ones were all truncated, terminated otherwise.

Agents whose observation or action spaces differ are refused (one shared policy needs one
pair of spaces).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import batch_space

from ..errors import ConfigError

__all__ = ["AgentIds", "AgentSpaces", "AgentStack", "agent_spaces"]


class AgentSpaces(NamedTuple):
    """One agent's spaces and how many agents a several-agent environment stacks."""

    observation_space: spaces.Space
    action_space: spaces.Space
    num_agents: int


def agent_spaces(env: Any) -> AgentSpaces | None:
    """The agent spaces of an :class:`AgentStack` (wrapped or not), None for any other
    environment (one agent)."""
    try:
        obs = env.get_wrapper_attr("agent_observation_space")
        act = env.get_wrapper_attr("agent_action_space")
        num = env.get_wrapper_attr("num_agents")
    except AttributeError:
        return None
    return AgentSpaces(obs, act, int(num))


def _is_masked_dict(space: spaces.Space) -> bool:
    return isinstance(space, spaces.Dict) and set(space.spaces) == {"observation", "action_mask"}


class AgentStack(gym.Env):
    """A PettingZoo ``ParallelEnv`` whose agents are stacked ``[A, ...]`` (module docstring)."""

    def __init__(self, env: Any):
        self.par = env
        self.agent_names: list[str] = list(env.possible_agents)
        self.num_agents = len(self.agent_names)
        if self.num_agents == 0:
            raise ConfigError(f"{type(env).__name__} has no possible_agents")
        obs_spaces = [env.observation_space(a) for a in self.agent_names]
        act_spaces = [env.action_space(a) for a in self.agent_names]
        for kind, group in (("observation", obs_spaces), ("action", act_spaces)):
            if any(s != group[0] for s in group[1:]):
                other = next(i for i, s in enumerate(group) if s != group[0])
                raise ConfigError(
                    f"{type(env).__name__}: agents {self.agent_names[0]} and {self.agent_names[other]} have "
                    f"different {kind} spaces ({group[0]} and {group[other]}); ppo-envkit trains one "
                    "shared policy, which needs the same spaces for every agent"
                )
        self._masked = _is_masked_dict(obs_spaces[0])
        self.agent_observation_space = obs_spaces[0]["observation"] if self._masked else obs_spaces[0]
        self.agent_action_space = act_spaces[0]
        if self._masked and not isinstance(self.agent_action_space, spaces.Discrete):
            raise ConfigError(
                f"{type(env).__name__}: action masks of agents are supported for Discrete actions, not "
                f"{self.agent_action_space}"
            )
        self.observation_space = batch_space(self.agent_observation_space, self.num_agents)
        self.action_space = batch_space(self.agent_action_space, self.num_agents)
        self.metadata = dict(getattr(env, "metadata", {}) or {})
        self.render_mode = getattr(env, "render_mode", None)
        self._index = {a: k for k, a in enumerate(self.agent_names)}
        self._zero = np.zeros(self.observation_space.shape, self.observation_space.dtype)
        self._live = np.zeros(self.num_agents, bool)
        #: The per-agent arrays every reset and step puts in its info (shape and dtype of one
        #: copy's), so that a vector of copies in other processes can carry them in shared
        #: memory (:class:`~ppo_envkit.parallel.vector.ShardedVectorEnv`).
        self.info_arrays: dict[str, tuple[tuple[int, ...], Any]] = {
            "agent_active": ((self.num_agents,), np.dtype(bool)),
            "agent_rewards": ((self.num_agents,), np.dtype(np.float32)),
            "agent_terminated": ((self.num_agents,), np.dtype(bool)),
            "agent_truncated": ((self.num_agents,), np.dtype(bool)),
        }

    # ------------------------------------------------------------------------ stacking

    def _stack(self, obs: dict[str, Any], keep: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The ``[A, ...]`` observation of the agents in ``keep`` (zeros elsewhere), and the masks."""
        out = self._zero.copy()
        masks = np.ones((self.num_agents, int(self.agent_action_space.n)), bool) if self._masked else None
        for agent, value in obs.items():
            k = self._index[agent]
            if not keep[k]:
                continue
            if self._masked:
                out[k] = value["observation"]
                assert masks is not None
                masks[k] = np.asarray(value["action_mask"]).astype(bool)
                if not masks[k].any():  # a final state may allow nothing: no action is taken there
                    masks[k] = True
            else:
                out[k] = value
        return out, masks

    def _info(self, masks: np.ndarray | None, **arrays: np.ndarray) -> dict[str, Any]:
        info: dict[str, Any] = {"agent_active": self._live.copy(), **arrays}
        if masks is not None:
            info["action_mask"] = masks
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, _ = self.par.reset(seed=seed, options=options)
        self._live = np.zeros(self.num_agents, bool)
        for agent in self.par.agents:
            self._live[self._index[agent]] = True
        stacked, masks = self._stack(obs, self._live)
        zeros = np.zeros(self.num_agents, np.float32)
        flags = np.zeros(self.num_agents, bool)
        info = self._info(masks, agent_rewards=zeros, agent_terminated=flags, agent_truncated=flags.copy())
        return stacked, info

    def step(self, action: Any):
        before = self._live
        actions = {a: action[k] for k, a in enumerate(self.agent_names) if before[k]}
        obs, rewards, terminations, truncations, _ = self.par.step(actions)
        live = np.zeros(self.num_agents, bool)
        for agent in self.par.agents:
            live[self._index[agent]] = True
        agent_rewards = np.zeros(self.num_agents, np.float32)
        terminated = np.zeros(self.num_agents, bool)
        truncated = np.zeros(self.num_agents, bool)
        for agent, r in rewards.items():
            agent_rewards[self._index[agent]] = r
        for agent, flag in truncations.items():
            truncated[self._index[agent]] = bool(flag)
        for agent, flag in terminations.items():
            terminated[self._index[agent]] = bool(flag)
        ended = before & (terminated | truncated | ~live)
        terminated |= ended & ~truncated  # gone without a flag: terminated
        truncated &= ended & ~terminated
        live &= ~ended
        self._live = live
        stacked, masks = self._stack(obs, live | ended)  # an agent that just ended: its final observation
        if masks is not None:
            masks[~live] = True
        done = not live.any()
        gone = ended if ended.any() else before
        episode_truncated = bool(done and truncated[gone].all())
        info = self._info(
            masks, agent_rewards=agent_rewards, agent_terminated=terminated, agent_truncated=truncated
        )
        reward = float(agent_rewards.mean())
        return stacked, reward, bool(done and not episode_truncated), episode_truncated, info

    @property
    def active_agents(self) -> np.ndarray:
        """``info["agent_active"]`` of the latest observation (after a replay, which returns
        the observation alone)."""
        return self._live.copy()

    def render(self) -> Any:
        return self.par.render()

    def close(self) -> None:
        self.par.close()


class AgentIds(gym.ObservationWrapper):
    """``env.agent_id``: each agent's one-hot index among the possible agents appended to its
    (flat ``Box``) observation, so that one shared policy can act differently per agent."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        layout = agent_spaces(env)
        assert layout is not None
        space, num = layout.observation_space, layout.num_agents
        if not isinstance(space, spaces.Box) or len(space.shape) != 1:
            raise ConfigError(
                f"env.agent_id needs flat Box observations of each agent (one dimension), not {space}"
            )
        dtype = np.float32 if not np.issubdtype(space.dtype, np.floating) else space.dtype
        low = np.concatenate([space.low.astype(dtype), np.zeros(num, dtype)])
        high = np.concatenate([space.high.astype(dtype), np.ones(num, dtype)])
        self.agent_observation_space = spaces.Box(low, high, dtype=dtype)
        self.observation_space = batch_space(self.agent_observation_space, num)
        self._ids = np.eye(num, dtype=dtype)

    def observation(self, observation: Any) -> np.ndarray:
        return np.concatenate([np.asarray(observation, self._ids.dtype), self._ids], axis=1)
