"""Shared fixtures: headless pygame, test environments registered and removed again."""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pytest

from ppo_envkit.registry import unregister_env

from . import toy_envs


@pytest.fixture
def toy_env_ids():
    """Register the toy environments of tests/toy_envs.py for one test, then remove them."""
    ids = toy_envs.register_all()
    yield ids
    for env_id in ids.values():
        unregister_env(env_id)
