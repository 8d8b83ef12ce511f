"""The pygame viewer: watch an agent act, step through it, see what it thinks, record it.

``Viewer(agent).run()`` opens a window; ``Viewer(agent, headless=True, record="a.mp4").run()``
records without one. Scripts and tests drive it frame by frame instead::

    viewer = Viewer("runs/lander", headless=True)
    viewer.press(pygame.K_SPACE)   # any key of the help panel (pygame events, with a window)
    viewer.tick(10)                # ten frames, no sleeping
    pixels = viewer.frame_array()  # [height, width, 3] uint8, overlay included

Time is simulated: a frame advances the viewer's clock by ``dt`` (by default the
time of one environment step at the current speed, so one step per frame), and
only :meth:`run` with a window waits for the real clock. Each agent plays in its
own environment copy (a :class:`~ppo_envkit.viewer.pane.Pane`); with ``compare``
two panes play side by side and start every episode from the same seed.

A recording gets one frame per environment step (plus the first frame of each
episode, and ``end_hold`` seconds on its last frame) at the replay's fps, with
the overlay but without transient things (help panel, messages).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np
import pygame

from ..agent import PPO
from . import overlay
from .controls import KEYS, SPEEDS, action_for, key_char
from .display import free_screenshot_path, open_window, present
from .pane import BACKGROUND, Pane, ReplayResult, layout_panes, load
from .recorder import Recorder, check_record_path, open_recorder

#: Steps a frame may take at most when catching up (high speed, or a slow frame).
MAX_STEPS_PER_FRAME = 32
MARGIN = 10


class Viewer:
    """Plays one agent (or two, side by side) in a pygame window or headless.

    ``agent`` and ``compare`` are :class:`PPO` objects or agent/run directories.
    ``episodes`` stops after that many finished episodes (default: until quit; 1
    when headless). ``fps`` defaults to the environment's ``metadata["render_fps"]``.
    Episode *k* of every pane resets with seed ``seed + k``.
    """

    def __init__(
        self,
        agent: PPO | str | Path,
        *,
        compare: PPO | str | Path | None = None,
        episodes: int | None = None,
        fps: float | None = None,
        seed: int = 0,
        deterministic: bool = True,
        record: str | Path | None = None,
        headless: bool = False,
        hud: bool = True,
        end_hold: float = 1.0,
        screenshot_dir: str | Path = ".",
        log: Callable[[str], None] | None = None,
    ):
        if episodes is not None and episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if end_hold < 0:
            raise ValueError(f"end_hold must be >= 0, got {end_hold}")
        self.record_path = check_record_path(record) if record is not None else None
        self.headless = headless
        self.episodes = 1 if episodes is None and headless else episodes
        self.seed = int(seed)
        self.deterministic = deterministic
        self.show_hud = hud
        self.show_help = False
        self.paused = False
        self.running = True
        self.speed_index = SPEEDS.index(1.0)
        self.screenshot_dir = Path(screenshot_dir)
        self.log = log or (lambda message: None)
        self.time = 0.0  # simulated seconds
        self.episode_index = 0
        self.finished_episodes = 0
        self.panes: list[Pane] = []
        try:
            for a in (agent, compare) if compare is not None else (agent,):
                self.panes.append(Pane(load(a)))
            metadata = self.panes[0].env.metadata
            self.fps = float(fps or metadata.get("render_fps") or 30)
            self.hold_frames = round(end_hold * self.fps)
            self._start_episode(0)
        except BaseException:
            self._close_panes()
            raise
        self.result = ReplayResult(
            labels=[p.label for p in self.panes],
            returns=[[] for _ in self.panes],
            lengths=[[] for _ in self.panes],
            record=self.record_path,
        )
        self.fonts = overlay.Fonts()
        self.canvas = pygame.Surface(layout_panes(self.panes))
        self._recorder: Recorder | None = None
        self._opened = False
        self._window_open = False
        self._hold_left = 0
        self._pending_steps = 0
        self._accumulator = 0.0
        self._dirty = False  # state changed outside a step (restart): record it
        self._screenshot_requested = False
        self._toast: tuple[str, float] | None = None
        self._compose()

    # ----------------------------------------------------------------------------- properties

    @property
    def surface(self) -> pygame.Surface:
        """The canvas: every pane at full resolution, as last drawn (what is shown and recorded)."""
        return self.canvas

    @property
    def speed(self) -> float:
        return SPEEDS[self.speed_index]

    @property
    def step_count(self) -> int:
        """Steps taken in the current episode by the first pane."""
        return self.panes[0].step

    @property
    def frames_recorded(self) -> int:
        return self._recorder.frames if self._recorder is not None else 0

    def frame_array(self) -> np.ndarray:
        """The canvas as a uint8 array ``[height, width, 3]``."""
        w, h = self.canvas.get_size()
        return np.frombuffer(pygame.image.tobytes(self.canvas, "RGB"), np.uint8).reshape(h, w, 3).copy()

    def hud_rects(self) -> list[pygame.Rect]:
        """Where the overlay of each pane is drawn (info panel, plot), in canvas coordinates."""
        return [r for pane in self.panes for r in pane.hud_rects(pane.view(""))]

    # ----------------------------------------------------------------------------- lifecycle

    def open(self) -> Viewer:
        """Open the window (unless headless) and the recording; called by :meth:`tick` and :meth:`run`."""
        if self._opened:
            return self
        if not self.headless:
            self._open_window()
        self._opened = True
        if self.record_path is not None:
            self._recorder = open_recorder(self.record_path, self.fps)
            self._record()
        if not self.headless:
            self._show_toast("F1 or ? shows the keys", 4.0)
        return self

    def _open_window(self) -> None:
        names = " vs ".join(p.label for p in self.panes)
        open_window(self.canvas.get_size(), f"ppo-envkit replay: {self.panes[0].env_id} ({names})")
        self._window_open = True

    def close(self) -> None:
        """Finish the recording, close the environments and the window."""
        if self._recorder is not None:
            self._recorder.close()
            self.result.frames_recorded = self._recorder.frames
            self.log(f"recorded {self._recorder.frames} frames to {self._recorder.path}")
            self._recorder = None
        self._close_panes()
        if self._window_open:
            pygame.display.quit()
            self._window_open = False
        self.running = False

    def _close_panes(self) -> None:
        for pane in self.panes:
            pane.close()

    def __enter__(self) -> Viewer:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------------- running

    def run(self) -> ReplayResult:
        """Play until quit or ``episodes`` are done (headless: as fast as possible), then close."""
        try:
            self.open()
            if self.headless:
                self.paused = False  # nothing could resume it
                while self.running:
                    self._frame(None)
            else:
                clock = pygame.time.Clock()
                while self.running:
                    rate = self.fps * self.speed
                    target = 30.0 if self.paused else min(max(rate, 30.0), 60.0)
                    # After a stall (a window being dragged, say) do not race to catch up.
                    self._frame(min(clock.tick(target) / 1000.0, 0.25))
        finally:
            self.close()
        return self.result

    def tick(self, frames: int = 1, dt: float | None = None) -> Viewer:
        """Run ``frames`` frames without sleeping; by default each takes one environment step.

        A frame pumps window events (with a window), steps the panes as time and the
        pause state allow, draws, records, and shows the result.
        """
        self.open()
        for _ in range(frames):
            if not self.running:
                break
            self._frame(dt)
        return self

    def redraw(self) -> Viewer:
        """Draw (and show) the current state again without stepping or recording."""
        self._compose()
        self._draw_transient()
        self._present()
        return self

    def _frame(self, dt: float | None) -> None:
        if dt is None:
            dt = 1.0 / (self.fps * self.speed)
        if self._window_open:
            for event in pygame.event.get():
                self.handle_event(event)
        if not self.running:
            return
        recording = self._recorder is not None
        if self._dirty and recording:
            self._compose()
            self._record()
        self._dirty = False
        composed = False
        for _ in range(self._steps_due(dt)):
            if not self._advance():
                break
            composed = False
            if recording:
                self._compose()
                self._record()
                composed = True
        if not composed:
            self._compose()
        if self._screenshot_requested:
            self._screenshot_requested = False
            self._save_screenshot()
        self._draw_transient()
        self._present()
        self.time += dt

    def _steps_due(self, dt: float) -> int:
        if self.paused:
            steps, self._pending_steps, self._accumulator = self._pending_steps, 0, 0.0
            return steps
        self._accumulator += dt * self.fps * self.speed
        steps = int(self._accumulator + 1e-6)
        self._accumulator = max(self._accumulator - steps, 0.0)
        if steps > MAX_STEPS_PER_FRAME:
            steps, self._accumulator = MAX_STEPS_PER_FRAME, 0.0
        return steps

    def _advance(self) -> bool:
        """One tick: every pane steps, or holds its last frame, or the next episode starts.

        Returns False (and stops) when the requested number of episodes is done.
        """
        if all(p.done for p in self.panes):
            if self._hold_left > 0:
                self._hold_left -= 1
                return True
            if self.episodes is not None and self.finished_episodes >= self.episodes:
                self.running = False
                return False
            self._start_episode(self.episode_index + 1)
            return True
        for pane in self.panes:
            pane.advance(self.deterministic)
        if all(p.done for p in self.panes):
            self._finish_episode()
        return True

    def _start_episode(self, index: int) -> None:
        self.episode_index = index
        for pane in self.panes:  # the same seed for every pane
            pane.reset(self.seed + index, index, self.deterministic)
        self._hold_left = 0

    def _finish_episode(self) -> None:
        self.finished_episodes += 1
        self._hold_left = self.hold_frames
        parts = []
        for i, pane in enumerate(self.panes):
            self.result.returns[i].append(pane.episode_return)
            self.result.lengths[i].append(pane.step)
            parts.append(f"return {pane.episode_return:.1f} in {pane.step} steps ({pane.outcome})")
        self.log(
            f"episode {self.episode_index + 1} (seed {self.seed + self.episode_index}): " + " | ".join(parts)
        )

    # ----------------------------------------------------------------------------- input

    def press(self, key: int, unicode: str = "", mod: int = 0) -> None:
        """Act as if ``key`` (a ``pygame.K_*`` constant) was pressed."""
        self.handle_event(pygame.event.Event(pygame.KEYDOWN, key=key, unicode=unicode, mod=mod))

    def handle_event(self, event: pygame.event.Event) -> None:
        """React to one pygame event (keys, quit). Resizing needs nothing: frames fit the window."""
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            self._do(action_for(event.key, key_char(event), self.show_help))

    def _do(self, action: str | None) -> None:
        """Carry out one of :func:`~ppo_envkit.viewer.controls.action_for`'s actions."""
        if action == "help":
            self.show_help = not self.show_help
        elif action == "close-help":
            self.show_help = False
        elif action == "quit":
            self.running = False
        elif action == "pause":
            self.paused = not self.paused
            self._show_toast("paused" if self.paused else "playing")
        elif action == "step":
            self.paused = True
            self._pending_steps += 1
        elif action in ("faster", "slower"):
            step = 1 if action == "faster" else -1
            self.speed_index = min(max(self.speed_index + step, 0), len(SPEEDS) - 1)
            self._show_toast(f"speed {self.speed:g}x")
        elif action == "deterministic":
            self.set_deterministic(not self.deterministic)
        elif action in ("restart", "next"):
            self._start_episode(self.episode_index + (action == "next"))
            self._dirty = True
            what = "episode restarted" if action == "restart" else "next episode"
            self._show_toast(f"{what} (seed {self.seed + self.episode_index})")
        elif action == "hud":
            self.show_hud = not self.show_hud
        elif action == "next-agent" and any(p.selection.active for p in self.panes):
            names = [p.next_agent(self.deterministic) for p in self.panes if p.selection.active]
            self._dirty = True
            self._show_toast(f"showing {names[0]}'s decision")
        elif action == "screenshot":
            self._screenshot_requested = True

    def set_deterministic(self, deterministic: bool) -> None:
        """Switch between the most likely action and sampled ones; decides again for the frame shown."""
        self.deterministic = deterministic
        for pane in self.panes:
            pane.redecide(deterministic)
        self._show_toast(
            "deterministic actions (most likely)" if deterministic else "stochastic actions (sampled)"
        )

    def _show_toast(self, message: str, seconds: float = 1.5) -> None:
        self._toast = (message, self.time + seconds)

    # ----------------------------------------------------------------------------- drawing

    def _mode_text(self) -> str:
        mode = "deterministic" if self.deterministic else "stochastic"
        return f"{mode} · {self.speed:g}x · {self.fps:g} fps" + (" · paused" if self.paused else "")

    def _compose(self) -> None:
        """Draw frames and overlay onto the canvas (what is recorded)."""
        self.canvas.fill(BACKGROUND)
        mode = self._mode_text()
        for pane in self.panes:
            pane.draw(self.canvas, self.fonts, mode if self.show_hud else None)

    def _draw_transient(self) -> None:
        """Things shown but neither recorded nor in screenshots: help, messages, PAUSED badge."""
        if self.paused and not self.show_hud:
            overlay.draw_badge(self.canvas, (MARGIN, MARGIN), "PAUSED", self.fonts)
        if self._toast is not None:
            message, until = self._toast
            if self.time < until:
                overlay.draw_toast(self.canvas, message, self.fonts)
            else:
                self._toast = None
        if self.show_help:
            overlay.draw_help(self.canvas, KEYS, self.fonts)

    def _present(self) -> None:
        if self._window_open:
            present(self.canvas)

    def _record(self) -> None:
        if self._recorder is not None:
            self._recorder.write(self.frame_array())

    # ----------------------------------------------------------------------------- screenshots

    def screenshot(self, path: str | Path | None = None) -> Path:
        """Save the frames and overlay (no help panel or messages) as a PNG; returns its path."""
        self._compose()
        return self._save_screenshot(path)

    def _save_screenshot(self, path: str | Path | None = None) -> Path:
        if path is None:
            pane = self.panes[0]
            path = free_screenshot_path(self.screenshot_dir, pane.env_id, pane.episode + 1, pane.step)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.canvas, str(path))
        self._show_toast(f"screenshot saved: {path}", 3.0)
        self.log(f"screenshot saved: {path}")
        return path


__all__ = ["KEYS", "Viewer"]
