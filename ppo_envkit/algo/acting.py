"""Acting with a policy outside training: raw observations in, environment actions out.

:func:`predict` is ``PPO.predict`` without the facade: a recurrent policy takes the user's
state (a numpy array) and returns the next one. :class:`EpisodeActor` keeps that state
between calls for whoever plays episodes (evaluation, ``agent.stateful()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .policy import ActorCritic
from .recurrent import Memory


def user_memory(policy: ActorCritic, state: np.ndarray | None, episode_start: Any, batch: int) -> Memory:
    """A :class:`Memory` from a user's state and episode starts, checked."""
    memory = policy.initial_memory(batch)
    if state is not None:
        array = np.asarray(state, dtype=np.float32).reshape(-1, policy.state_size)
        if array.shape[0] != batch:
            raise ValueError(
                f"state holds {array.shape[0]} recurrent states of {policy.state_size} values, "
                f"for {batch} observations"
            )
        memory.state = torch.from_numpy(array).to(policy.device)
        memory.starts = torch.zeros_like(memory.starts)
    if episode_start is not None:
        starts = np.asarray(episode_start, dtype=bool).reshape(-1)
        memory.starts = torch.from_numpy(np.broadcast_to(starts, (batch,)).copy()).to(policy.device)
    return memory


def predict(
    policy: ActorCritic,
    generator: torch.Generator,
    obs: Any,
    deterministic: bool = True,
    action_mask: Any = None,
    state: np.ndarray | None = None,
    episode_start: Any = None,
) -> Any:
    """Action(s) for raw observation(s); ``(action, state)`` for a recurrent policy."""
    if not policy.recurrent:
        if state is not None or episode_start is not None:
            raise ValueError("this agent has no memory (policy.recurrent is none): predict takes no state")
        return policy.predict(obs, deterministic, generator, action_mask=action_mask)
    batched = policy.flattener.is_batched(obs)
    memory = user_memory(policy, state, episode_start, policy.flattener.batch_size(obs))
    action = policy.predict(obs, deterministic, generator, action_mask=action_mask, memory=memory)
    new_state = memory.state.cpu().numpy()
    return action, new_state if batched else new_state[0]


class EpisodeActor:
    """Acts in episodes, keeping a recurrent policy's state between calls::

        actor = agent.stateful()
        obs, info = env.reset(seed=0)
        while True:
            obs, reward, terminated, truncated, info = env.step(actor(obs))
            if terminated or truncated:
                obs, info = env.reset()
                actor.reset()

    For a batch of copies, pass ``episode_start`` (True where an episode just began) instead
    of calling :meth:`reset`. A feed-forward policy works too (there is nothing to keep).
    """

    def __init__(self, policy: ActorCritic, generator: torch.Generator, deterministic: bool = True):
        self.policy, self.generator, self.deterministic = policy, generator, deterministic
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        """The next call starts new episodes."""
        self.state = None

    def __call__(self, obs: Any, action_mask: Any = None, episode_start: Any = None) -> Any:
        if not self.policy.recurrent:
            return predict(self.policy, self.generator, obs, self.deterministic, action_mask)
        action, self.state = predict(
            self.policy,
            self.generator,
            obs,
            self.deterministic,
            action_mask,
            state=self.state,
            episode_start=episode_start,
        )
        return action


__all__ = ["EpisodeActor", "predict", "user_memory"]
