"""``ActorCritic``: observation normalization, MLP trunk(s), value head and action head."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ..config import EnvConfig, PolicyConfig
from ..environments.masks import user_masks
from ..errors import ConfigError
from ..spaces import ObsFlattener
from .encoders import ImageEncoder, cnn_parameters, encoder_kind
from .heads import ActionHead, init_layer, make_head
from .normalize import ObsNormalizer, RewardScaler
from .recurrent import Memory, RecurrentCore

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


def _check_size(flattener: ObsFlattener, action_space: spaces.Space, policy: PolicyConfig) -> int:
    """Refuse, before allocating, a policy too large to build (sizes may come from a file);
    returns the width of the trunks' input."""
    images = flattener.images()
    total = 0
    trunk_in = flattener.flat_dim
    for _, layout in images:
        kind = encoder_kind(policy.image_encoder, layout)
        if kind == "nature" and min(layout.chw[1:]) < 36:
            raise ConfigError(
                f"policy.image_encoder=nature needs images of at least 36 x 36 pixels, not {layout.chw[1:]}; "
                "use small or auto"
            )
        total += cnn_parameters(kind, *layout.chw, policy.cnn_features)
        trunk_in += policy.cnn_features - math.prod(layout.shape)
    widths = [trunk_in, *policy.hidden_sizes]
    trunk = sum(a * b + b for a, b in itertools.pairwise(widths))
    out = 2 * spaces.flatdim(action_space) + 1
    total += trunk * (1 if policy.shared_trunk else 2) + policy.hidden_sizes[-1] * out
    if total > MAX_PARAMETERS:
        raise ConfigError(
            f"policy settings (hidden_sizes {policy.hidden_sizes}, cnn_features {policy.cnn_features}) "
            f"with {flattener.flat_dim} observation values would make about {total:,} parameters "
            f"({4 * total / 2**30:.1f} GiB), more than the {MAX_PARAMETERS:,} ppo-envkit builds"
        )
    return trunk_in


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
        self.flattener = ObsFlattener(
            observation_space, images=policy.image_encoder != "none", text_hash_size=policy.text_hash_size
        )
        obs_dim = self.flattener.flat_dim
        trunk_in = _check_size(self.flattener, action_space, policy)
        self.obs_norm = ObsNormalizer(
            obs_dim, torch.as_tensor(self.flattener.normalize_mask), env.clip_obs, env.normalize_obs
        )
        self.reward_scaler = RewardScaler(gamma, env.clip_reward, env.normalize_reward)
        hidden, act, ortho = policy.hidden_sizes, policy.activation, policy.ortho_init
        self.shared = policy.shared_trunk
        # Image parts go through a CNN shared by actor and critic (None without images, so that
        # the weights of an MLP policy keep their names).
        self.encoder = ImageEncoder(self.flattener, policy) if self.flattener.images() else None
        # Memory, shared by actor and critic (algo/recurrent.py says why); None: feed-forward
        self.core: RecurrentCore | None = None
        if policy.recurrent != "none":
            self.core = RecurrentCore(policy.recurrent, trunk_in, policy.recurrent_size, ortho)
            trunk_in = policy.recurrent_size
        self.actor_trunk = mlp(trunk_in, hidden, act, ortho)
        # A shared trunk is registered once, so that every weight has exactly one name.
        self.critic_trunk = None if self.shared else mlp(trunk_in, hidden, act, ortho)
        self.head: ActionHead = make_head(
            action_space,
            hidden[-1],
            ortho_init=ortho,
            log_std_init=policy.log_std_init,
            squash=policy.squash,
            composite=policy.composite,
            composite_params=policy.composite_params,
            composite_std=policy.composite_std,
            box_coords=policy.box_coords,
            box_distribution=policy.box_distribution,
        )
        self.value_out = init_layer(nn.Linear(hidden[-1], 1), 1.0, ortho)

    @property
    def device(self) -> torch.device:
        return self.value_out.weight.device

    def obs_to_tensor(self, obs: object, batched: bool = True) -> torch.Tensor:
        """Raw environment observations -> flat float32 tensor on the module's device (not normalized)."""
        flat = self.flattener(obs, batched=batched)
        return torch.from_numpy(np.ascontiguousarray(flat)).to(self.device)

    def mask_tensor(self, mask: Any, batch: int | None) -> torch.Tensor | None:
        """A user's action mask(s) as ``[batch, mask_size]`` booleans on the device (``batch``
        None: one observation's mask), checked; None stays None."""
        flat = user_masks(mask, self.action_space, batch)
        return None if flat is None else torch.from_numpy(flat).to(self.device)

    @property
    def recurrent(self) -> bool:
        """Whether the policy has memory (then acting needs a :class:`Memory`)."""
        return self.core is not None

    @property
    def state_size(self) -> int:
        """Values in one copy's recurrent state (0 without memory)."""
        return 0 if self.core is None else self.core.state_size

    def initial_memory(self, batch: int) -> Memory:
        """The memory of ``batch`` copies at the start of their episodes."""
        return Memory.fresh(batch, self.state_size, self.device)

    def training_precision(self) -> contextlib.AbstractContextManager[None]:
        """A block in which the image encoder computes in its training dtype
        (``policy.cnn_precision``); nothing changes for a policy without images."""
        if self.encoder is None:
            return contextlib.nullcontext()
        return self.encoder.training_precision(self.device)

    @contextlib.contextmanager
    def acting_with_fixed_weights(self) -> Iterator[None]:
        """A block of forward passes only, in the training dtype, during which the weights do not
        change (a rollout's collection).

        Without autocast, inference mode. With it (a bfloat16 CNN), ``no_grad`` inside an outer,
        disabled autocast block: autocast keeps the low-precision copies of the weights it makes
        until its outermost block ends, and only outside inference mode, so each weight is cast
        once per block instead of once per forward pass (the CNN's forward on 4-8 Atari frames
        took 0.9-1.2 ms with a cast per pass, 0.6-0.9 ms with the copies kept; the same values).
        Never across an optimizer step: the kept copies would be stale."""
        dtype = None if self.encoder is None else self.encoder.autocast_dtype(self.device)
        with contextlib.ExitStack() as stack:
            if dtype is None:
                stack.enter_context(torch.inference_mode())
            else:
                stack.enter_context(torch.no_grad())
                stack.enter_context(torch.autocast(self.device.type, dtype=dtype, enabled=False))
            stack.enter_context(self.training_precision())
            yield

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalized flat observations -> the recurrent core's (or the trunks') input: image
        parts through the CNN."""
        return obs if self.encoder is None else self.encoder(obs)

    def body(self, obs: torch.Tensor, memory: Memory | None = None, advance: bool = True) -> torch.Tensor:
        """Normalized flat observations -> the trunks' input: features, then one step of the
        recurrent core from ``memory`` (which moves on to the new state unless ``advance`` is
        False: a look at a value without taking the step)."""
        x = self.features(obs)
        if self.core is None:
            return x
        if memory is None:
            raise ValueError("a recurrent policy acts from a memory (state and episode starts)")
        out, state = self.core.step(x, memory.state, memory.starts)
        if advance:
            memory.state, memory.starts = state, torch.zeros_like(memory.starts)
        return out

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trunks' input -> (distribution parameters, values ``[batch]``)."""
        if self.shared:
            features = self.actor_trunk(x)
            return self.head(features), self.value_out(features).squeeze(-1)
        return self.head(self.actor_trunk(x)), self.value_out(self.critic_trunk(x)).squeeze(-1)

    def forward(self, obs: torch.Tensor, memory: Memory | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized flat observations -> (distribution parameters, values ``[batch]``)."""
        return self.heads(self.body(obs, memory))

    def actor_params(
        self, obs: torch.Tensor, mask: torch.Tensor | None = None, memory: Memory | None = None
    ) -> torch.Tensor:
        """Normalized flat observations -> action-distribution parameters (no critic), restricted
        to the actions ``mask`` allows when given.

        Acting and the ONNX export (:mod:`ppo_envkit.export.onnx`) go through this one method,
        so that a change to the actor's network reaches both."""
        params = self.head(self.actor_trunk(self.body(obs, memory)))
        return params if mask is None else self.head.apply_mask(params, mask)

    def value(self, obs: torch.Tensor, memory: Memory | None = None) -> torch.Tensor:
        """Normalized flat observations -> values ``[batch]`` (the critic alone; ``memory`` is
        read, not moved on)."""
        trunk = self.actor_trunk if self.critic_trunk is None else self.critic_trunk
        return self.value_out(trunk(self.body(obs, memory, advance=False))).squeeze(-1)

    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        memory: Memory | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(stored action, log-prob, value, distribution parameters) for normalized observations;
        ``mask`` (``[batch, mask_size]`` booleans) restricts the actions to the legal ones;
        ``memory`` (recurrent policies) moves on by one step."""
        params, value = self(obs, memory)
        if mask is not None:
            params = self.head.apply_mask(params, mask)
        action = self.head.mode(params) if deterministic else self.head.sample(params, generator)
        return action, self.head.log_prob(params, action), value, params

    @torch.inference_mode()
    def predict(
        self,
        raw_obs: Any,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
        action_mask: Any = None,
        memory: Memory | None = None,
    ) -> Any:
        """Environment action(s) for raw observation(s): one for one observation, a batch for a
        batch; ``memory`` (recurrent policies) moves on by one step."""
        batched = self.flattener.is_batched(raw_obs)
        x = self.obs_norm(self.obs_to_tensor(raw_obs, batched=batched))
        mask = self.mask_tensor(action_mask, x.shape[0] if batched else None)
        # Acting needs only the actor: no critic, no log-probability (a third of the time).
        params = self.actor_params(x, mask, memory)
        action = self.head.mode(params) if deterministic else self.head.sample(params, generator)
        env_action = self.head.to_env(action)
        return env_action if batched else self.head.row(env_action, 0)

    @torch.inference_mode()
    def decide(
        self,
        raw_obs: Any,
        deterministic: bool = True,
        generator: torch.Generator | None = None,
        action_mask: Any = None,
        memory: Memory | None = None,
    ) -> dict[str, Any]:
        """One raw observation's action, with what the policy thinks (for viewers): the stored
        action, its log-probability, the value, the head's description (probabilities, ...),
        the action mask in force (None without one), and the size of the recurrent state
        after this step (``memory_norm``; None without memory)."""
        x = self.obs_norm(self.obs_to_tensor(raw_obs, batched=False))
        mask = self.mask_tensor(action_mask, None)
        action, logp, value, params = self.act(
            x, deterministic=deterministic, generator=generator, mask=mask, memory=memory
        )
        return {
            "memory_norm": None if memory is None else float(memory.state[0].norm()),
            "action": self.head.row(self.head.to_env(action), 0),
            "raw_action": action[0].cpu().numpy(),
            "log_prob": float(logp[0]),
            "value": float(value[0]),
            "action_mask": None if mask is None else mask[0].cpu().numpy(),
            **{k: v[0] for k, v in self.head.describe(params).items()},
        }

    def evaluate(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor,
        generator: torch.Generator | None = None,
        mask: torch.Tensor | None = None,
        states: torch.Tensor | None = None,
        starts: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-prob, entropy, value) of stored ``actions`` under the current parameters, with
        the action mask that was in force when they were taken.

        A recurrent policy takes whole sequences: the rows are ``S`` sequences of equal length
        one after the other, ``states [S, state_size]`` their stored initial states and
        ``starts`` (one per row) where episodes start inside them."""
        if self.core is None:
            params, value = self(obs)
        else:
            if states is None or starts is None:
                raise ValueError("a recurrent policy is evaluated on sequences (states and starts)")
            count = states.shape[0]
            x = self.features(obs).reshape(count, obs.shape[0] // count, -1)
            out = self.core.sequence(x, states, starts.reshape(count, -1))
            params, value = self.heads(out.reshape(obs.shape[0], -1))
        if mask is not None:
            params = self.head.apply_mask(params, mask)
        return self.head.log_prob(params, actions), self.head.entropy(params, generator), value
