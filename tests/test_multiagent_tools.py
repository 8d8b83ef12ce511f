"""Several agents in the tools: ``envs list`` / ``envs check`` on PettingZoo environments, playing
a turn-based game against an agent (headless: scripted keys and clicks through the same event
handler a window feeds), and the replay overlay's choice of which agent's decision it shows.

Agents are untrained and built from spaces (what a policy thinks is shown, trained or not).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

import gymnasium as gym
import pygame
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.classic import tictactoe_v3

from ppo_envkit import PPO, TrainConfig, Viewer, register_env
from ppo_envkit.cli import main
from ppo_envkit.environments.multiagent_check import check_pettingzoo, summarize_agents
from ppo_envkit.environments.registry import temporary_registrations
from ppo_envkit.viewer import ViewerError
from ppo_envkit.viewer.agents import AgentSelection
from ppo_envkit.viewer.controls import action_for
from ppo_envkit.viewer.play import BOARDS, Game, key_action

TICTACTOE = "pettingzoo.classic.tictactoe_v3:env"
SPREAD = "mpe2.simple_spread_v3:parallel_env"


# ----------------------------------------------------------------------------- environments


class Odd(ParallelEnv):
    """Two agents, five steps; ``mode`` makes one thing wrong (or unusual) at a time."""

    metadata = {"name": "odd_v0"}

    def __init__(self, mode: str = "fine", render_mode: str | None = None):
        self.mode = mode
        self.possible_agents = ["a", "b"]
        self._obs_spaces = {a: spaces.Box(-1, 1, (3 if mode == "spaces" and a == "b" else 2,)) for a in "ab"}

    def observation_space(self, agent):
        if self.mode == "uncached":  # a new object per call: PettingZoo's API test refuses it
            return spaces.Box(-1, 1, (2,))
        return self._obs_spaces[agent]

    @functools.cache  # noqa: B019 (one instance per test)
    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        self.rng = np.random.default_rng(None if self.mode == "unseeded" else seed)
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def _obs(self, agent):
        obs = self.rng.uniform(-1, 1, self.observation_space(agent).shape).astype(np.float32)
        if self.mode == "nan" and self.t == 3:
            obs[0] = np.nan
        return obs

    def step(self, actions):
        self.t += 1
        while self.mode == "hang":
            time.sleep(0.05)
        done = self.t >= 5
        term = {a: done or (self.mode == "die" and a == "b" and self.t == 2) for a in self.agents}
        mask = {"action_mask": np.zeros(2, np.int8)} if self.mode == "nomask" else {}
        out = (
            {a: self._obs(a) for a in self.agents},
            {a: 0.0 for a in self.agents},
            term,
            {a: False for a in self.agents},
            {a: dict(mask) for a in self.agents},
        )
        self.agents = [a for a in self.agents if not term[a]]
        return out


@pytest.fixture
def odd_ids():
    with temporary_registrations():
        modes = ("fine", "spaces", "nan", "die", "nomask", "unseeded", "uncached", "hang")
        ids = {mode: f"Odd{mode.capitalize()}-v0" for mode in modes}
        for mode, env_id in ids.items():
            register_env(env_id, functools.partial(Odd, mode=mode))
        yield ids


def codes(report):
    return {f.code: f.severity for f in report.findings}


# ----------------------------------------------------------------------------- envs check


@pytest.mark.parametrize("env_id, kind", [(TICTACTOE, "turn-based"), (SPREAD, "parallel")])
def test_pettingzoo_envs_pass_and_say_their_kind(env_id, kind):
    report = check_pettingzoo(env_id, steps=300)
    assert report is not None and report.ok and not report.findings, report.format()
    assert report.steps == 300 and report.episodes > 0
    assert f"a {kind} PettingZoo environment" in report.notes[0]
    convention = any("dict convention" in n for n in report.notes)
    assert convention == (env_id == TICTACTOE)  # tictactoe's observations carry action masks
    # the end of a game (seats removed one by one) is not agents leaving mid-episode
    assert not any("mid-episode" in n for n in report.notes)


def test_a_gymnasium_env_is_not_checked_here():
    assert check_pettingzoo("CartPole-v1") is None


def test_findings_in_plain_words(odd_ids):
    fine = check_pettingzoo(odd_ids["fine"], steps=50)
    assert fine.ok and not fine.findings, fine.format()

    spaces_differ = check_pettingzoo(odd_ids["spaces"], steps=50)
    assert codes(spaces_differ) == {"observation-spaces-differ": "error"}
    assert "refuses" in spaces_differ.findings[0].what and "(3,)" in spaces_differ.findings[0].what

    nan = check_pettingzoo(odd_ids["nan"], steps=50)
    assert codes(nan).get("obs-nonfinite") == "error"
    assert "step 3 of episode 1" in next(f.where for f in nan.findings if f.code == "obs-nonfinite")

    nomask = check_pettingzoo(odd_ids["nomask"], steps=50)
    assert codes(nomask) == {"mask-allows-nothing": "error"}
    assert "allows no action" in nomask.findings[0].what

    die = check_pettingzoo(odd_ids["die"], steps=50)
    assert die.ok and not die.findings, die.format()
    assert any(n.startswith("agents left mid-episode (e.g. b): fine") for n in die.notes)

    unseeded = check_pettingzoo(odd_ids["unseeded"], steps=50)
    assert codes(unseeded) == {"pettingzoo-seed": "warning"}, unseeded.format()
    assert unseeded.ok and "reset(seed=...)" in unseeded.findings[0].fix

    uncached = check_pettingzoo(odd_ids["uncached"], steps=50)
    assert codes(uncached) == {"pettingzoo-api": "error"}, uncached.format()
    finding = uncached.findings[0]
    assert finding.source == "pettingzoo" and "parallel_api_test" in finding.what
    assert "observation_space" in finding.fix  # the failed check, quoted


def test_a_hanging_environment_is_a_finding(odd_ids, monkeypatch):
    from ppo_envkit.environments import findings

    monkeypatch.setattr(findings, "CALL_TIME_LIMIT_S", 0.25)  # each phase: 1 s
    report = check_pettingzoo(odd_ids["hang"], steps=50)
    assert codes(report) == {"hang": "error"}
    assert "did not return within 1 s" in report.findings[0].what


def test_envs_check_and_list_on_the_command_line(odd_ids, capsys):
    assert main(["envs", "check", TICTACTOE, "--steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "passed (100 random steps" in out and "turn-based PettingZoo environment" in out
    assert main(["envs", "check", odd_ids["spaces"], "--steps", "20"]) == 1
    assert "agents have different observation spaces" in capsys.readouterr().out

    register_env("TicTacToe-v0", tictactoe_v3.env)  # a user module's registration
    assert main(["envs", "list", "TicTacToe-v0"]) == 0  # (not tictactoe_v3 ids other tests registered)
    out = capsys.readouterr().out
    assert "turn-based, 2: player_1, player_2" in out and "Discrete(9)" in out and "+ mask" in out


def test_summarize_agents():
    summary = summarize_agents(SPREAD)
    assert summary.kind == "parallel" and summary.agents == ["agent_0", "agent_1", "agent_2"]
    assert not summary.masked and summary.action_space == spaces.Discrete(5)
    assert summarize_agents("CartPole-v1") is None


# ----------------------------------------------------------------------------- play


@pytest.fixture(scope="module")
def ttt_agent(tmp_path_factory):
    """An untrained tictactoe agent, built from one seat's spaces, saved and loaded as users do."""
    config = TrainConfig().with_overrides({"env.id": TICTACTOE, "run.seed": 3})
    agent = PPO(
        config=config, observation_space=spaces.Box(0, 1, (3, 3, 2), np.int8), action_space=spaces.Discrete(9)
    )
    return agent.save(tmp_path_factory.mktemp("agents") / "ttt")


def digit(action: int) -> int:
    return pygame.K_0 + action


def test_a_full_game_with_legal_moves_only(ttt_agent):
    game = Game(ttt_agent, agent_delay=0)
    assert game.human == "player_1" and game.human_to_move
    agent_moves = 0
    while game.result is None:
        legal = game.legal()
        if game.human_to_move:
            assert "your turn" in game.status()
            game.press(digit(int(np.flatnonzero(legal)[-1])))
        else:
            action = game.agent_move()
            assert legal[action], f"the agent played {action}, illegal here"
            assert game.decision["action_mask"] is not None  # the mask was applied
            agent_moves += 1
    assert agent_moves >= 2 and game.moves >= 5
    # the rewards of a finished game: +1/-1 or a draw, never an illegal-move penalty
    totals = sorted(game.totals.values())
    assert totals in ([-1.0, 1.0], [0.0, 0.0])
    assert game.result in ("you win!", "the agent wins", "a draw") and sum(game.wins.values()) == 1
    assert game.result in game.status()


def test_the_humans_illegal_move_is_refused(ttt_agent):
    game = Game(ttt_agent, agent_delay=1.0)
    game.press(pygame.K_4)
    assert not game.human_to_move
    game.press(pygame.K_0)  # not the human's turn
    assert game.hint == "wait: it is the agent's turn" and game.moves == 1
    game.tick(0.5)
    assert not game.human_to_move  # the agent waits its delay
    game.tick(0.6)
    assert game.human_to_move and game.moves == 2
    taken = int(game.decision["action"])
    before = game.frame_array()
    game.press(pygame.K_4)  # the human's own cell
    assert "4 is not a legal move now" in game.hint and game.moves == 2 and game.human_to_move
    game.click(*game.cell_center(taken))  # the agent's cell, clicked on the board
    assert f"{taken} is not a legal move now" in game.hint and game.moves == 2
    game.click(*game.buttons[4].center)  # an illegal action button
    assert game.moves == 2 and game.human_to_move
    game.hint = None
    game.draw()
    assert np.array_equal(game.frame_array(), before)  # nothing was played
    free = next(a for a in range(9) if a not in (4, taken))
    game.click(*game.cell_center(free))  # a legal click is played
    assert game.moves == 3 and game.hint is None and not game.human_to_move


def test_board_clicks_and_keys():
    ttt = BOARDS["tictactoe"]  # PettingZoo numbers tictactoe's cells by column
    assert ttt.action_at(0.1, 0.1) == 0 and ttt.action_at(0.1, 0.5) == 1 and ttt.action_at(0.5, 0.1) == 3
    assert all(ttt.action_at((c + 0.5) / 3, (r + 0.5) / 3) == a for a in range(9) for r, c in [ttt.cell(a)])
    c4 = BOARDS["connect_four"]
    assert c4.action_at(0.5, 0.9) == 3 and c4.action_at(0.01, 0.5) is None
    assert key_action(pygame.K_0) == 0 and key_action(pygame.K_KP7) == 7 and key_action(pygame.K_a) is None


def test_seat_new_game_and_quit(ttt_agent):
    game = Game(ttt_agent, seat="second", agent_delay=0)
    assert game.human == "player_2" and not game.human_to_move
    game.tick()  # the agent opens
    assert game.human_to_move and game.moves == 1 and game.decided_for == "player_1"
    game.press(pygame.K_n)
    assert game.games == 2 and game.moves == 0 and game.decision is None
    game.press(pygame.K_ESCAPE)
    assert not game.running
    game.close()


def test_a_picture_of_a_game(ttt_agent, tmp_path):
    game = Game(ttt_agent, agent_delay=0)
    empty = game.frame_array()
    game.press(pygame.K_4)
    game.tick()
    pixels = game.frame_array()
    assert pixels.shape == (*game.canvas.get_size()[::-1], 3)
    board = game.frame_rect
    assert not np.array_equal(
        empty[board.top : board.bottom, board.left : board.right],
        pixels[board.top : board.bottom, board.left : board.right],
    )
    assert "player_2" in game.view().title and len(game.view().bars[0].labels) == 9
    path = game.screenshot(tmp_path / "game.png")
    assert path.stat().st_size > 1000


def test_play_refuses_what_it_cannot_play(ttt_agent, tmp_path):
    with pytest.raises(ViewerError, match="turn-based PettingZoo game"):
        Game(ttt_agent, env_id=SPREAD)
    with pytest.raises(
        ViewerError, match=r"cannot play pettingzoo\.classic\.connect_four_v3:env: the agent observes"
    ):
        Game(ttt_agent, env_id="pettingzoo.classic.connect_four_v3:env")
    assert main(["play", str(ttt_agent), "--env", SPREAD]) == 1


def test_play_without_a_display_says_so(ttt_agent, monkeypatch, capsys):
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["play", str(ttt_agent)]) == 1
    err = capsys.readouterr().err
    assert "no display" in err and "play needs a window" in err and "--record" not in err


def test_play_command_in_a_window(ttt_agent, monkeypatch, capsys):
    """The command's loop reads pygame's events: a move, then Esc."""
    events = iter(
        [
            [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_4)],
            [],
            [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)],
        ]
    )
    monkeypatch.setattr(pygame.event, "get", lambda: next(events, []))
    assert main(["play", str(ttt_agent), "--seat", "first"]) == 0
    assert "you 0, the agent 0, draws 0" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the replay overlay


class Stacked(gym.Env):
    """A stand-in for AgentStack: three agents' observations and actions stacked on axis 0."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    agent_names = ["red", "green", "blue"]
    num_agents = 3
    agent_observation_space = spaces.Box(-1, 1, (4,), np.float32)
    agent_action_space = spaces.Discrete(3)
    observation_space = spaces.Box(-1, 1, (3, 4), np.float32)
    action_space = spaces.MultiDiscrete([3, 3, 3])

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.sent = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {"agent_active": np.array([True, False, True])}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action))  # every agent's action, stacked
        self.sent.append(np.asarray(action).copy())
        info = {"agent_rewards": np.array([1.0, 2.0, 3.0])}
        return self.observation_space.sample(), 0.0, False, False, info

    def render(self):
        return np.full((60, 80, 3), 90, np.uint8)


def test_agent_selection_reads_the_stacked_env():
    env = gym.wrappers.RecordEpisodeStatistics(Stacked())  # read through wrappers
    selection = AgentSelection(env)
    assert selection.active and selection.name == "red"
    assert selection.action_space == spaces.Discrete(3)
    _, info = env.reset(seed=0)
    assert selection.label(info) == "red (1/3)"
    assert selection.cycle() == "green" and selection.label(info) == "green (2/3) · inactive"
    assert selection.reward({"agent_rewards": np.array([1.0, 2.0, 3.0])}, 0.0) == 2.0
    assert selection.cycle() == "blue" and selection.cycle() == "red" and selection.cycle(-1) == "blue"
    assert not AgentSelection(gym.make("CartPole-v1")).active
    assert action_for(pygame.K_a, "a", False) == "next-agent"


def test_agent_selection_shows_the_selected_agents_decision():
    agent = PPO(observation_space=Stacked.agent_observation_space, action_space=Stacked.agent_action_space)
    obs = np.random.default_rng(0).uniform(-1, 1, (3, 4)).astype(np.float32)
    masks = np.array([[1, 1, 1], [0, 0, 1], [1, 0, 0]], bool)
    selection = AgentSelection(Stacked())
    seen = []
    for index in range(3):
        actions, decision = selection.decide(agent, obs, masks, deterministic=True)
        assert actions.shape == (3,) and actions[index] == decision["action"]
        assert masks[np.arange(3), actions].all()  # every agent's action is legal for it
        own = agent.policy_step(obs[index], deterministic=True, action_mask=masks[index])
        assert np.allclose(decision["probs"], own["probs"])  # the row of the agent shown
        seen.append(decision["probs"])
        selection.cycle()
    assert not np.allclose(seen[0], seen[1])
    for _ in range(20):  # sampled actions too: the one sent is the one the overlay shows
        actions, decision = selection.decide(agent, obs, None, deterministic=False)
        assert actions[selection.index] == decision["action"]


def test_the_replay_overlay_cycles_agents_with_key_a():
    with temporary_registrations():
        register_env("StackedFake-v0", Stacked, max_episode_steps=50)
        config = TrainConfig().with_overrides({"env.id": "StackedFake-v0"})
        agent = PPO(
            config=config,
            observation_space=Stacked.agent_observation_space,
            action_space=Stacked.agent_action_space,
        )
        viewer = Viewer(agent)
        try:
            pane = viewer.panes[0]
            assert "red (1/3)" in pane.view("").title
            viewer.tick(3)
            assert len(pane.env.unwrapped.sent) == 3 and pane.env.unwrapped.sent[0].shape == (3,)
            viewer.press(pygame.K_a)
            view = pane.view("")
            assert "green (2/3)" in view.title and len(view.bars[0].labels) == 3
            assert pane.decision["stacked_action"][1] == pane.decision["action"]
        finally:
            viewer.close()


def test_the_replay_overlay_of_a_game_names_the_seat_and_the_result(ttt_agent):
    """Replay of a turn-based game: the overlay says which seat the agent plays and against whom
    (the opponents move inside step()), and the end of a game its result for that seat."""
    viewer = Viewer(PPO.load(ttt_agent))
    try:
        pane = viewer.panes[0]
        assert "seat player_1 vs random" in pane.view("").title  # episode 0, seed 0: second seat
        for _ in range(9):
            if pane.done:
                break
            viewer.tick(1)
        assert pane.done
        result = pane.info["outcome"]
        assert result in ("win", "draw", "loss") and pane.outcome == f"terminated: {result}"
        assert (pane.episode_return > 0) == (result == "win")
    finally:
        viewer.close()
