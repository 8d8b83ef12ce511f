"""The viewer's overlay, drawn with pygame: panels, probability bars, Gaussian gauges, the
value/reward plot, help, messages.

What to draw comes as plain data from :mod:`.decision`; the ``draw_*`` functions paint it on
a surface. Nothing here steps environments or reads events, so the drawing can be tested
and reused on any surface.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np
import pygame

from .decision import BarGroup, Gauge, PaneView, fmt_value

PANEL = (12, 14, 22, 200)
TEXT = (236, 238, 242)
DIM = (150, 156, 168)
BAR = (84, 148, 255)
BAR_BG = (52, 56, 70)
CHOSEN = (255, 196, 40)
ILLEGAL = (92, 96, 108)  # labels of actions the mask excludes
VALUE = (80, 210, 255)
REWARD = (255, 140, 60)
GOOD = (110, 220, 120)
BAD = (255, 96, 96)

PAD = 10
LINE = 22
BAR_ROW = 20
MAX_BARS = 12
MAX_GAUGES = 6
MAX_ENV_METRICS = 4  # the environment's own numbers shown (the first ones)


class Fonts:
    """The default pygame font at three sizes (created on first use; needs ``pygame.font``)."""

    def __init__(self, small: int = 18, normal: int = 22, large: int = 34):
        if not pygame.font.get_init():
            pygame.font.init()
        self.small = pygame.font.Font(None, small)
        self.normal = pygame.font.Font(None, normal)
        self.large = pygame.font.Font(None, large)


# ----------------------------------------------------------------------------- drawing


def panel(surface: pygame.Surface, rect: pygame.Rect, color: tuple[int, ...] = PANEL) -> None:
    """A translucent rounded rectangle."""
    layer = pygame.Surface(rect.size, pygame.SRCALPHA)
    pygame.draw.rect(layer, color, layer.get_rect(), border_radius=8)
    surface.blit(layer, rect.topleft)


def text(
    surface: pygame.Surface,
    font: pygame.font.Font,
    s: str,
    pos: tuple[int, int],
    color: tuple[int, int, int] = TEXT,
    align: str = "left",
    max_width: int | None = None,
) -> pygame.Rect:
    """Draw ``s`` with its top at ``pos[1]``; ``align`` says which edge ``pos[0]`` is.

    Text wider than ``max_width`` is shortened with an ellipsis in the middle.
    """
    if max_width is not None:
        s = fit(font, s, max_width)
    img = font.render(s, True, color)
    rect = img.get_rect()
    rect.top = pos[1]
    if align == "right":
        rect.right = pos[0]
    elif align == "center":
        rect.centerx = pos[0]
    else:
        rect.left = pos[0]
    surface.blit(img, rect)
    return rect


def fit(font: pygame.font.Font, s: str, max_width: int) -> str:
    """``s``, or its start and end around an ellipsis, no wider than ``max_width`` pixels."""
    if font.size(s)[0] <= max_width:
        return s
    head, tail = s[: len(s) // 2], s[len(s) // 2 :]
    while head or tail:
        if len(head) >= len(tail):
            head = head[:-1]
        else:
            tail = tail[1:]
        candidate = head + "..." + tail
        if font.size(candidate)[0] <= max_width:
            return candidate
    return ""


def info_numbers(info: dict[str, Any], keywords: Sequence[str] = ()) -> dict[str, float]:
    """The numbers of one step's ``info["metrics"]`` and of the ``keywords`` present (the
    environment's own metrics, as training logs them), for the overlay."""
    numbers: dict[str, float] = {}
    metrics = info.get("metrics")
    items = [
        *(metrics.items() if isinstance(metrics, dict) else ()),
        *((k, info[k]) for k in keywords if k in info),
    ]
    for key, value in items:
        try:
            numbers[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return numbers


def info_height(view: PaneView) -> int:
    rows = (7 if view.memory is not None else 6) * LINE
    rows += LINE * min(len(view.env_metrics), MAX_ENV_METRICS)
    for group in view.bars[:MAX_BARS]:
        shown, hidden = _bar_rows(group)
        rows += (LINE if group.title else 0) + BAR_ROW * len(shown) + (LINE if hidden else 0)
    if len(view.bars) > MAX_BARS:
        rows += LINE
    rows += 2 * LINE * min(len(view.gauges), MAX_GAUGES)
    if len(view.gauges) > MAX_GAUGES:
        rows += LINE
    return rows + 2 * PAD + 6


def draw_info(
    surface: pygame.Surface, topleft: tuple[int, int], width: int, view: PaneView, fonts: Fonts
) -> pygame.Rect:
    """The main panel: counters, value, action, and the head's bars or gauges. Returns its rect."""
    rect = pygame.Rect(topleft, (width, info_height(view)))
    panel(surface, rect)
    x0, x1 = rect.left + PAD, rect.right - PAD
    y = rect.top + PAD
    text(surface, fonts.small, view.title, (x0, y + 2), DIM, max_width=x1 - x0)
    y += LINE
    text(surface, fonts.normal, f"episode {view.episode}", (x0, y))
    text(surface, fonts.normal, f"step {view.step}", (x1, y), align="right")
    y += LINE
    color = GOOD if view.episode_return >= 0 else BAD
    text(surface, fonts.normal, "return", (x0, y), DIM)
    text(surface, fonts.normal, f"{view.episode_return:.1f}", (x1, y), color, align="right")
    y += LINE
    text(surface, fonts.normal, "value", (x0, y), DIM)
    shown = "-" if view.value is None else f"{view.value:.2f}"
    text(surface, fonts.normal, shown, (x1, y), VALUE, align="right")
    y += LINE
    if view.memory is not None:  # how much the recurrent state holds (it grows as it remembers)
        text(surface, fonts.normal, "memory |h|", (x0, y), DIM)
        text(surface, fonts.normal, f"{view.memory:.2f}", (x1, y), VALUE, align="right")
        y += LINE
    for name, number in view.env_metrics[:MAX_ENV_METRICS]:  # the environment's own numbers
        label = text(surface, fonts.normal, name, (x0, y), DIM, max_width=(x1 - x0) // 2)
        text(surface, fonts.normal, fmt_value(number), (x1, y), TEXT, align="right")
        y += LINE
    label = text(surface, fonts.normal, "action", (x0, y), DIM)
    text(surface, fonts.normal, view.action_text, (x1, y), CHOSEN, "right", max_width=x1 - label.right - 12)
    y += LINE
    text(surface, fonts.small, view.mode, (x0, y + 2), DIM, max_width=x1 - x0)
    y += LINE + 4
    pygame.draw.line(surface, BAR_BG, (x0, y - 4), (x1, y - 4))
    for group in view.bars[:MAX_BARS]:
        y = _draw_bars(surface, group, x0, x1, y, fonts)
    if len(view.bars) > MAX_BARS:
        text(surface, fonts.small, f"+{len(view.bars) - MAX_BARS} more", (x0, y + 2), DIM)
        y += LINE
    for gauge in view.gauges[:MAX_GAUGES]:
        y = _draw_gauge(surface, gauge, x0, x1, y, fonts)
    if len(view.gauges) > MAX_GAUGES:
        text(surface, fonts.small, f"+{len(view.gauges) - MAX_GAUGES} more dimensions", (x0, y + 2), DIM)
    return rect


def _draw_bars(surface: pygame.Surface, group: BarGroup, x0: int, x1: int, y: int, fonts: Fonts) -> int:
    if group.title:
        text(surface, fonts.small, group.title, (x0, y + 2), DIM)
        y += LINE
    label_w = min(120, (x1 - x0) // 2)
    bar_x, bar_w = x0 + label_w + 8, x1 - x0 - label_w - 8 - 44
    order, hidden = _bar_rows(group)
    for i in order:
        p = float(group.probs[i])
        chosen = i == group.chosen
        legal = group.legal is None or bool(group.legal[i])
        shade = TEXT if chosen else DIM if legal else ILLEGAL
        text(surface, fonts.small, group.labels[i], (x0 + label_w, y + 3), shade, "right", max_width=label_w)
        if not legal:  # masked: an empty outline, no probability
            pygame.draw.rect(surface, BAR_BG, (bar_x, y + 3, bar_w, BAR_ROW - 6), width=1, border_radius=3)
            text(surface, fonts.small, "masked", (x1, y + 3), ILLEGAL, "right")
            y += BAR_ROW
            continue
        pygame.draw.rect(surface, BAR_BG, (bar_x, y + 3, bar_w, BAR_ROW - 6), border_radius=3)
        fill = round(bar_w * min(max(p, 0.0), 1.0))
        if fill > 0:
            pygame.draw.rect(
                surface, CHOSEN if chosen else BAR, (bar_x, y + 3, fill, BAR_ROW - 6), border_radius=3
            )
        text(surface, fonts.small, f"{p:.2f}", (x1, y + 3), shade, "right")
        y += BAR_ROW
    if hidden:
        text(surface, fonts.small, f"+ {hidden} masked actions (illegal here)", (x0, y + 2), ILLEGAL)
        y += LINE
    return y


def _bar_rows(group: BarGroup) -> tuple[list[int], int]:
    """(the choices to draw a bar for, how many masked ones are left out). With many choices:
    the legal ones only (a mask leaves few), the most likely first, at most :data:`MAX_BARS`."""
    n = len(group.labels)
    if n <= MAX_BARS:
        return list(range(n)), 0
    if group.legal is None:
        return sorted(np.argsort(-group.probs, kind="stable")[:MAX_BARS].tolist()), 0
    legal = np.flatnonzero(group.legal)
    shown = sorted(legal[np.argsort(-group.probs[legal], kind="stable")][:MAX_BARS].tolist())
    return shown, n - len(legal)


def _draw_gauge(surface: pygame.Surface, g: Gauge, x0: int, x1: int, y: int, fonts: Fonts) -> int:
    detail = f"mean {fmt_value(g.mean)}  std {g.std:.2f}  sent {fmt_value(g.sent)}"
    right = text(surface, fonts.small, detail, (x1, y + 3), DIM, "right")
    text(surface, fonts.small, g.label, (x0, y + 3), TEXT, max_width=right.left - x0 - 8)
    y += LINE
    top, height = y + 2, LINE - 8
    pygame.draw.rect(surface, BAR_BG, (x0, top, x1 - x0, height), border_radius=3)

    def at(v: float) -> int:
        frac = (v - g.low) / (g.high - g.low) if g.high > g.low else 0.5
        return x0 + round((x1 - x0) * min(max(frac, 0.0), 1.0))

    lo, hi = at(g.mean - g.std), at(g.mean + g.std)
    pygame.draw.rect(surface, BAR, (lo, top, max(hi - lo, 2), height), border_radius=3)
    if g.low < 0 < g.high:
        pygame.draw.line(surface, DIM, (at(0.0), top - 2), (at(0.0), top + height + 1))
    pygame.draw.line(surface, TEXT, (at(g.mean), top), (at(g.mean), top + height - 1), 2)
    sx = at(g.sent)
    pygame.draw.polygon(
        surface, CHOSEN, [(sx, top + height - 3), (sx - 5, top + height + 4), (sx + 5, top + height + 4)]
    )
    return y + LINE


def draw_plot(
    surface: pygame.Surface,
    rect: pygame.Rect,
    values: Sequence[float],
    rewards: Sequence[float],
    fonts: Fonts,
) -> pygame.Rect:
    """Value estimate and reward over the episode, one strip each, with their ranges."""
    panel(surface, rect)
    inner = rect.inflate(-2 * PAD, -2 * PAD)
    text(surface, fonts.small, "value", (inner.left, inner.top), VALUE)
    text(surface, fonts.small, "reward", (inner.left + 52, inner.top), REWARD)
    text(surface, fonts.small, f"{len(rewards)} steps", (inner.right, inner.top), DIM, "right")
    top = inner.top + LINE - 2
    strip_h = (inner.bottom - top - 6) // 2
    horizon = max(len(values), len(rewards), 50)
    for i, (series, color) in enumerate(((values, VALUE), (rewards, REWARD))):
        strip = pygame.Rect(inner.left, top + i * (strip_h + 6), inner.width - 48, strip_h)
        pygame.draw.rect(surface, BAR_BG, strip, 1)
        _series(surface, strip, np.asarray(series, dtype=np.float64), horizon, color, fonts)
    return rect


def _series(
    surface: pygame.Surface, strip: pygame.Rect, y: np.ndarray, horizon: int, color: Any, fonts: Fonts
) -> None:
    y = y[np.isfinite(y)]
    if len(y) == 0:
        return
    lo, hi = float(min(y.min(), 0.0)), float(max(y.max(), 0.0))
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    text(surface, fonts.small, f"{hi:.3g}", (strip.right + 46, strip.top - 2), DIM, "right")
    text(surface, fonts.small, f"{lo:.3g}", (strip.right + 46, strip.bottom - 12), DIM, "right")

    def py(v: np.ndarray) -> np.ndarray:
        return strip.bottom - 1 - (v - lo) / (hi - lo) * (strip.height - 2)

    zero = int(py(np.array(0.0)))
    pygame.draw.line(surface, DIM, (strip.left, zero), (strip.right - 1, zero))
    n = len(y)
    width = max(1, round(strip.width * n / horizon))
    if n <= width:  # a polyline through every point
        xs = strip.left + np.arange(n) * (strip.width - 1) / max(horizon - 1, 1)
        points = list(zip(xs.tolist(), py(y).tolist(), strict=True))
        if len(points) == 1:
            pygame.draw.circle(surface, color, (round(points[0][0]), round(points[0][1])), 2)
        else:
            pygame.draw.lines(surface, color, False, points, 2)
        return
    # More points than pixels: one vertical min-max segment per column, so spikes stay visible.
    edges = np.linspace(0, n, width + 1).astype(int)
    for col in range(width):
        chunk = y[edges[col] : max(edges[col + 1], edges[col] + 1)]
        x = strip.left + col
        pygame.draw.line(surface, color, (x, int(py(chunk.max()))), (x, int(py(chunk.min()))), 2)


def draw_help(surface: pygame.Surface, keys: Sequence[tuple[str, str]], fonts: Fonts) -> pygame.Rect:
    """A centred panel listing the keys."""
    w = min(surface.get_width() - 40, 460)
    h = min(surface.get_height() - 40, 2 * PAD + 48 + LINE * len(keys) + LINE)
    rect = pygame.Rect(0, 0, w, h)
    rect.center = surface.get_rect().center
    panel(surface, rect, (12, 14, 22, 230))
    text(surface, fonts.large, "Keys", (rect.left + PAD + 4, rect.top + PAD))
    y = rect.top + PAD + 40
    for key, what in keys:
        text(surface, fonts.normal, key, (rect.left + PAD + 4, y), CHOSEN)
        text(surface, fonts.normal, what, (rect.left + 150, y))
        y += LINE
    text(surface, fonts.small, "F1 or ? closes this panel", (rect.centerx, y + 6), DIM, "center")
    return rect


def draw_toast(surface: pygame.Surface, message: str, fonts: Fonts) -> pygame.Rect:
    """A short message near the bottom centre."""
    img = fonts.normal.render(message, True, TEXT)
    rect = img.get_rect().inflate(24, 14)
    rect.midbottom = (surface.get_width() // 2, surface.get_height() - 16)
    panel(surface, rect, (12, 14, 22, 225))
    surface.blit(img, img.get_rect(center=rect.center))
    return rect


def draw_banner(surface: pygame.Surface, area: pygame.Rect, message: str, fonts: Fonts) -> pygame.Rect:
    """A large message across the middle of ``area`` (end of an episode)."""
    img = fonts.large.render(message, True, TEXT)
    rect = img.get_rect().inflate(32, 20)
    rect.center = (area.centerx, area.top + int(area.height * 0.44))
    panel(surface, rect, (12, 14, 22, 215))
    surface.blit(img, img.get_rect(center=rect.center))
    return rect


def draw_badge(surface: pygame.Surface, topleft: tuple[int, int], message: str, fonts: Fonts) -> pygame.Rect:
    """A small label (e.g. PAUSED when the overlay is hidden)."""
    img = fonts.normal.render(message, True, CHOSEN)
    rect = img.get_rect().inflate(16, 10)
    rect.topleft = topleft
    panel(surface, rect)
    surface.blit(img, img.get_rect(center=rect.center))
    return rect


__all__ = [
    "Fonts",
    "draw_banner",
    "draw_help",
    "draw_info",
    "draw_plot",
    "draw_toast",
    "info_numbers",
]
