"""ONNX export: one graph from a raw observation to the action the environment receives.

The graph holds what :meth:`PPO.predict` does with ``deterministic=True``, so that a deployed
agent needs nothing but an ONNX runtime:

1. the observation's parts (one input per ``Dict``/``Tuple`` leaf, one input ``obs`` for a
   plain space) flattened as :class:`~ppo_envkit.spaces.ObsFlattener` does: ``Box`` parts
   reshaped, ``Discrete``/``MultiDiscrete`` parts one-hot encoded (``start`` subtracted),
   ``MultiBinary`` parts cast to float, concatenated in the flattener's order;
2. observation normalization with the agent's stored statistics;
3. the actor, through :meth:`ActorCritic.actor_params` (the one method acting uses too);
4. the deterministic action, converted as the head's ``to_env`` does (argmax per categorical
   dimension plus ``start``; Gaussian mean clipped, or squashed and rescaled, to the bounds;
   a Beta's mode mapped to the box).

An agent trained with action masks gets one more input, ``action_mask`` (booleans
``[batch, mask size]``, the flat layout of :mod:`ppo_envkit.environments.masks`), applied as
acting applies it: the action is the most likely *legal* one. Image parts go through the
agent's CNN like any other part of the network (the input is float32 pixel values 0..255).
A frame-stacked agent's input is the stack (``env.frame_stack`` in the metadata); the
observation is the one ``env.wrappers`` give (``env_wrappers`` in the metadata: names and
keyword arguments, applied innermost first, before stacking).
A text part
(``Text``, MiniGrid's ``mission``) is taken already encoded: float32 ``[batch, text_hash_size]``,
the word counts :func:`ppo_envkit.spaces.encode_text` gives (the input's metadata names the
rule: lower-cased runs of ``[0-9a-z]``, bucket ``crc32(utf-8 word) % text_hash_size``), since
an ONNX graph exported from torch takes no strings.

A composite (Tuple/Dict) action has one output per part, ``action/<part name>`` (names as
:func:`ppo_envkit.spaces.action_leaves` walks the space: keys and positions joined by "/"),
in the space's order; ``examples/onnx_inference.py`` rebuilds the structure from them.

Optional outputs: the distribution (``probs``, or ``mean`` and ``std``, or a Beta's ``alpha``
and ``beta``) and the ``value``.
Every dimension but the first is fixed; the first is the dynamic ``batch``. The file's
``metadata_props`` say which environment, spaces, agent and library versions it came from.

How the action is read off each head is registered per head class with
:func:`exported_head` (as :mod:`ppo_envkit.algo.fastpath` registers its gradients): a head
without a registration cannot be exported, and the error says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from .._version import __version__
from ..algo.heads import (
    ActionHead,
    BernoulliHead,
    BetaHead,
    CategoricalHead,
    CensoredGaussianHead,
    CompositeHead,
    GaussianHead,
    MultiCategoricalHead,
    SquashedGaussianHead,
)
from ..config import TrainConfig
from ..spaces import ObsFlattener, space_to_data
from ..state import TrainingState

if TYPE_CHECKING:
    from ..algo.policy import ActorCritic

#: The ONNX operator set the graph is written for (onnxruntime >= 1.14 runs it).
OPSET = 18
INSTALL_HINT = 'pip install -e ".[export]"'


class ExportError(ValueError):
    """The agent cannot be exported, or the export disagrees with the agent (one line)."""


def require(module: str) -> ModuleType:
    """Import an optional export dependency, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(f"ONNX export needs the '{module}' package: {INSTALL_HINT}") from None


class ExportSource(Protocol):
    """What an export reads of an agent (``PPO`` has it): the policy, its settings and training
    state, and the agent directory it was loaded from (None for an agent not loaded from disk)."""

    policy: ActorCritic
    config: TrainConfig
    state: TrainingState
    path: Path | None


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputSpec:
    """One graph input: a leaf of the observation, batched."""

    name: str
    path: tuple[Any, ...]  # keys/indices from the observation to the leaf
    kind: str  # the flattener's part kind (box | image | onehot | multionehot | binary | text), or mask
    dtype: str  # numpy dtype name the input expects
    shape: tuple[int, ...]  # one observation's shape (the graph adds the batch dimension)

    def to_data(self) -> dict[str, Any]:
        data = {"name": self.name, "path": list(self.path), "dtype": self.dtype, "shape": list(self.shape)}
        if self.kind == "text":
            data["text_hash_size"] = self.shape[0]
            data["encoding"] = TEXT_ENCODING
        return data


#: How a text input is encoded before it is fed (the metadata repeats it for other languages).
TEXT_ENCODING = (
    "bag of words: the lower-cased text's runs of [0-9a-z], each counted in column "
    "crc32(utf-8 bytes of the word) % text_hash_size (ppo_envkit.spaces.encode_text)"
)


_INPUT_DTYPES = {
    "box": "float32",
    "image": "float32",
    "onehot": "int64",
    "multionehot": "int64",
    "binary": "int8",
    "text": "float32",
}


def input_specs(flattener: ObsFlattener) -> list[InputSpec]:
    """The graph's inputs, in the flattener's order: ``obs`` for a plain space, else one per
    leaf named by its path (``"pos"``, ``"pair/0"``)."""
    specs = []
    for part in flattener.parts:
        name = "/".join(str(key) for key in part.path) or "obs"
        shape = (part.size,) if part.kind == "text" else tuple(int(d) for d in (part.space.shape or ()))
        specs.append(InputSpec(name, part.path, part.kind, _INPUT_DTYPES[part.kind], shape))
    return specs


def uses_action_masks(source: ExportSource) -> bool:
    """Whether the agent was trained with action masks (its environment gives them)."""
    return bool(source.state.action_masks)


def action_mask_inputs(policy: ActorCritic, masked: bool) -> list[InputSpec]:
    """The ``action_mask`` input of a masked policy: booleans ``[batch, mask size]`` in the flat
    layout of :mod:`ppo_envkit.environments.masks` (True = legal); none otherwise."""
    size = policy.head.mask_size
    if not masked:
        return []
    if size is None:
        raise ExportError(f"actions of {policy.action_space} cannot be masked")
    return [InputSpec("action_mask", (), "mask", "bool", (size,))]


class _Encode(nn.Module):
    """One input leaf -> its float32 columns ``[batch, size]``, as the flattener writes them."""

    def __init__(self, spec: InputSpec, space: spaces.Space):
        super().__init__()
        self.kind = spec.kind
        if spec.kind == "onehot":
            self.register_buffer("start", torch.tensor(int(space.start)))
            self.register_buffer("classes", torch.arange(int(space.n)))
        elif spec.kind == "multionehot":
            nvec = np.asarray(space.nvec, dtype=np.int64).reshape(-1)
            offsets = np.concatenate([[0], np.cumsum(nvec)[:-1]])
            start = np.asarray(space.start, dtype=np.int64).reshape(-1)
            # value v of entry j lights column v - start[j] + offset[j]
            self.register_buffer("shift", torch.as_tensor(offsets - start))
            self.register_buffer("classes", torch.arange(int(nvec.sum())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind in ("box", "image", "binary", "text"):
            return x.reshape(x.shape[0], -1).to(torch.float32)
        if self.kind == "onehot":
            return (x.reshape(-1, 1) - self.start == self.classes).to(torch.float32)
        idx = x.reshape(x.shape[0], -1, 1) + self.shift.unsqueeze(-1)  # [batch, entries, 1]
        # The entries light disjoint column ranges, so the sum of their one-hots is the code.
        return (idx == self.classes).to(torch.float32).sum(1)


# --------------------------------------------------------------------------- heads


@dataclass(frozen=True)
class HeadExport:
    """How the graph reads a head's parameters: the environment's action and the distribution."""

    action: Callable[[Any, torch.Tensor], torch.Tensor]
    distribution: Callable[[Any, torch.Tensor], dict[str, torch.Tensor]]


_HEAD_EXPORTS: dict[type[ActionHead], HeadExport] = {}


def exported_head(head_type: type[ActionHead], distribution: Callable[[Any, torch.Tensor], Any]):
    """Register ``action(head, params)`` (what ``to_env(mode(params))`` returns, as a tensor)
    for exactly ``head_type``, with ``distribution(head, params) -> {output name: tensor}``."""

    def register(action: Callable[[Any, torch.Tensor], torch.Tensor]) -> Callable:
        _HEAD_EXPORTS[head_type] = HeadExport(action, distribution)
        return action

    return register


def _torch_dtype(dtype: Any) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=np.dtype(dtype))).dtype


def _split_probs(head: MultiCategoricalHead, params: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"probs": torch.cat([p.softmax(-1) for p in head._split(params)], -1)}


def _gaussian(head: GaussianHead, params: torch.Tensor) -> dict[str, torch.Tensor]:
    mean, std = head.env_mean_std(params)
    return {"mean": mean, "std": std}


@exported_head(CategoricalHead, lambda head, params: {"probs": params.softmax(-1)})
def _categorical_action(head: CategoricalHead, params: torch.Tensor) -> torch.Tensor:
    return params.argmax(-1) + head.start


@exported_head(MultiCategoricalHead, _split_probs)
def _multi_categorical_action(head: MultiCategoricalHead, params: torch.Tensor) -> torch.Tensor:
    action = torch.stack([p.argmax(-1) for p in head._split(params)], -1) + head.start
    return action.reshape(-1, *head.space.shape).to(_torch_dtype(head.space.dtype))


@exported_head(BernoulliHead, lambda head, params: {"probs": params.sigmoid()})
def _bernoulli_action(head: BernoulliHead, params: torch.Tensor) -> torch.Tensor:
    return (params > 0).to(torch.int8).reshape(-1, *head.space.shape)


@exported_head(GaussianHead, _gaussian)
def _gaussian_action(head: GaussianHead, params: torch.Tensor) -> torch.Tensor:
    clipped = torch.maximum(torch.minimum(head.to_env_units(head.mode(params)), head.high), head.low)
    return clipped.reshape(-1, *head.space.shape).to(_torch_dtype(head.space.dtype))


@exported_head(CensoredGaussianHead, _gaussian)
def _censored_action(head: CensoredGaussianHead, params: torch.Tensor) -> torch.Tensor:
    return _gaussian_action(head, params)


@exported_head(SquashedGaussianHead, _gaussian)
def _squashed_action(head: SquashedGaussianHead, params: torch.Tensor) -> torch.Tensor:
    squashed = torch.maximum(torch.minimum(head.squash(head.mode(params)), head.high), head.low)
    return squashed.reshape(-1, *head.space.shape).to(_torch_dtype(head.space.dtype))


def _beta(head: BetaHead, params: torch.Tensor) -> dict[str, torch.Tensor]:
    alpha, beta = head.concentrations(params)
    return {"alpha": alpha, "beta": beta}


@exported_head(BetaHead, _beta)
def _beta_action(head: BetaHead, params: torch.Tensor) -> torch.Tensor:
    mapped = torch.maximum(torch.minimum(head.to_env_units(head.mode(params)), head.high), head.low)
    return mapped.reshape(-1, *head.space.shape).to(_torch_dtype(head.space.dtype))


def _composite_parts(head: CompositeHead, params: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """Each part's parameters, a conditioned part's those of the most likely choice (as ``mode``)."""
    ps = head._split(params)
    choice = None if head.choice is None else head.parts[head.choice].mode(ps[head.choice])
    return [(i, p if choice is None else head._select(i, p, choice)) for i, p in enumerate(ps)]


def _composite_distribution(head: CompositeHead, params: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for i, p in _composite_parts(head, params):
        part = _HEAD_EXPORTS[type(head.parts[i])].distribution(head.parts[i], p)
        out.update({f"{key}/{head.names[i]}": value for key, value in part.items()})
    return out


@exported_head(CompositeHead, _composite_distribution)
def _composite_action(head: CompositeHead, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One output per part (``action/<part name>``, in the space's order)."""
    return tuple(
        _HEAD_EXPORTS[type(head.parts[i])].action(head.parts[i], p) for i, p in _composite_parts(head, params)
    )


def action_output_names(head: ActionHead) -> list[str]:
    """``action``, or ``action/<part name>`` per part of a composite head (in the space's order:
    :func:`ppo_envkit.spaces.action_leaves`)."""
    if isinstance(head, CompositeHead):
        return [f"action/{name}" for name in head.names]
    return ["action"]


# --------------------------------------------------------------------------- the graph


def refuse_unsupported(policy: ActorCritic) -> HeadExport:
    """The head's export, or a one-line :class:`ExportError` for what cannot be exported."""
    if getattr(policy, "recurrent", False):
        raise ExportError("ONNX export of recurrent policies is not supported (the state would be an input)")
    head_export = _HEAD_EXPORTS.get(type(policy.head))
    if head_export is None:
        raise ExportError(f"ONNX export does not know the action head {type(policy.head).__name__}")
    return head_export


def _param_sizes(head: ActionHead) -> list[int]:
    return list(head.param_sizes) if isinstance(head, CompositeHead) else [head.out.out_features]


class OnnxPolicy(nn.Module):
    """Raw observation leaves -> (action, [distribution...], [value]): the exported module."""

    def __init__(
        self,
        policy: ActorCritic,
        *,
        distribution: bool = False,
        value: bool = False,
        action_mask: bool = False,
    ):
        super().__init__()
        self.policy = policy
        self.head_export = refuse_unsupported(policy)
        self.obs_specs = input_specs(policy.flattener)
        self.masked = action_mask
        self.specs = self.obs_specs + action_mask_inputs(policy, action_mask)
        self.encoders = nn.ModuleList(
            _Encode(spec, part.space)
            for spec, part in zip(self.obs_specs, policy.flattener.parts, strict=True)
        )
        self.distribution, self.with_value = distribution, value
        probe = self.head_export.distribution(policy.head, torch.zeros(2, sum(_param_sizes(policy.head))))
        self.output_names = [
            *action_output_names(policy.head),
            *(probe if distribution else ()),
            *(["value"] if value else []),
        ]

    def forward(self, *leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mask = leaves[-1] if self.masked else None
        obs_leaves = leaves[:-1] if self.masked else leaves
        columns = [encode(x) for encode, x in zip(self.encoders, obs_leaves, strict=True)]
        flat = columns[0] if len(columns) == 1 else torch.cat(columns, 1)
        x = self.policy.obs_norm(flat)
        params = self.policy.actor_params(x, mask)  # illegal actions excluded, as in acting
        head = self.policy.head
        action = self.head_export.action(head, params)
        outputs = list(action) if isinstance(action, tuple) else [action]
        if self.distribution:
            outputs += list(self.head_export.distribution(head, params).values())
        if self.with_value:
            outputs.append(self.policy.value(x))
        return tuple(outputs)

    def example_inputs(self, batch: int = 2) -> tuple[torch.Tensor, ...]:
        """Valid inputs (a batch of 2: torch.export specializes sizes 0 and 1)."""
        out = []
        for spec, part in zip(self.obs_specs, self.policy.flattener.parts, strict=True):
            lowest = getattr(part.space, "start", 0) if spec.kind in ("onehot", "multionehot") else 0
            leaf = np.broadcast_to(np.asarray(lowest).astype(spec.dtype), (batch, *spec.shape))
            out.append(torch.from_numpy(leaf.copy()))
        if self.masked:
            out.append(torch.ones((batch, *self.specs[-1].shape), dtype=torch.bool))
        return tuple(out)


# --------------------------------------------------------------------------- metadata


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def export_metadata(source: ExportSource, module: OnnxPolicy) -> dict[str, str]:
    """``metadata_props``: strings, JSON where structured (read with ``json.loads``)."""
    stored: dict[str, Any] = {}
    if source.path is not None:
        try:
            stored = json.loads((Path(source.path) / "agent.json").read_text())
        except (OSError, ValueError):
            stored = {}
    env = source.config.env
    provenance = {
        "agent_path": str(source.path) if source.path is not None else None,
        "model_sha256": _sha256(Path(source.path) / "model.safetensors") if source.path else None,
        "tensors_sha256": stored.get("tensors_sha256"),
        "saved_at": stored.get("saved_at"),
        "training": {**stored.get("provenance", {}), **(source.state.provenance or {})},
        "versions": stored.get("versions"),
        "evaluation": source.state.evaluation,
    }
    data: dict[str, Any] = {
        "env_id": env.id,
        "env_kwargs": env.kwargs,
        "max_episode_steps": env.max_episode_steps,
        # applied in order around the environment, innermost first, before frame stacking
        "env_wrappers": [wrapper.model_dump(mode="json") for wrapper in env.wrappers],
        "frame_stack": env.frame_stack,
        "action_masks": module.masked,
        "observation_space": space_to_data(source.policy.observation_space),
        "action_space": space_to_data(source.policy.action_space),
        "inputs": [spec.to_data() for spec in module.specs],
        "outputs": module.output_names,
        "ppo_envkit_version": __version__,
        "num_timesteps": source.state.num_timesteps,
        "deterministic": True,
        # The mode the agent's evaluations use: "stochastic" means sampling from the exported
        # distribution (--distribution) scored clearly better than this graph's argmax.
        "eval_mode": source.state.eval_mode,
        "provenance": provenance,
    }
    return {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in data.items()}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.onnx logs a warning per torchvision operator it cannot register, and torch.export
    warnings about its own internals: none concerns an exported policy."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            # every input's first axis is the same "batch", which the exporter remarks on
            warnings.filterwarnings("ignore", message="# The axis name", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    source: ExportSource,
    path: str | Path,
    *,
    distribution: bool = False,
    value: bool = False,
    action_mask: bool | None = None,
) -> Path:
    """Write the agent's deterministic policy to ``path`` as one ONNX graph (see module doc).

    ``action_mask`` adds the ``action_mask`` input (default: when the agent was trained with masks)."""
    onnx = require("onnx")
    require("onnxscript")  # torch.onnx's exporter builds the graph with it
    policy = source.policy
    if policy.device.type != "cpu":
        import copy

        policy = copy.deepcopy(policy).cpu()
    masked = uses_action_masks(source) if action_mask is None else action_mask
    module = OnnxPolicy(policy, distribution=distribution, value=value, action_mask=masked).eval()
    inputs = module.example_inputs()
    batch = torch.export.Dim("batch", min=1)
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp, _quiet_exporter():
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            module,
            inputs,
            str(raw),
            input_names=[spec.name for spec in module.specs],
            output_names=module.output_names,
            dynamic_shapes=(tuple({0: batch} for _ in inputs),),  # forward(*leaves): one argument
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        model = onnx.load(str(raw))
    del model.metadata_props[:]
    for key, text in export_metadata(source, module).items():
        model.metadata_props.add(key=key, value=text)
    model.doc_string = f"ppo-envkit {__version__}: deterministic policy for {source.config.env.id}"
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    onnx.save(model, str(partial))
    os.replace(partial, path)  # never a half-written model under the real name
    return path


__all__ = [
    "INSTALL_HINT",
    "ExportError",
    "ExportSource",
    "HeadExport",
    "InputSpec",
    "OnnxPolicy",
    "action_mask_inputs",
    "action_output_names",
    "export_metadata",
    "export_onnx",
    "exported_head",
    "input_specs",
    "refuse_unsupported",
    "uses_action_masks",
]
