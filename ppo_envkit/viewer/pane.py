"""One agent playing in a rendering environment: the viewer's panes.

A :class:`Pane` owns an environment built with ``render_mode="rgb_array"`` from the
agent's stored environment id and kwargs, and the state of the episode on screen:
counters, the rewards and value estimates so far, and the policy's decision for
the current state (its value, its action distribution and the action it takes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pygame

from ..agent import PPO
from ..environments.factory import make_env, wrap_env
from ..environments.failures import describe
from ..environments.masks import require_masks
from ..errors import ActionMaskError, EnvironmentFailed, ViewerError
from . import overlay
from .agents import AgentSelection
from .decision import PaneView, decision_view

BACKGROUND = (24, 26, 32)
#: A pane's frame is scaled to fit this box (one pane, two panes); a pane is at least MIN_PANE.
FRAME_BOX = ((960, 720), (720, 560))
MIN_PANE = (640, 440)
MARGIN = 10  # between a pane's edge and its overlay panels
GAP = 6  # between panes


@dataclass
class ReplayResult:
    """Finished episodes per pane (in pane order) and what was recorded."""

    labels: list[str]
    returns: list[list[float]] = field(default_factory=list)
    lengths: list[list[int]] = field(default_factory=list)
    frames_recorded: int = 0
    record: Path | None = None


class RenderError(ViewerError):
    """The environment does not render RGB frames."""


def _declared_render_modes(env_id: str) -> list[str] | None:
    """``metadata["render_modes"]`` of the registered class, or None when it cannot be known."""
    from ..config import split_env_id
    from ..environments.registry import entry_point_callable

    try:  # module:id: the module was imported with the agent's environment
        creator = entry_point_callable(gym.spec(split_env_id(env_id)[1]).entry_point)
    except Exception:
        return None
    metadata = getattr(creator, "metadata", None)
    return list(metadata.get("render_modes") or []) if isinstance(metadata, dict) else None


def _no_rgb_message(env_id: str, modes: list[str] | None) -> str:
    return (
        f"environment '{env_id}' cannot be watched: it does not render RGB frames "
        f"(its render modes: {', '.join(modes) if modes else 'none'}). The viewer needs "
        "render_mode='rgb_array': list 'rgb_array' in the class's metadata['render_modes'], accept "
        "render_mode in __init__, and return a uint8 array [height, width, 3] from render()"
    )


def make_render_env(env_id: str, kwargs: dict[str, Any], max_episode_steps: int | None = None) -> gym.Env:
    """The environment with ``render_mode="rgb_array"``, or a :class:`RenderError` saying why not."""
    modes = _declared_render_modes(env_id)
    if modes is not None and "rgb_array" not in modes:
        raise RenderError(_no_rgb_message(env_id, modes))
    try:
        env = make_env(env_id, kwargs, render_mode="rgb_array", max_episode_steps=max_episode_steps)
    except TypeError as exc:
        if "render_mode" not in str(exc):
            raise
        raise RenderError(_no_rgb_message(env_id, modes)) from None
    if "rgb_array" not in (env.metadata.get("render_modes") or []):
        env.close()
        raise RenderError(_no_rgb_message(env_id, env.metadata.get("render_modes")))
    return env


def _as_frame(frame: Any, env_id: str) -> np.ndarray:
    """``render()``'s result as uint8 RGB ``[height, width, 3]`` (grey and RGBA are converted)."""
    if not isinstance(frame, np.ndarray) or frame.ndim not in (2, 3) or frame.size == 0:
        got = (
            type(frame).__name__ if not isinstance(frame, np.ndarray) else f"an array of shape {frame.shape}"
        )
        raise RenderError(
            f"environment '{env_id}': render() returned {got} in rgb_array mode; "
            "expected a uint8 array [height, width, 3]"
        )
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.shape[2] == 4:
        frame = frame[:, :, :3]
    if frame.shape[2] != 3:
        raise RenderError(f"environment '{env_id}': render() returned {frame.shape[2]} colour channels")
    if frame.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(frame.dtype, np.floating) and float(frame.max()) <= 1.0 else 1.0
        frame = np.clip(frame * scale, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame)


def seat_label(info: dict[str, Any] | None) -> str:
    """In a turn-based game (``TurnBasedEnv``): ``seat player_1 vs random``, the seat whose
    turn it is whenever the agent decides (the opponents move inside ``step()``); else ""."""
    if not info or "seat" not in info:
        return ""
    return f"seat {info['seat']} vs {info.get('opponent', '?')}"


def agent_label(agent: PPO) -> str:
    """A short name for an agent: its run (and checkpoint) and how long it trained."""
    path = getattr(agent, "path", None)
    if path is None:
        name = agent.config.env.id
    else:
        path = Path(path).resolve()
        if path.name == "agent":
            name = path.parent.name
        elif path.parent.name == "checkpoints":
            name = f"{path.parent.parent.name} checkpoint"
        else:
            name = path.name
    return f"{name} · {agent.num_timesteps:,} steps"


class Pane:
    """One agent playing in its own environment copy, and what happened in its episode."""

    def __init__(self, agent: PPO, label: str | None = None):
        self.agent = agent
        self.label = label or agent_label(agent)
        cfg = agent.config.env
        self.env_id = cfg.id
        # The agent's own wrappers (frame stacking, action masks), as in training
        self.env = wrap_env(make_render_env(cfg.id, dict(cfg.kwargs), cfg.max_episode_steps), cfg)
        #: Which agent's decision the overlay shows, when the environment stacks several (key A)
        self.selection = AgentSelection(self.env)
        try:
            agent.check_env_compatible(self.selection.one_agent(self.env))
        except BaseException:
            self.env.close()
            raise
        self.action_names = agent.action_names
        self.info: dict[str, Any] = {}
        scaler = agent.policy.reward_scaler
        # With reward scaling the critic predicts returns in scaled units; show them in the env's units.
        self.value_scale = float((scaler.rms.var + scaler.eps).sqrt()) if scaler.enabled else 1.0
        self.seed = 0
        self.episode = 0
        self.step = 0
        self.episode_return = 0.0
        self.values: list[float] = []
        self.rewards: list[float] = []
        self.decision: dict[str, Any] | None = None
        self.outcome: str | None = None
        self.obs: Any = None
        self.action_mask: np.ndarray | None = None  # legal actions now (None: no masks)
        #: The environment's own numbers at the last step (``info["metrics"]``, ``run.info_keywords``).
        self.env_metrics: dict[str, float] = {}
        self._info_keywords = tuple(agent.config.run.info_keywords)
        self.frame = np.zeros((1, 1, 3), np.uint8)
        self.rect = pygame.Rect(0, 0, 0, 0)
        self.frame_rect = pygame.Rect(0, 0, 0, 0)
        self._scaled: pygame.Surface | None = None

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def reset(self, seed: int, episode: int, deterministic: bool) -> None:
        self.obs, info = self._env_call("reset()", self.env.reset, seed=seed)
        self.info = info
        self.action_mask = info.get("action_mask")
        require_masks(self.agent.state.action_masks, self.agent.config.env, self.action_mask)
        self.seed, self.episode = seed, episode
        self.step, self.episode_return, self.outcome = 0, 0.0, None
        self.values, self.rewards = [], []
        self.env_metrics = {}
        self._render()
        self._decide(deterministic)

    def _env_call(self, call: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """A call of the environment; its exception becomes one line naming the environment,
        the call, the episode step and the user's line (as in training)."""
        try:
            return fn(*args, **kwargs)
        except (RenderError, ActionMaskError, EnvironmentFailed):  # already one line
            raise
        except Exception as exc:
            doing = f"in {call} during replay (episode {self.episode + 1}, step {self.step})"
            raise EnvironmentFailed(describe(exc, self.env_id, doing)) from exc

    def _decide(self, deterministic: bool, new_state: bool = True) -> None:
        if self.selection.active:  # several agents: each acts on its row, the selected one is shown
            actions, self.decision = self.selection.decide(
                self.agent, self.obs, self.action_mask, deterministic
            )
            self.decision["stacked_action"] = actions
        else:
            self.decision = self.agent.policy_step(
                self.obs, deterministic=deterministic, action_mask=self.action_mask
            )
        value = self.decision["value"] * self.value_scale
        if new_state:
            self.values.append(value)
        elif self.values:
            self.values[-1] = value

    def redecide(self, deterministic: bool) -> None:
        """Decide again for the state on screen (after switching deterministic/stochastic)."""
        if not self.done and self.obs is not None:
            self._decide(deterministic, new_state=False)

    def next_agent(self, deterministic: bool) -> str | None:
        """Show the next agent's decision (several agents); returns its name."""
        name = self.selection.cycle()
        self.redecide(deterministic)
        return name

    def advance(self, deterministic: bool) -> None:
        """Take the decided action; then decide for the new state unless the episode ended."""
        if self.done or self.decision is None:
            return
        action = self.decision.get("stacked_action", self.decision["action"])
        step = self._env_call("step()", self.env.step, action)
        self.obs, reward, terminated, truncated, info = step
        self.info = info
        self.action_mask = info.get("action_mask")
        self.env_metrics = overlay.info_numbers(info, self._info_keywords)
        self.step += 1
        self.episode_return += float(reward)
        self.rewards.append(float(reward))
        self._render()
        if terminated or truncated:
            self.outcome = "terminated" if terminated else "truncated"
            if "outcome" in info:  # a turn-based game: the learner's seat won, drew or lost
                self.outcome += f": {info['outcome']}"
        else:
            self._decide(deterministic)

    def _render(self) -> None:
        self.frame = _as_frame(self._env_call("render()", self.env.render), self.env_id)
        self._scaled = None

    def scaled_frame(self) -> pygame.Surface:
        """The current frame at the pane's display size (cached until the frame changes)."""
        if self._scaled is None:
            h, w = self.frame.shape[:2]
            surf = pygame.image.frombuffer(self.frame.tobytes(), (w, h), "RGB")
            size = self.frame_rect.size
            if size == (w, h):
                self._scaled = surf.copy()
            elif size[0] >= 2 * w:  # large upscales of small frames stay crisp
                self._scaled = pygame.transform.scale(surf, size)
            else:
                self._scaled = pygame.transform.smoothscale(surf, size)
        return self._scaled

    def view(self, mode: str) -> PaneView:
        action_text, bars, gauges = ("-", [], [])
        if self.decision is not None:
            action_text, bars, gauges = decision_view(
                self.decision, self.agent.action_space, self.action_names
            )
        who = self.selection.label(self.info) or seat_label(self.info)
        return PaneView(
            title=f"{self.label} · {who}" if who else self.label,
            episode=self.episode + 1,
            step=self.step,
            episode_return=self.episode_return,
            value=self.values[-1] if self.values else None,
            action_text=action_text,
            mode=mode,
            bars=bars,
            gauges=gauges,
            values=self.values,
            rewards=self.rewards,
            outcome=self.outcome,
            memory=None if self.decision is None else self.decision.get("memory_norm"),
            env_metrics=list(self.env_metrics.items()),
        )

    def hud_rects(self, view: PaneView) -> list[pygame.Rect]:
        """Where the overlay's panels go: the info panel top left, the plot top right."""
        width = min(300, int(self.rect.width * 0.46))
        info = pygame.Rect(self.rect.left + MARGIN, self.rect.top + MARGIN, width, overlay.info_height(view))
        plot_w = min(280, int(self.rect.width * 0.42))
        plot = pygame.Rect(self.rect.right - MARGIN - plot_w, self.rect.top + MARGIN, plot_w, 150)
        return [info, plot]

    def draw(self, canvas: pygame.Surface, fonts: overlay.Fonts, mode: str | None) -> None:
        """The frame, and the overlay unless ``mode`` (its status line) is None."""
        canvas.set_clip(self.rect)
        canvas.blit(self.scaled_frame(), self.frame_rect)
        if mode is not None:
            view = self.view(mode)
            info, plot = self.hud_rects(view)
            overlay.draw_info(canvas, info.topleft, info.width, view, fonts)
            overlay.draw_plot(canvas, plot, view.values, view.rewards, fonts)
            if self.done:
                message = f"episode over ({self.outcome}): return {self.episode_return:.1f}"
                overlay.draw_banner(canvas, self.rect, message, fonts)
        canvas.set_clip(None)

    def close(self) -> None:
        self.env.close()


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


def layout_panes(panes: list[Pane]) -> tuple[int, int]:
    """Place the panes side by side; returns the canvas size (even, for video encoders)."""
    box = FRAME_BOX[0] if len(panes) == 1 else FRAME_BOX[1]
    sizes = []
    for pane in panes:
        fh, fw = pane.frame.shape[:2]
        scale = min(box[0] / fw, box[1] / fh)
        frame = (_even(fw * scale), _even(fh * scale))
        sizes.append((frame, (max(frame[0], MIN_PANE[0]), max(frame[1], MIN_PANE[1]))))
    height = max(pane_size[1] for _, pane_size in sizes)
    x = 0
    for pane, (frame, pane_size) in zip(panes, sizes, strict=True):
        if x:
            x += GAP
        pane.rect = pygame.Rect(x, 0, pane_size[0], height)
        pane.frame_rect = pygame.Rect((0, 0), frame)
        pane.frame_rect.center = pane.rect.center
        x = pane.rect.right
    return x + x % 2, height + height % 2


def load(agent: PPO | str | Path) -> PPO:
    """An agent object as is, or an agent/run directory loaded with :meth:`PPO.load`."""
    return agent if isinstance(agent, PPO) else PPO.load(agent)


__all__ = ["Pane", "RenderError", "ViewerError", "agent_label", "layout_panes", "load", "make_render_env"]
