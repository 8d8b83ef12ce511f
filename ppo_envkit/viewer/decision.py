"""What the policy thinks at one frame, as plain data for the overlay (no pygame).

:func:`decision_view` turns a ``PPO.policy_step`` result into bars for discrete heads
(one group per categorical choice) and gauges for Gaussian ones; :class:`PaneView` is
everything the overlay shows for one agent at one frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from ..environments.masks import mask_size
from ..spaces import COMPOSITE_ACTION_SPACE_TYPES, action_leaves


@dataclass
class BarGroup:
    """Probabilities of one categorical choice; ``chosen`` is highlighted, and choices that
    ``legal`` (booleans, None: all) excludes are shown greyed out."""

    labels: list[str]
    probs: np.ndarray
    chosen: int | None = None
    title: str | None = None
    legal: np.ndarray | None = None


@dataclass
class Gauge:
    """One Gaussian action dimension: mean, std and the action sent, on ``[low, high]``."""

    label: str
    mean: float
    std: float
    sent: float
    low: float
    high: float


@dataclass
class PaneView:
    """Everything the overlay shows for one agent at one frame."""

    title: str
    episode: int
    step: int
    episode_return: float
    value: float | None
    action_text: str
    mode: str
    bars: list[BarGroup] = field(default_factory=list)
    gauges: list[Gauge] = field(default_factory=list)
    values: Sequence[float] = ()
    rewards: Sequence[float] = ()
    outcome: str | None = None
    memory: float | None = None  # the norm of a recurrent policy's state (None: no memory)
    #: The environment's own numbers at this step (``info["metrics"]``, ``run.info_keywords``).
    env_metrics: list[tuple[str, float]] = field(default_factory=list)


def fmt_value(x: float) -> str:
    """A signed number short enough for the overlay."""
    return f"{x:+.2f}" if abs(x) < 1000 else f"{x:+.3g}"


def decision_view(
    decision: dict[str, Any], space: spaces.Space, names: Sequence[str] | None = None
) -> tuple[str, list[BarGroup], list[Gauge]]:
    """(action text, bar groups, gauges) for a ``policy_step`` result in action space ``space``.

    ``names`` labels the actions of a ``Discrete`` space or the dimensions of a ``Box``
    (ignored when its length does not fit).
    """
    mask = decision.get("action_mask")
    mask = None if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    if isinstance(space, COMPOSITE_ACTION_SPACE_TYPES):
        return _composite_view(decision, space, mask, names)
    action = np.asarray(decision["action"])
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)
        labels = list(names) if names is not None and len(names) == n else [str(start + i) for i in range(n)]
        chosen = int(action) - start
        text = f"{int(action)}: {labels[chosen]}" if labels[chosen] != str(int(action)) else str(int(action))
        return text, [BarGroup(labels, np.asarray(decision["probs"]), chosen, legal=mask)], []
    if isinstance(space, spaces.MultiDiscrete):
        flat = action.reshape(-1)
        starts = np.asarray(space.start).reshape(-1)
        groups, offset = [], 0
        for i in range(len(flat)):
            probs = np.asarray(decision[f"probs_{i}"])
            labels = [str(int(starts[i]) + j) for j in range(len(probs))]
            legal = None if mask is None else mask[offset : offset + len(probs)]
            offset += len(probs)
            groups.append(BarGroup(labels, probs, int(flat[i] - starts[i]), title=f"[{i}]", legal=legal))
        return str(flat.tolist()), groups, []
    if isinstance(space, spaces.MultiBinary):
        flat = action.reshape(-1)
        size = len(flat)
        labels = (
            list(names) if names is not None and len(names) == size else [f"bit {i}" for i in range(size)]
        )
        # One bar per bit: the probability that it is 1; the bits sent as 1 are highlighted, and
        # a bit the mask fixes (only one value legal) is greyed out.
        free = None if mask is None else mask.reshape(-1, 2).all(1)
        groups = [
            BarGroup(
                [labels[i]],
                np.asarray(decision["probs"]).reshape(-1)[i : i + 1],
                0 if flat[i] else None,
                legal=None if free is None else free[i : i + 1],
            )
            for i in range(size)
        ]
        return str(flat.tolist()), groups, []
    if isinstance(space, spaces.Box):
        mean = np.asarray(decision["mean"], dtype=np.float64).reshape(-1)
        std = np.asarray(decision["std"], dtype=np.float64).reshape(-1)
        sent = action.astype(np.float64).reshape(-1)
        low = np.asarray(space.low, dtype=np.float64).reshape(-1)
        high = np.asarray(space.high, dtype=np.float64).reshape(-1)
        size = len(sent)
        labels = list(names) if names is not None and len(names) == size else [f"a{i}" for i in range(size)]
        gauges = []
        for i in range(size):
            lo, hi = low[i], high[i]
            if not (np.isfinite(lo) and np.isfinite(hi)):  # unbounded: show mean +- 3 std around 0
                span = max(abs(mean[i]) + 3 * std[i], abs(sent[i]), 1.0)
                lo, hi = -span, span
            gauges.append(Gauge(labels[i], mean[i], std[i], sent[i], float(lo), float(hi)))
        text = "[" + ", ".join(fmt_value(v) for v in sent[:4]) + (", ...]" if size > 4 else "]")
        return text, [], gauges
    return str(action.tolist()), [], []


def _composite_view(
    decision: dict[str, Any], space: spaces.Space, mask: np.ndarray | None, names: Sequence[str] | None
) -> tuple[str, list[BarGroup], list[Gauge]]:
    """Each part of a Tuple/Dict action drawn as its own kind, named by its key (``names``
    label the actions of the first Discrete part: the choice)."""
    texts: list[str] = []
    bars: list[BarGroup] = []
    gauges: list[Gauge] = []
    offset, named = 0, False
    for path, leaf in action_leaves(space):
        name = "/".join(map(str, path))
        value = decision["action"]
        for key in path:
            value = value[key]
        sub = {k[len(name) + 1 :]: v for k, v in decision.items() if k.startswith(f"{name}.")}
        size = mask_size(leaf) or 0
        sub["action"] = value
        sub["action_mask"] = None if mask is None or not size else mask[offset : offset + size]
        offset += size
        use_names = names if isinstance(leaf, spaces.Discrete) and not named else None
        named = named or isinstance(leaf, spaces.Discrete)
        text, part_bars, part_gauges = decision_view(sub, leaf, use_names)
        texts.append(f"{name}={text}")
        for i, bar in enumerate(part_bars):
            bar.title = f"{name}{bar.title or ''}" if bar.title or i == 0 else bar.title
        bars += part_bars
        gauges += [Gauge(f"{name}.{g.label}", g.mean, g.std, g.sent, g.low, g.high) for g in part_gauges]
    return " ".join(texts), bars, gauges


__all__ = ["BarGroup", "Gauge", "PaneView", "decision_view", "fmt_value"]
