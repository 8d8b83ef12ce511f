"""The pygame viewer: replay agents with an overlay of what the policy thinks, and record them.

* :mod:`.window`: ``Viewer``, the replay loop (timing, episodes, keys, compare, recording);
* :mod:`.pane`: one agent in its ``rgb_array`` environment, its episode, its layout;
* :mod:`.overlay`: the overlay (probability bars, Gaussian gauges, value/reward plot, help);
* :mod:`.controls`, :mod:`.display`: key bindings; the window and screenshots;
* :mod:`.recorder`: streaming MP4 and GIF writers.
"""

from __future__ import annotations

from .display import NoDisplayError, display_available
from .pane import BACKGROUND, RenderError, ReplayResult, ViewerError, make_render_env
from .window import KEYS, Viewer

__all__ = [
    "BACKGROUND",
    "KEYS",
    "NoDisplayError",
    "RenderError",
    "ReplayResult",
    "Viewer",
    "ViewerError",
    "display_available",
    "make_render_env",
]
