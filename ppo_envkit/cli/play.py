"""``ppo-envkit play``: play a turn-based PettingZoo game against an agent, in a pygame window.

A command of its own rather than ``replay --play``: replay watches an agent and records it
(``--record``, ``--compare``, ``--headless``, speeds), none of which fits a game played by a
person, while playing needs what replay does not (``--seat``, a game other than the agent's).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .common import add_env_module_arg, console, load_user_envs

NAME = "play"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "play",
        help="play a turn-based game (PettingZoo AEC) against an agent",
        description="Play against an agent in a pygame window: number keys or clicks for your "
        "moves, N or R for a new game, Esc to quit. The agent plays its seats deterministically, "
        "legal moves only, and the panel shows what it thought of its last move.",
    )
    p.add_argument("agent", metavar="AGENT_OR_RUN_DIR", help="an agent directory or a run directory")
    p.add_argument("--seat", choices=["first", "second"], default="first", help="your seat (default: first)")
    p.add_argument(
        "--env",
        metavar="ID",
        help="the game (default: the agent's environment), e.g. pettingzoo.classic.tictactoe_v3:env",
    )
    p.add_argument("--seed", type=int, default=0, help="game k resets with seed S + k (default 0)")
    add_env_module_arg(p)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # before anything imports pygame
    from ..viewer.play import Game

    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    load_user_envs(args.env_module)
    game = Game(
        args.agent,
        env_id=args.env,
        seat=args.seat,
        seed=args.seed,
        log=lambda message: console.print(message, highlight=False, markup=False),
    )
    wins = game.run()  # a ViewerError is reported in one line by the command line's handler
    console.print(f"you {wins['you']}, the agent {wins['agent']}, draws {wins['draw']}", markup=False)
    return 0
