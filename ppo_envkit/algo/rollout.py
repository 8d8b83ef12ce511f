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

from collections.abc import Sequence
from typing import NamedTuple

import torch

from ..errors import ConfigError


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


class Minibatch(NamedTuple):
    """What one gradient step needs, as tensors; every field has one row per sample."""

    obs: torch.Tensor  # flat, normalized; uint8 when the observation is one image (its pixels)
    actions: torch.Tensor
    old_logprobs: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    old_values: torch.Tensor
    masks: torch.Tensor | None = None  # the action masks in force (booleans), if any
    # Recurrent policies: the rows are whole sequences one after another; their stored initial
    # states [sequences, state_size], and where episodes start (one flag per row)
    states: torch.Tensor | None = None
    starts: torch.Tensor | None = None


class Columns(NamedTuple):
    """Where each field of a :class:`Minibatch` lives in a row of :attr:`RolloutBuffer.packed`
    (a backend that gathers rows in its own array type splits them with these)."""

    obs: slice
    actions: slice
    old_logprobs: int
    advantages: int
    returns: int
    old_values: int
    masks: slice | None  # None: no masks
    states: slice | None  # None: not recurrent
    starts: int | None


def rollout_bytes(
    n_steps: int,
    num_envs: int,
    obs_dim: int,
    action_dim: int,
    mask_dim: int = 0,
    state_dim: int = 0,
    image_dim: int = 0,
) -> int:
    """Bytes a :class:`RolloutBuffer` allocates (observations, actions, masks and recurrent
    states twice: stored and packed; the ``image_dim`` of the ``obs_dim`` observation values
    that are image pixels once, one byte each)."""
    floats = obs_dim - image_dim + action_dim + state_dim
    return n_steps * num_envs * (4 * (2 * floats + 14) + 5 * mask_dim + image_dim)


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), if known."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_memory(
    n_steps: int, num_envs: int, obs_dim: int, action_dim: int, mask_dim: int, state_dim: int, image_dim: int
) -> None:
    """A rollout that cannot fit is a settings error, said before torch fails to allocate it."""
    need = rollout_bytes(n_steps, num_envs, obs_dim, action_dim, mask_dim, state_dim, image_dim)
    have = available_memory()
    if have is not None and need > 0.8 * have:
        raise ConfigError(
            f"a rollout of ppo.n_steps={n_steps:,} x {num_envs} environment copies x {obs_dim} observation "
            f"values needs about {need / 2**30:.1f} GiB, but {have / 2**30:.1f} GiB of memory is available; "
            "lower ppo.n_steps or env.num_envs"
        )


def _segments(flat_dim: int, image_ranges: list[tuple[int, int]]) -> list[tuple[str, slice, slice]]:
    """``(kind, columns of the flat observation, columns of its store)`` of each run of image
    or other columns, in the flat order; a store is :attr:`RolloutBuffer.pixels` for kind
    ``image``, :attr:`RolloutBuffer.obs` for ``other``."""
    out: list[tuple[str, slice, slice]] = []
    stored = {"image": 0, "other": 0}
    position = 0
    for start, end in [*sorted(image_ranges), (flat_dim, flat_dim)]:
        for kind, a, b in (("other", position, start), ("image", start, end)):
            if b > a:
                out.append((kind, slice(a, b), slice(stored[kind], stored[kind] + b - a)))
                stored[kind] += b - a
        position = end
    return out


class RolloutBuffer:
    """Preallocated ``[n_steps, num_envs, ...]`` storage for one rollout.

    The collector fills it (:meth:`store_obs`, the other fields directly, and
    :attr:`last_values`); :meth:`compute_advantages` runs GAE and packs every field into
    one matrix, from which :meth:`minibatch` gathers a shuffled minibatch with a single index.

    Image pixels (``image_ranges``: the ``[start, end)`` columns of each image part of the
    flat observation) are kept as ``uint8`` in :attr:`pixels`, once (a quarter of one float32
    copy, an eighth of the stored and packed float32 copies): they are whole numbers 0..255
    that normalization leaves alone, so the minibatch turns them back into exactly the float
    columns the collector saw. :attr:`obs` then holds the other columns only.
    """

    PACKED = ("logprobs", "advantages", "returns", "values")  # after obs and actions

    def __init__(
        self,
        n_steps: int,
        num_envs: int,
        obs_dim: int,
        action_dim: int,
        device: torch.device,
        mask_dim: int = 0,
        state_dim: int = 0,
        sequence_length: int = 1,
        image_ranges: Sequence[tuple[int, int]] = (),
        agent_rows: bool = False,
    ):
        self.image_ranges = [(int(a), int(b)) for a, b in image_ranges]
        image_dim = sum(b - a for a, b in self.image_ranges)
        _check_memory(n_steps, num_envs, obs_dim, action_dim, mask_dim, state_dim, image_dim)
        self.n_steps, self.num_envs = n_steps, num_envs
        self.flat_obs_dim, self.image_dim = obs_dim, image_dim
        obs_dim -= image_dim  # the float columns (all of them without images)
        self.obs_dim, self.action_dim, self.mask_dim = obs_dim, action_dim, mask_dim
        self.state_dim, self.sequence_length = state_dim, sequence_length
        shape = (n_steps, num_envs)
        f32 = {"dtype": torch.float32, "device": device}
        self.obs = torch.zeros((*shape, obs_dim), **f32)
        self.pixels = torch.zeros((*shape, image_dim), dtype=torch.uint8, device=device)
        self._segments = _segments(self.flat_obs_dim, self.image_ranges)
        self.actions = torch.zeros((*shape, action_dim), **f32)
        # The mask in force at each step (mask_dim 0: the environment gives none)
        self.masks = torch.ones((*shape, mask_dim), dtype=torch.bool, device=device)
        # Recurrent policies: the state before each step, and whether the step started an episode
        self.states = torch.zeros((*shape, state_dim), **f32)
        self.starts = torch.zeros(shape, dtype=torch.bool, device=device)
        self.logprobs = torch.zeros(shape, **f32)
        self.values = torch.zeros(shape, **f32)
        self.rewards = torch.zeros(shape, **f32)
        self.terminated = torch.zeros(shape, dtype=torch.bool, device=device)
        self.episode_end = torch.zeros(shape, dtype=torch.bool, device=device)
        self.truncated_values = torch.zeros(shape, **f32)  # V(final obs) where truncated
        self.truncated = torch.zeros(shape, dtype=torch.bool, device=device)
        #: Several agents (``agent_rows``): whether each row's agent was live for the observation
        #: it acted on. Padding rows (False) never reach the loss; None: every row is valid.
        self.valid = torch.ones(shape, dtype=torch.bool, device=device) if agent_rows else None
        self.last_values = torch.zeros(num_envs, **f32)  # V(observation after the last step)
        self.advantages = torch.zeros(shape, **f32)
        self.returns = torch.zeros(shape, **f32)
        width = obs_dim + action_dim + len(self.PACKED) + mask_dim + (state_dim + 1 if state_dim else 0)
        self.packed = torch.zeros((n_steps * num_envs, width), **f32)
        d, a, m, k = obs_dim, action_dim, mask_dim, state_dim
        self.columns = Columns(
            slice(0, d),
            slice(d, d + a),
            d + a,
            d + a + 1,
            d + a + 2,
            d + a + 3,
            slice(d + a + 4, d + a + 4 + m) if m else None,
            slice(d + a + 4 + m, d + a + 4 + m + k) if k else None,
            width - 1 if k else None,
        )

    @property
    def size(self) -> int:
        """Samples in the rollout."""
        return self.n_steps * self.num_envs

    def valid_rows(self) -> torch.Tensor | None:
        """Indices (into the flattened rollout) of the valid samples; None when all are."""
        if self.valid is None or bool(self.valid.all()):
            return None
        return torch.nonzero(self.valid.reshape(-1)).reshape(-1)

    def store_obs(self, t: int, obs: torch.Tensor) -> None:
        """Store step ``t``'s flat (normalized) observations ``[num_envs, flat_obs_dim]``."""
        if not self.image_dim:
            self.obs[t] = obs
            return
        for kind, flat, stored in self._segments:
            target = self.pixels if kind == "image" else self.obs
            target[t, :, stored] = obs[:, flat]  # pixels: whole numbers 0..255, cast exactly

    def flat_obs(self, other: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Flat observations ``[batch, flat_obs_dim]`` from rows of the float columns (:attr:`obs`)
        and of :attr:`pixels` (the inverse of :meth:`store_obs`): float32, or the uint8 pixels
        themselves when the observation is one image (the image encoder takes them as they are;
        a conversion and 3 bytes per pixel fewer)."""
        if not self.image_dim:
            return other
        if len(self._segments) == 1:  # one image: the pixels as they are (the CNN converts them)
            return pixels
        parts = [(pixels if kind == "image" else other)[:, stored] for kind, _, stored in self._segments]
        return torch.cat([p.to(torch.float32) for p in parts], 1)

    def observations(self) -> torch.Tensor:
        """Every stored observation as flat float32 ``[n_steps, num_envs, flat_obs_dim]``."""
        flat = self.flat_obs(self.obs.reshape(self.size, self.obs_dim), self.pixels.reshape(self.size, -1))
        return flat.to(torch.float32).reshape(self.n_steps, self.num_envs, -1)

    def compute_advantages(self, gamma: float, gae_lambda: float) -> None:
        """GAE over the rollout (bootstrapping from :attr:`last_values`, and from V(final
        observation) where an episode was truncated); then pack every field for training."""
        next_values = torch.cat([self.values[1:], self.last_values[None]], 0)
        next_values = torch.where(self.truncated, self.truncated_values, next_values)
        self.advantages, self.returns = compute_gae(
            self.rewards, self.values, next_values, self.terminated, self.episode_end, gamma, gae_lambda
        )
        d, a = self.obs_dim, self.action_dim
        packed = self.packed
        packed[:, :d] = self.obs.reshape(self.size, d)
        packed[:, d : d + a] = self.actions.reshape(-1, a)
        packed[:, d + a] = self.logprobs.reshape(-1)
        packed[:, d + a + 1] = self.advantages.reshape(-1)
        packed[:, d + a + 2] = self.returns.reshape(-1)
        packed[:, d + a + 3] = self.values.reshape(-1)
        m, k = self.mask_dim, self.state_dim
        if m:
            packed[:, d + a + 4 : d + a + 4 + m] = self.masks.reshape(-1, m)
        if k:
            packed[:, d + a + 4 + m : d + a + 4 + m + k] = self.states.reshape(-1, k)
            packed[:, -1] = self.starts.reshape(-1)

    @property
    def num_sequences(self) -> int:
        """Sequences of :attr:`sequence_length` steps in the rollout (recurrent policies)."""
        return self.size // self.sequence_length

    def sequence_rows(self, sequences: torch.Tensor) -> torch.Tensor:
        """Rows (of the flattened ``[step, copy]`` rollout) of the given sequences, sequence by
        sequence: sequence ``j`` is copy ``j % num_envs`` from step ``(j // num_envs) * length``."""
        length, n = self.sequence_length, self.num_envs
        first_step = (sequences // n) * length
        steps = first_step[:, None] + torch.arange(length, device=sequences.device)
        return (steps * n + (sequences % n)[:, None]).reshape(-1)

    def minibatch(self, indices: torch.Tensor) -> Minibatch:
        """The samples at ``indices`` (into the flattened rollout), after :meth:`compute_advantages`."""
        batch = self.packed.index_select(0, indices)
        c = self.columns
        obs = batch[:, c.obs]
        if self.image_dim:
            obs = self.flat_obs(obs, self.pixels.view(self.size, self.image_dim).index_select(0, indices))
        masks = batch[:, c.masks] > 0.5 if c.masks is not None else None
        states = starts = None
        if c.states is not None:  # whole sequences: the state stored at each one's first step
            states = batch[:: self.sequence_length, c.states]
            starts = batch[:, c.starts] > 0.5
        return Minibatch(
            obs,
            batch[:, c.actions],
            batch[:, c.old_logprobs],
            batch[:, c.advantages],
            batch[:, c.returns],
            batch[:, c.old_values],
            masks,
            states,
            starts,
        )
