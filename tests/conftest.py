"""Shared fixtures: headless pygame, test environments registered and removed again.

Tests under ``tests/slow/`` (learning runs, several processes, torchrun, benchmarks) are
marked ``slow``, as are tests elsewhere decorated ``@pytest.mark.slow`` (a learning run
beside the fast tests of its feature): ``python -m pytest -m "not slow"`` is the fast inner
loop, ``python -m pytest`` runs everything.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
# Idle OpenMP threads sleep instead of spinning (read when torch loads, so before any import
# of it): convolutional policies use every core, and spinning threads on a machine that
# runs other tests too made a CNN learning test 8x slower (measured: 6.1 s against 0.7 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Messages are checked by their words: a long tmp_path (under pytest-xdist, say) must not wrap them.
os.environ.setdefault("COLUMNS", "200")
# A shell that starts the tests in the background (`pytest ... &`, nohup) leaves SIGINT ignored,
# and an ignored signal stays ignored in every child: the tests that press Ctrl-C on a training
# process would wait for nothing. A handled signal is reset to the default in children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

import gymnasium as gym
import pytest

from ppo_envkit.environments.registry import unregister_env

from . import toy_envs

_SLOW = Path(__file__).parent / "slow"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(item.path).is_relative_to(_SLOW):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def fault_env_ids():
    """The failing environments of tests/fault_envs.py, for one test."""
    from . import fault_envs

    ids = fault_envs.register_all()
    yield ids
    for env_id in ids.values():
        gym.registry.pop(env_id, None)


@pytest.fixture
def toy_env_ids():
    """Register the toy environments of tests/toy_envs.py for one test, then remove them."""
    ids = toy_envs.register_all()
    yield ids
    for env_id in ids.values():
        unregister_env(env_id)


@pytest.fixture
def masked_env_ids():
    """The masked and image environments of tests/masked_envs.py, for one test."""
    from . import masked_envs

    ids = masked_envs.register_masked()
    yield ids
    for env_id in ids.values():
        unregister_env(env_id)
