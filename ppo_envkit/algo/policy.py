"""``ActorCritic``: observation normalization, MLP trunk(s), value head and action head."""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ..config import EnvConfig, PolicyConfig
from ..errors import ConfigError
from ..spaces import ObsFlattener
from .heads import ActionHead, init_layer, make_head
from .normalize import ObsNormalizer, RewardScaler

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


def resolve_device(name: str) -> torch.device:
    """The torch device for ``run.device``; under torchrun each rank takes its own GPU if there are enough."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("run.device=cuda but no CUDA device is available; use cpu or auto")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device(name)


def mlp(in_dim: int, hidden: list[int], activation: str, ortho_init: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [init_layer(nn.Linear(in_dim, width), math.sqrt(2), ortho_init), _ACTIVATIONS[activation]()]
        in_dim = width
    return nn.Sequential(*layers)


#: Most parameters a policy may have (float32: 400 MB of weights, three times that to train).
MAX_PARAMETERS = 100_000_000


def _check_size(obs_dim: int, action_space: spaces.Space, policy: PolicyConfig) -> None:
    """Refuse, before allocating, a policy too large to build: sizes may come from a file."""
    widths = [obs_dim, *policy.hidden_sizes]
    trunk = sum(a * b + b for a, b in itertools.pairwise(widths))
    out = 2 * spaces.flatdim(action_space) + 1
    total = trunk * (1 if policy.shared_trunk else 2) + policy.hidden_sizes[-1] * out
    if total > MAX_PARAMETERS:
        raise ConfigError(
            f"policy.hidden_sizes {policy.hidden_sizes} with {obs_dim} observation values would make "
            f"about {total:,} parameters ({4 * total / 2**30:.1f} GiB), more than the "
            f"{MAX_PARAMETERS:,} ppo-envkit builds"
        )


class ActorCritic(nn.Module):
    """Maps normalized flat observations to action-distribution parameters and a value.

    The module owns every tensor an agent needs at run time, normalization
    statistics included, so that its state dict *is* the agent's weights file.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        policy: PolicyConfig,
        env: EnvConfig,
        gamma: float,
    ):
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.flattener = ObsFlattener(observation_space)
        obs_dim = self.flattener.flat_dim
        _check_size(obs_dim, action_space, policy)
        self.obs_norm = ObsNormalizer(
            obs_dim, torch.as_tensor(self.flattener.normalize_mask), env.clip_obs, env.normalize_obs
        )
        self.reward_scaler = RewardScaler(gamma, env.clip_reward, env.normalize_reward)
        hidden, act, ortho = policy.hidden_sizes, policy.activation, policy.ortho_init
        self.shared = policy.shared_trunk
        self.actor_trunk = mlp(obs_dim, hidden, act, ortho)
        # A shared trunk is registered once, so that every weight has exactly one name.
        self.critic_trunk = None if self.shared else mlp(obs_dim, hidden, act, ortho)
        self.head: ActionHead = make_head(
            action_space, hidden[-1], ortho_init=ortho, log_std_init=policy.log_std_init, squash=policy.squash
        )
        self.value_out = init_layer(nn.Linear(hidden[-1], 1), 1.0, ortho)

    @property
    def device(self) -> torch.device:
        return self.value_out.weight.device

    def obs_to_tensor(self, obs: object, batched: bool = True) -> torch.Tensor:
        """Raw environment observations -> flat float32 tensor on the module's device (not normalized)."""
        flat = self.flattener(obs, batched=batched)
        return torch.from_numpy(np.ascontiguousarray(flat)).to(self.device)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized flat observations -> (distribution parameters, values ``[batch]``)."""
        if self.shared:
            features = self.actor_trunk(obs)
            return self.head(features), self.value_out(features).squeeze(-1)
        return self.head(self.actor_trunk(obs)), self.value_out(self.critic_trunk(obs)).squeeze(-1)

    def actor_params(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized flat observations -> action-distribution parameters (no critic).

        Acting and the ONNX export (:mod:`ppo_envkit.io.export`) go through this one method,
        so that a change to the actor's network (an encoder, say) reaches both."""
        return self.head(self.actor_trunk(obs))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized flat observations -> values ``[batch]`` (the critic alone)."""
        trunk = self.actor_trunk if self.critic_trunk is None else self.critic_trunk
        return self.value_out(trunk(obs)).squeeze(-1)

    def act(
        self, obs: torch.Tensor, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stored action, log-prob, value, distribution parameters) for normalized observations."""
        params, value = self(obs)
        action = self.head.mode(params) if deterministic else self.head.sample(params, generator)
        return action, self.head.log_prob(params, action), value, params

    @torch.inference_mode()
    def predict(
        self, raw_obs: Any, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> Any:
        """Environment action(s) for raw observation(s): one for one observation, a batch for a batch."""
        batched = self.flattener.is_batched(raw_obs)
        x = self.obs_norm(self.obs_to_tensor(raw_obs, batched=batched))
        # Acting needs only the actor: no critic, no log-probability (a third of the time).
        params = self.actor_params(x)
        action = self.head.mode(params) if deterministic else self.head.sample(params, generator)
        env_action = self.head.to_env(action)
        return env_action if batched else env_action[0]

    @torch.inference_mode()
    def decide(
        self, raw_obs: Any, deterministic: bool = True, generator: torch.Generator | None = None
    ) -> dict[str, Any]:
        """One raw observation's action, with what the policy thinks (for viewers): the stored
        action, its log-probability, the value, and the head's description (probabilities, ...)."""
        x = self.obs_norm(self.obs_to_tensor(raw_obs, batched=False))
        action, logp, value, params = self.act(x, deterministic=deterministic, generator=generator)
        return {
            "action": self.head.to_env(action)[0],
            "raw_action": action[0].cpu().numpy(),
            "log_prob": float(logp[0]),
            "value": float(value[0]),
            **{k: v[0] for k, v in self.head.describe(params).items()},
        }

    def evaluate(
        self, obs: torch.Tensor, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-prob, entropy, value) of stored ``actions`` under the current parameters."""
        params, value = self(obs)
        return self.head.log_prob(params, actions), self.head.entropy(params, generator), value
