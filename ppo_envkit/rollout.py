"""Rollout storage and Generalized Advantage Estimation.

Conventions, for a step ``t`` of environment copy ``i``:

* ``values[t]`` is V(s_t) of the observation the action was chosen from.
* ``next_values[t]`` is V(s_{t+1}) of the *true* next observation: for a step that
  ended an episode, that is the episode's final observation, not the reset
  observation that the vector environment returns in its place.
* ``terminated[t]``: s_{t+1} is terminal; its value is 0 and is not bootstrapped.
* ``episode_end[t]``: terminated or truncated; the advantage recursion stops there.
  A truncated step still bootstraps from ``next_values[t]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def loss_advantages(
    advantages: torch.Tensor,
    norm_adv: bool,
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """A minibatch's advantages as the loss uses them: normalized by ``normalize`` (across
    ranks), else by the minibatch's own mean and std when ``norm_adv``, else unchanged."""
    if norm_adv and normalize is not None:
        return normalize(advantages)
    if norm_adv and advantages.numel() > 1:
        return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    return advantages


@torch.no_grad()
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    episode_end: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets (``advantages + values``); all tensors ``[T, N]``.

    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t``
    ``A_t = delta_t + gamma * lambda * (1 - episode_end_t) * A_{t+1}``
    """
    not_terminal = 1.0 - terminated.to(rewards.dtype)
    carry = gamma * gae_lambda * (1.0 - episode_end.to(rewards.dtype))
    deltas = rewards + gamma * not_terminal * next_values - values
    advantages = torch.empty_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages, advantages + values


class RolloutBuffer:
    """Preallocated ``[n_steps, num_envs, ...]`` storage for one rollout.

    After :meth:`finish`, :meth:`minibatches` serves shuffled minibatches from one
    packed matrix, so that each gradient step gathers all fields with one index.
    """

    FIELDS = ("logprobs", "advantages", "returns", "values")

    def __init__(self, n_steps: int, num_envs: int, obs_dim: int, action_dim: int, device: torch.device):
        self.n_steps, self.num_envs = n_steps, num_envs
        self.obs_dim, self.action_dim = obs_dim, action_dim
        shape = (n_steps, num_envs)
        f32 = {"dtype": torch.float32, "device": device}
        self.obs = torch.zeros((*shape, obs_dim), **f32)
        self.actions = torch.zeros((*shape, action_dim), **f32)
        self.logprobs = torch.zeros(shape, **f32)
        self.values = torch.zeros(shape, **f32)
        self.rewards = torch.zeros(shape, **f32)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.episode_end = torch.zeros(shape, dtype=torch.bool, device=device)
        self.truncated_values = torch.zeros(shape, **f32)  # V(final obs) where truncated
        self.truncated = torch.zeros(shape, dtype=torch.bool, device=device)
        width = obs_dim + action_dim + len(self.FIELDS)
        self.packed = torch.zeros((n_steps * num_envs, width), **f32)

    def finish(self, last_values: torch.Tensor, gamma: float, gae_lambda: float) -> dict[str, torch.Tensor]:
        """Compute GAE with ``last_values`` = V(observation after the last step); pack for training."""
        next_values = torch.cat([self.values[1:], last_values[None]], 0)
        next_values = torch.where(self.truncated, self.truncated_values, next_values)
        advantages, returns = compute_gae(
            self.rewards, self.values, next_values, self.terminated, self.episode_end, gamma, gae_lambda
        )
        d, a = self.obs_dim, self.action_dim
        packed = self.packed
        packed[:, :d] = self.obs.reshape(-1, d)
        packed[:, d : d + a] = self.actions.reshape(-1, a)
        packed[:, d + a] = self.logprobs.reshape(-1)
        packed[:, d + a + 1] = advantages.reshape(-1)
        packed[:, d + a + 2] = returns.reshape(-1)
        packed[:, d + a + 3] = self.values.reshape(-1)
        return {"advantages": advantages, "returns": returns}

    def split(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A packed minibatch -> (obs, actions, old logprobs, advantages, returns, old values)."""
        d, a = self.obs_dim, self.action_dim
        return (
            batch[:, :d],
            batch[:, d : d + a],
            batch[:, d + a],
            batch[:, d + a + 1],
            batch[:, d + a + 2],
            batch[:, d + a + 3],
        )
