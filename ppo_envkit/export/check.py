"""``ppo-envkit export --check``: does the exported graph act as the agent does?

Observations are recorded by letting the agent play its environment (deterministic
actions, the agent's own, one observation at a time); onnxruntime then acts on all of
them in one batch. Discrete actions must be equal, continuous ones within
:data:`CONTINUOUS_TOLERANCE`. A disagreement is a one-line :class:`ExportError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from ..spaces import COMPOSITE_ACTION_SPACE_TYPES, action_leaves, encode_text, require_fits, space_from_data
from .onnx import ExportError, ExportSource, refuse_unsupported, require

#: Largest difference allowed between onnxruntime's and the agent's continuous actions.
CONTINUOUS_TOLERANCE = 1e-5


def stack_observations(observations: list[Any]) -> Any:
    """A list of single observations (arrays, or dicts/tuples of them) -> one batch."""
    first = observations[0]
    if isinstance(first, dict):
        return {k: stack_observations([o[k] for o in observations]) for k in first}
    if isinstance(first, tuple):
        return tuple(stack_observations([o[i] for o in observations]) for i in range(len(first)))
    return np.stack([np.asarray(o) for o in observations])


def onnx_feeds(
    batch: Any, inputs: list[dict[str, Any]], masks: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A batch of raw observations (and their action masks, for a masked model) -> the
    session's inputs (``inputs``: the file's metadata)."""
    feeds = {}
    for spec in inputs:
        if spec["name"] == "action_mask":
            if masks is None:
                raise ExportError("this model takes an action_mask input: give the masks of the observations")
            feeds["action_mask"] = np.asarray(masks, dtype=bool)
            continue
        leaf = batch
        for key in spec["path"]:
            leaf = leaf[key]
        if "text_hash_size" in spec:  # text goes in as its word counts (the graph takes no strings)
            size = int(spec["text_hash_size"])
            leaf = (
                [encode_text(text, size) for text in leaf]
                if not isinstance(leaf, str)
                else [encode_text(leaf, size)]
            )
        feeds[spec["name"]] = np.asarray(leaf, dtype=spec["dtype"])
    return feeds


class OnnxAgent:
    """An exported policy in onnxruntime: ``predict(batch)`` like the agent's, batched only."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.metadata = self.session.get_modelmeta().custom_metadata_map
        self.inputs = json.loads(self.metadata["inputs"])
        self.action_space = space_from_data(json.loads(self.metadata["action_space"]))

    def run(self, batch: Any, masks: np.ndarray | None = None) -> list[np.ndarray]:
        """Every output (action first) for a batch of raw observations (and their masks)."""
        return self.session.run(None, onnx_feeds(batch, self.inputs, masks))

    def predict(self, batch: Any, masks: np.ndarray | None = None) -> Any:
        """The batch's actions; a composite action as the space's structure of batched parts."""
        outputs = self.run(batch, masks)
        if not isinstance(self.action_space, COMPOSITE_ACTION_SPACE_TYPES):
            return outputs[0]
        return rebuild_action(self.action_space, outputs)


def rebuild_action(space: spaces.Space, outputs: list[np.ndarray]) -> Any:
    """A composite action (batch) in the structure of ``space`` from the ``action/...`` outputs,
    which come first, one per part in the space's order."""
    parts = iter(outputs)

    def build(sub: spaces.Space) -> Any:
        if isinstance(sub, spaces.Dict):
            return {key: build(s) for key, s in sub.spaces.items()}
        if isinstance(sub, spaces.Tuple):
            return tuple(build(s) for s in sub.spaces)
        return next(parts)

    return build(space)


def _predict(source: ExportSource, obs: Any, mask: Any = None) -> Any:
    """The agent's deterministic action(s), as ``PPO.predict`` gives them."""
    return source.policy.predict(obs, deterministic=True, action_mask=mask)


def record_observations(
    source: ExportSource, steps: int, seed: int = 0
) -> tuple[list[Any], list[np.ndarray], np.ndarray | None]:
    """``steps`` observations from the agent playing its environment (episodes seeded
    ``seed``, ``seed + 1``, ...; its frame stacking and masks as in training), with the
    deterministic action it took at each, and the action masks in force (None without)."""
    from ..environments.agent_stack import agent_spaces
    from ..environments.factory import make_configured_env

    policy = source.policy
    env = make_configured_env(source.config.env)
    try:
        layout = agent_spaces(env)  # several agents: each agent's observation is one
        require_fits(source.config.env.id, policy, env if layout is None else layout)
        observations, actions, masks = [], [], []
        obs, info = env.reset(seed=seed)
        episode = 0
        while len(observations) < steps:
            mask = info.get("action_mask")
            if layout is not None:  # the agents' rows, acted on as a batch
                rows = None if mask is None else np.asarray(mask).reshape(layout.num_agents, -1)
                action = _predict(source, obs, rows)
                observations.extend(obs)
                actions.extend(np.asarray(action))
                masks.extend([None] * len(obs) if rows is None else rows)
            else:
                action = _predict(source, obs, mask)
                observations.append(obs)
                actions.append(action if isinstance(action, dict | tuple) else np.asarray(action))
                masks.append(mask)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                episode += 1
                obs, info = env.reset(seed=seed + episode)
        return observations, actions, None if masks[0] is None else np.stack(masks)
    finally:
        env.close()


@dataclass
class CheckResult:
    observations: int
    mismatches: int
    max_abs_diff: float
    exact: bool  # discrete actions: compared for equality
    first_mismatch: int | None = None

    def summary(self) -> str:
        how = "identical actions" if self.exact else f"actions within {CONTINUOUS_TOLERANCE:g}"
        return (
            f"onnxruntime and the agent agree on {self.observations - self.mismatches} of "
            f"{self.observations} observations ({how}; largest difference {self.max_abs_diff:.3g})"
        )


def _leaves(actions: Any, space: spaces.Space) -> list[tuple[np.ndarray, spaces.Space]]:
    out = []
    for path, leaf in action_leaves(space):
        value = actions
        for key in path:
            value = value[key]
        out.append((np.asarray(value), leaf))
    return out


def compare_actions(expected: Any, actual: Any, action_space: spaces.Space) -> CheckResult:
    """Row by row: equal for discrete spaces, within the tolerance for ``Box`` (a composite
    action: each part so)."""
    if isinstance(action_space, COMPOSITE_ACTION_SPACE_TYPES):
        results = [
            compare_actions(e, a, leaf)
            for (e, leaf), (a, _) in zip(
                _leaves(expected, action_space), _leaves(actual, action_space), strict=True
            )
        ]
        n = results[0].observations
        bad = np.zeros(n, bool)
        for (e, leaf), (a, _) in zip(
            _leaves(expected, action_space), _leaves(actual, action_space), strict=True
        ):
            bad |= _bad_rows(e, a, leaf)
        first = int(np.flatnonzero(bad)[0]) if bad.any() else None
        worst = max(r.max_abs_diff for r in results)
        return CheckResult(n, int(bad.sum()), worst, all(r.exact for r in results), first)
    expected, actual = np.asarray(expected), np.asarray(actual)
    n = len(expected)
    if actual.shape != expected.shape:
        raise ExportError(
            f"the exported model's actions have shape {actual.shape}, the agent's {expected.shape}"
        )
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).reshape(n, -1)
    worst = diff.max(1) if diff.size else np.zeros(n)
    exact = not isinstance(action_space, spaces.Box)
    bad = worst > 0 if exact else ~(worst <= CONTINUOUS_TOLERANCE)  # NaN counts as a mismatch
    first = int(np.flatnonzero(bad)[0]) if bad.any() else None
    return CheckResult(n, int(bad.sum()), float(np.nanmax(worst)) if n else 0.0, exact, first)


def _bad_rows(expected: np.ndarray, actual: np.ndarray, space: spaces.Space) -> np.ndarray:
    n = len(expected)
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64)).reshape(n, -1)
    worst = diff.max(1) if diff.size else np.zeros(n)
    return worst > 0 if not isinstance(space, spaces.Box) else ~(worst <= CONTINUOUS_TOLERANCE)


def check_export(
    source: ExportSource,
    path: str | Path,
    *,
    observations: list[Any] | None = None,
    steps: int = 1000,
    seed: int = 0,
) -> CheckResult:
    """onnxruntime's actions vs the agent's on ``observations`` (default: ``steps`` recorded in
    the agent's environment). Raises :class:`ExportError` in one line on any mismatch."""
    refuse_unsupported(source.policy)
    masks = None
    if observations is None:
        observations, actions, masks = record_observations(source, steps, seed)
        expected = stack_observations(actions)
    else:
        expected = _predict(source, stack_observations(observations))
    model = OnnxAgent(path)
    if masks is not None and not any(spec["name"] == "action_mask" for spec in model.inputs):
        masks = None  # exported without the mask input (action_mask=False): compare unmasked
        expected = _predict(source, stack_observations(observations))
    actual = model.predict(stack_observations(observations), masks)
    result = compare_actions(expected, actual, source.policy.action_space)
    first = result.first_mismatch
    if first is not None:
        space = source.policy.action_space
        mine = [e[first].tolist() for e, _ in _leaves(expected, space)]
        theirs = [a[first].tolist() for a, _ in _leaves(actual, space)]
        if not isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
            mine, theirs = mine[0], theirs[0]
        raise ExportError(
            f"{path}: the exported model disagrees with the agent on {result.mismatches} of "
            f"{result.observations} observations (first: #{first}, agent {mine}, "
            f"onnxruntime {theirs}; largest difference {result.max_abs_diff:.3g})"
        )
    return result


__all__ = [
    "CONTINUOUS_TOLERANCE",
    "CheckResult",
    "OnnxAgent",
    "check_export",
    "compare_actions",
    "onnx_feeds",
    "rebuild_action",
    "record_observations",
    "stack_observations",
]
