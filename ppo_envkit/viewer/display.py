"""Where the viewer shows its canvas: is there a display, open a window, fit the canvas into it."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pygame

from .pane import BACKGROUND, ViewerError


class NoDisplayError(ViewerError):
    """No display to open a window on."""


NO_DISPLAY_HINT = (
    "to record without a window use --headless --record FILE.mp4 "
    "(Python: Viewer(agent, headless=True, record='replay.mp4').run())"
)


def display_available() -> bool:
    """False where opening a window is bound to fail (Linux without X11 or Wayland)."""
    if os.environ.get("SDL_VIDEODRIVER"):
        return True  # an explicit choice: x11, wayland, dummy, offscreen, ...
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def open_window(canvas_size: Sequence[int], caption: str) -> None:
    """A resizable window for a canvas of ``canvas_size``, shrunk to fit the desktop."""
    if not display_available():
        raise NoDisplayError(f"no display to open a window on (DISPLAY is not set); {NO_DISPLAY_HINT}")
    try:
        pygame.display.init()
        w, h = canvas_size
        scale = 1.0
        desktops = pygame.display.get_desktop_sizes()
        if desktops:
            scale = min(1.0, 0.92 * desktops[0][0] / w, 0.9 * desktops[0][1] / h)
        pygame.display.set_mode((round(w * scale), round(h * scale)), pygame.RESIZABLE)
    except pygame.error as exc:
        raise NoDisplayError(f"cannot open a window ({exc}); {NO_DISPLAY_HINT}") from None
    pygame.display.set_caption(caption)
    pygame.key.set_repeat(300, 40)


def present(canvas: pygame.Surface) -> None:
    """Show ``canvas`` in the window, scaled to fit it and centred (the window is resizable)."""
    window = pygame.display.get_surface()
    if window is None:
        return
    ww, wh = window.get_size()
    cw, ch = canvas.get_size()
    if (ww, wh) == (cw, ch):
        window.blit(canvas, (0, 0))
    else:
        scale = min(ww / cw, wh / ch)
        size = (max(1, int(cw * scale)), max(1, int(ch * scale)))
        window.fill(BACKGROUND)
        window.blit(pygame.transform.smoothscale(canvas, size), ((ww - size[0]) // 2, (wh - size[1]) // 2))
    pygame.display.flip()


def free_screenshot_path(folder: Path, env_id: str, episode: int, step: int) -> Path:
    """``ENV-episodeE-stepS.png`` in ``folder``, with ``-2``, ``-3``, ... if taken."""
    stem = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', env_id)}-episode{episode}-step{step}"
    path, n = folder / f"{stem}.png", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}.png", n + 1
    return path


__all__ = [
    "NO_DISPLAY_HINT",
    "NoDisplayError",
    "display_available",
    "free_screenshot_path",
    "open_window",
    "present",
]
