"""Play against your agent: a turn-based PettingZoo game in a pygame window.

``Game(agent, seat="first").run()`` opens a window on the raw ``AECEnv`` (built by calling the
registered entry point with ``render_mode="rgb_array"``): the human plays one seat with the
number keys or the mouse, the agent plays the others with its policy (deterministic, the
game's action mask applied), and the panel on the right shows whose turn it is, the agent's
last decision (the viewer's probability bars), the result, and the keys. Tests drive it
headless, through the same :meth:`Game.handle_event` a window feeds::

    game = Game(agent, agent_delay=0)  # no window until run()
    game.press(pygame.K_5)                     # the human takes action 4
    game.click(x, y)                           # or clicks a cell, or an action button
    game.tick()                                # the agent answers
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np
import pygame
from gymnasium import spaces

from ..agent import PPO
from ..environments.multiagent import pettingzoo_kind, split_observation
from ..environments.multiagent_check import pettingzoo_creator
from . import overlay
from .decision import PaneView, decision_view
from .display import NoDisplayError, open_window
from .pane import BACKGROUND, RenderError, ViewerError, _as_frame, load

FRAME_BOX = 640  # the board is scaled to fit a square of this side
SIDE = 360  # the panel on the right
PAD = 12
BUTTON = 44

KEYS = (
    ("0-9", "play that action (as numbered on the buttons)"),
    ("click", "a cell or a button"),
    ("N or R", "new game"),
    ("Esc or Q", "quit"),
)


@dataclass(frozen=True)
class Board:
    """Where a game's actions are on its picture: ``rows`` x ``cols`` cells inside the margins
    (fractions of the frame); actions are numbered by column first when ``column_major``.
    One row: a click anywhere in a column (Connect Four drops a piece there)."""

    rows: int
    cols: int
    column_major: bool = False
    left: float = 0.0
    top: float = 0.0
    right: float = 1.0
    bottom: float = 1.0

    def action_at(self, fx: float, fy: float) -> int | None:
        """The action of the cell at ``(fx, fy)`` (fractions of the frame), None outside."""
        u = (fx - self.left) / (self.right - self.left)
        v = (fy - self.top) / (self.bottom - self.top)
        if not (0 <= u < 1 and (self.rows == 1 or 0 <= v < 1)):
            return None
        col, row = int(u * self.cols), 0 if self.rows == 1 else int(v * self.rows)
        return col * self.rows + row if self.column_major else row * self.cols + col

    def cell(self, action: int) -> tuple[int, int]:
        """(row, column) of ``action``."""
        return (action % self.rows, action // self.rows) if self.column_major else divmod(action, self.cols)


#: Boards of PettingZoo's classic games, by ``metadata["name"]`` without its version.
BOARDS = {
    "tictactoe": Board(3, 3, column_major=True),
    "connect_four": Board(1, 7, left=4 / 99, right=95 / 99),
}


def board_of(metadata: dict[str, Any], n: int) -> Board:
    """The game's board when known; otherwise the actions as a near-square grid of buttons."""
    name = str(metadata.get("name", "")).rsplit("_v", 1)[0]
    known = BOARDS.get(name)
    if known is not None and known.rows * known.cols == n:
        return known
    cols = math.ceil(math.sqrt(n))
    return Board(math.ceil(n / cols), cols)


def key_action(key: int) -> int | None:
    """The action a number key asks for: key 0-9 is action 0-9 (the numbers the overlay's bars
    and the buttons show; keypad too)."""
    if pygame.K_0 <= key <= pygame.K_9:
        return key - pygame.K_0
    keypad = [getattr(pygame, f"K_KP{d}") for d in range(10)]  # not consecutive codes
    return keypad.index(key) if key in keypad else None


class Game:
    """A human against ``agent`` in a turn-based PettingZoo game.

    ``env_id`` defaults to the agent's environment (with its ``env.kwargs``); ``seat`` is the
    human's (``first`` or ``second``); the agent plays every other seat. Game *k* resets with
    seed ``seed + k``. ``agent_delay`` is how many seconds the agent waits before it moves, so
    that its move can be followed (0 in tests).
    """

    def __init__(
        self,
        agent: PPO | str | Path,
        *,
        env_id: str | None = None,
        kwargs: dict[str, Any] | None = None,
        seat: str = "first",
        seed: int = 0,
        agent_delay: float = 0.6,
        log: Callable[[str], None] | None = None,
    ):
        if seat not in ("first", "second"):
            raise ViewerError(f"--seat must be 'first' or 'second', got {seat!r}")
        self.agent = load(agent)
        same = env_id is None or env_id == self.agent.config.env.id
        self.env_id = self.agent.config.env.id if env_id is None else env_id
        kwargs = dict(self.agent.config.env.kwargs if same and kwargs is None else kwargs or {})
        self.env = self._make(kwargs)
        self.seed, self.agent_delay = int(seed), float(agent_delay)
        self.log = log or (lambda message: None)
        seats = list(self.env.possible_agents)
        if len(seats) < 2:
            self.env.close()
            raise ViewerError(f"play needs a game of two seats or more; {self.env_id} has {seats}")
        self.human = seats[0 if seat == "first" else 1]
        self.action_space = self.env.action_space(self.human)
        self._check_agent()
        n = int(self.action_space.n)
        self.board = board_of(self.env.metadata, n)
        self.names = self.agent.action_names or [str(i) for i in range(n)]
        self.fonts = overlay.Fonts()
        self.games = 0
        self.wins = {"you": 0, "agent": 0, "draw": 0}
        self.running = True
        self._window_open = False
        self.new_game()
        h, w = self.frame.shape[:2]
        scale = FRAME_BOX / max(h, w)
        self.frame_rect = pygame.Rect(PAD, PAD, round(w * scale), round(h * scale))
        height = max(self.frame_rect.height + 2 * PAD, 660)
        self.canvas = pygame.Surface((self.frame_rect.right + PAD + SIDE + PAD, height))
        self.buttons: dict[int, pygame.Rect] = {}
        self.draw()

    # ----------------------------------------------------------------------------- setting up

    def _make(self, kwargs: dict[str, Any]) -> Any:
        creator = pettingzoo_creator(self.env_id, kwargs)
        try:
            env = creator(render_mode="rgb_array") if creator is not None else None
        except Exception as exc:  # a missing dependency, the game's own error: one line
            raise ViewerError(f"cannot build {self.env_id}: {type(exc).__name__}: {exc}") from exc
        if pettingzoo_kind(env) != "aec":
            if env is not None:
                env.close()
            raise ViewerError(
                f"play needs a turn-based PettingZoo game (an AECEnv, such as "
                f"pettingzoo.classic.tictactoe_v3:env); {self.env_id} is not one: watch it with replay"
            )
        if "rgb_array" not in (env.metadata.get("render_modes") or []):
            env.close()
            raise RenderError(f"{self.env_id} does not render rgb_array frames, so it cannot be shown")
        return env

    def _check_agent(self) -> None:
        """The agent must fit the seat it plays: one line saying how it does not."""
        obs_space = self.env.observation_space(self.human)
        if isinstance(obs_space, spaces.Dict) and "action_mask" in obs_space.spaces:
            obs_space = obs_space["observation"]
        problems = []
        if not isinstance(self.action_space, spaces.Discrete):
            problems.append(f"play needs discrete actions, and {self.env_id} has {self.action_space}")
        if obs_space != self.agent.observation_space:
            problems.append(f"the agent observes {self.agent.observation_space}, the game gives {obs_space}")
        if self.action_space != self.agent.action_space:
            problems.append(f"the agent acts in {self.agent.action_space}, the game in {self.action_space}")
        if problems:
            self.env.close()
            raise ViewerError(f"this agent cannot play {self.env_id}: " + "; ".join(problems))

    # ----------------------------------------------------------------------------- the game

    def new_game(self) -> None:
        """Reset with the next seed; the agent moves at once if it is first (after its delay)."""
        self.env.reset(seed=self.seed + self.games)
        self.games += 1
        self.totals = {a: 0.0 for a in self.env.possible_agents}
        self.moves = 0
        self.decision: dict[str, Any] | None = None
        self.decided_for: str | None = None
        self.result: str | None = None
        self.hint: str | None = None
        self.wait = self.agent_delay
        self._settle()

    @property
    def turn(self) -> str | None:
        """The seat to move (None once the game is over)."""
        return None if self.result is not None else self.env.agent_selection

    @property
    def human_to_move(self) -> bool:
        return self.turn == self.human

    def legal(self) -> np.ndarray:
        """The actions allowed to the seat to move now."""
        obs, *_ = self.env.last()
        mask = split_observation(obs)[1]
        return np.ones(int(self.action_space.n), bool) if mask is None else mask

    def _step(self, action: int | None) -> None:
        self.env.step(action)
        self._settle()

    def _settle(self) -> None:
        """Collect rewards and let finished seats leave until someone must act or the game ends."""
        while self.env.agents:
            seat = self.env.agent_selection
            _, reward, terminated, truncated, _ = self.env.last()
            self.totals[seat] += float(reward)  # the reward since this seat last acted
            if not (terminated or truncated):
                self.frame = _as_frame(self.env.render(), self.env_id)
                return
            self.env.step(None)
        self._finish()

    def _finish(self) -> None:
        mine = self.totals[self.human]
        best_other = max(v for a, v in self.totals.items() if a != self.human)
        who = "you" if mine > best_other else "agent" if mine < best_other else "draw"
        self.wins[who] += 1
        self.result = {"you": "you win!", "agent": "the agent wins", "draw": "a draw"}[who]
        self.frame = _as_frame(self.env.render(), self.env_id)
        self.log(f"game {self.games}: {self.result} (after {self.moves} moves)")

    def agent_move(self) -> int:
        """The agent plays the seat to move: its deterministic action under the game's mask."""
        seat = self.env.agent_selection
        obs, mask = split_observation(self.env.last()[0])
        self.decision = self.agent.policy_step(obs, deterministic=True, action_mask=mask)
        self.decided_for = seat
        self.hint = None  # ("wait: ..." is answered)
        action = int(self.decision["action"])
        self.moves += 1
        self._step(action)
        self.wait = self.agent_delay
        return action

    def human_move(self, action: int) -> bool:
        """The human's move; refused (with a hint, nothing played) when it is not theirs or illegal."""
        if self.result is not None:
            self.hint = "the game is over: N for a new game"
            return False
        if not self.human_to_move:
            self.hint = "wait: it is the agent's turn"
            return False
        legal = self.legal()
        if not 0 <= action < len(legal) or not legal[action]:
            keys = ", ".join(str(a) for a in np.flatnonzero(legal))
            self.hint = f"{action} is not a legal move now (legal: {keys})"
            return False
        self.hint = None
        self.moves += 1
        self._step(action)
        self.wait = self.agent_delay
        return True

    # ----------------------------------------------------------------------------- input

    def handle_event(self, event: pygame.event.Event) -> None:
        """Keys, clicks and quit, from a window or a test."""
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN:
            if event.key in (pygame.K_ESCAPE, pygame.K_q):
                self.running = False
            elif event.key in (pygame.K_n, pygame.K_r):
                self.new_game()
            elif (action := key_action(event.key)) is not None:
                if action >= int(self.action_space.n):
                    self.hint = f"there is no action {action} in this game"
                else:
                    self.human_move(action)
        elif event.type == pygame.MOUSEBUTTONDOWN and getattr(event, "button", 1) == 1:
            self._click(self._to_canvas(event.pos))
        self.draw()

    def _click(self, pos: tuple[int, int]) -> None:
        for action, rect in self.buttons.items():
            if rect.collidepoint(pos):
                self.human_move(action)
                return
        if self.frame_rect.collidepoint(pos):
            fx = (pos[0] - self.frame_rect.left) / self.frame_rect.width
            fy = (pos[1] - self.frame_rect.top) / self.frame_rect.height
            action = self.board.action_at(fx, fy) if self._board_known() else None
            if action is None:
                self.hint = "click one of the action buttons on the right, or press its number"
            else:
                self.human_move(action)

    def _board_known(self) -> bool:
        return str(self.env.metadata.get("name", "")).rsplit("_v", 1)[0] in BOARDS

    def _to_canvas(self, pos: tuple[int, int]) -> tuple[int, int]:
        """A window position in canvas coordinates (the window shows the canvas scaled, centred)."""
        window = pygame.display.get_surface() if self._window_open else None
        if window is None or window.get_size() == self.canvas.get_size():
            return int(pos[0]), int(pos[1])
        (ww, wh), (cw, ch) = window.get_size(), self.canvas.get_size()
        scale = min(ww / cw, wh / ch)
        x0, y0 = (ww - cw * scale) / 2, (wh - ch * scale) / 2
        return int((pos[0] - x0) / scale), int((pos[1] - y0) / scale)

    def press(self, key: int) -> None:
        """Act as if ``key`` (a ``pygame.K_*`` constant) was pressed."""
        self.handle_event(pygame.event.Event(pygame.KEYDOWN, key=key, unicode="", mod=0))

    def click(self, x: int, y: int) -> None:
        """Act as if the canvas was clicked at ``(x, y)``."""
        self.handle_event(pygame.event.Event(pygame.MOUSEBUTTONDOWN, pos=(x, y), button=1))

    def cell_center(self, action: int) -> tuple[int, int]:
        """Where ``action``'s cell is on the canvas (for clicks in tests and scripts)."""
        b, r = self.board, self.frame_rect
        row, col = b.cell(action)
        fx = b.left + (col + 0.5) * (b.right - b.left) / b.cols
        fy = b.top + (row + 0.5) * (b.bottom - b.top) / b.rows
        return r.left + round(fx * r.width), r.top + round(fy * r.height)

    # ----------------------------------------------------------------------------- time

    def tick(self, dt: float | None = None) -> None:
        """One frame: the agent moves once its delay is over (``dt`` None: at once)."""
        if self.result is None and not self.human_to_move:
            self.wait -= self.wait if dt is None else dt
            if self.wait <= 0:
                self.agent_move()
        self.draw()

    def run(self) -> dict[str, int]:
        """Play in a window until Esc; returns the tally (you, agent, draw)."""
        try:
            open_window(self.canvas.get_size(), f"ppo-envkit play: {self.env_id} (you are {self.human})")
        except NoDisplayError as exc:  # its hint is replay's (record without a window): not for a game
            self.close()
            reason = str(exc).split(";")[0]
            raise NoDisplayError(
                f"{reason}; play needs a window: run it on a desktop, or under xvfb-run"
            ) from None
        self._window_open = True
        clock = pygame.time.Clock()
        try:
            while self.running:
                for event in pygame.event.get():
                    self.handle_event(event)
                self.tick(clock.tick(30) / 1000.0)
                self._present()
        finally:
            self.close()
        return dict(self.wins)

    def _present(self) -> None:
        from .display import present

        present(self.canvas)

    def close(self) -> None:
        self.env.close()
        if self._window_open:
            pygame.display.quit()
            self._window_open = False
        self.running = False

    # ----------------------------------------------------------------------------- drawing

    def frame_array(self) -> np.ndarray:
        """The canvas as a uint8 array ``[height, width, 3]``."""
        w, h = self.canvas.get_size()
        return np.frombuffer(pygame.image.tobytes(self.canvas, "RGB"), np.uint8).reshape(h, w, 3).copy()

    def screenshot(self, path: str | Path) -> Path:
        self.draw()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pygame.image.save(self.canvas, str(path))
        return path

    def status(self) -> str:
        """Whose turn it is, or the result."""
        if self.result is not None:
            return f"{self.result}  N: new game"
        if self.human_to_move:
            return f"your turn ({self.human}): press a number or click"
        return f"the agent plays {self.turn}..."

    def view(self) -> PaneView:
        """The agent's last decision as the replay overlay shows it."""
        text, bars = "-", []
        if self.decision is not None:
            text, bars, _ = decision_view(self.decision, self.agent.action_space, self.agent.action_names)
        seat, wins = self.decided_for or "-", self.wins
        return PaneView(
            title=f"the agent ({seat}): its last move",
            episode=self.games,
            step=self.moves,
            episode_return=self.totals.get(seat, 0.0),
            value=None if self.decision is None else float(self.decision["value"]),
            action_text=text,
            mode=f"deterministic · you {wins['you']}, agent {wins['agent']}, draws {wins['draw']}",
            bars=bars,
        )

    def draw(self) -> None:
        c, f = self.canvas, self.fonts
        c.fill(BACKGROUND)
        h, w = self.frame.shape[:2]
        surf = pygame.image.frombuffer(self.frame.tobytes(), (w, h), "RGB")
        c.blit(pygame.transform.smoothscale(surf, self.frame_rect.size), self.frame_rect)
        x0, width = self.frame_rect.right + PAD, SIDE
        y = PAD
        color = overlay.CHOSEN if self.human_to_move else overlay.TEXT
        overlay.text(c, f.normal, self.status(), (x0, y), color, max_width=width)
        y += overlay.LINE + 4
        info = overlay.draw_info(c, (x0, y), width, self.view(), f)
        y = info.bottom + PAD
        y = self._draw_buttons(x0, y, width)
        if self.hint:
            overlay.text(c, f.small, self.hint, (x0, y), overlay.BAD, max_width=width)
        overlay.text(
            c,
            f.small,
            "0-9 or click: your move · N/R: new game · Esc: quit",
            (x0, c.get_height() - PAD - 14),
            overlay.DIM,
            max_width=width,
        )
        if self.result is not None:
            overlay.draw_banner(c, self.frame_rect, self.result, f)

    def _draw_buttons(self, x0: int, y: int, width: int) -> int:
        """One button per action, laid out like the board; legal ones lit on the human's turn."""
        b = self.board
        size = min(BUTTON, (width - (b.cols - 1) * 4) // b.cols)
        legal = self.legal() if self.human_to_move else np.zeros(int(self.action_space.n), bool)
        self.buttons = {}
        for action in range(int(self.action_space.n)):
            row, col = b.cell(action)
            rect = pygame.Rect(x0 + col * (size + 4), y + row * (size + 4), size, size)
            self.buttons[action] = rect
            fill = overlay.BAR if legal[action] else overlay.BAR_BG
            pygame.draw.rect(self.canvas, fill, rect, border_radius=6)
            shade = overlay.TEXT if legal[action] else overlay.ILLEGAL
            overlay.text(
                self.canvas,
                self.fonts.normal,
                str(action),
                (rect.centerx, rect.top + 6),
                shade,
                "center",
            )
            if self.names[action] != str(action):  # registered action names, under the number
                overlay.text(
                    self.canvas,
                    self.fonts.small,
                    self.names[action],
                    (rect.centerx, rect.bottom - 14),
                    shade,
                    "center",
                    max_width=size,
                )
        return y + b.rows * (size + 4) + PAD


__all__ = ["BOARDS", "KEYS", "Board", "Game", "board_of", "key_action"]
