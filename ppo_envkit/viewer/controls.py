"""The viewer's keys: what each does (the help panel) and which action a key press asks for."""

from __future__ import annotations

import pygame

#: Playback speeds the arrow keys step through.
SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

KEYS = (
    ("Space", "pause / resume"),
    ("Right or .", "step one frame (pauses)"),
    ("Up or +", "faster"),
    ("Down or -", "slower"),
    ("D", "deterministic / stochastic actions"),
    ("R", "restart the episode (same seed)"),
    ("N", "next episode"),
    ("H or Tab", "show / hide the overlay"),
    ("A", "next agent's decision (several agents)"),
    ("S or F12", "save a screenshot (PNG)"),
    ("F1 or ?", "show / hide this help"),
    ("Q or Esc", "quit"),
)


def key_char(event: pygame.event.Event) -> str:
    """The text a key event typed ("?" for a shifted slash, which has no text without text input)."""
    char = getattr(event, "unicode", "") or ""
    if not char and event.key == pygame.K_SLASH and getattr(event, "mod", 0) & pygame.KMOD_SHIFT:
        char = "?"
    return char


def action_for(key: int, char: str, help_shown: bool) -> str | None:
    """The viewer action a key asks for, one of ``help``, ``close-help``, ``quit``, ``pause``,
    ``step``, ``faster``, ``slower``, ``deterministic``, ``restart``, ``next``, ``hud``,
    ``next-agent``, ``screenshot``; None for other keys. Esc closes the help panel before it quits."""
    k = pygame
    if char == "?" or key in (k.K_F1, k.K_QUESTION):
        return "help"
    if key == k.K_ESCAPE and help_shown:
        return "close-help"
    if char == "+" or key in (k.K_UP, k.K_PLUS, k.K_EQUALS, k.K_KP_PLUS):
        return "faster"
    bindings = {
        (k.K_q, k.K_ESCAPE): "quit",
        (k.K_SPACE, k.K_p): "pause",
        (k.K_RIGHT, k.K_PERIOD): "step",
        (k.K_DOWN, k.K_MINUS, k.K_KP_MINUS): "slower",
        (k.K_d,): "deterministic",
        (k.K_r,): "restart",
        (k.K_n,): "next",
        (k.K_h, k.K_TAB): "hud",
        (k.K_a,): "next-agent",
        (k.K_s, k.K_F12): "screenshot",
    }
    return next((action for keys, action in bindings.items() if key in keys), None)


__all__ = ["KEYS", "SPEEDS", "action_for", "key_char"]
