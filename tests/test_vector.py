"""ShardedVectorEnv: same results as SyncVectorEnv, worker errors surface, nothing hangs."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from ppo_envkit.environments.factory import make_env
from ppo_envkit.parallel.vector import EnvWorkerError, ShardedVectorEnv


def _factory(env_id):
    return lambda: make_env(env_id)


def _rollout(envs, steps=300, seed=0):
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(1)
    trace = [obs.copy()]
    finals = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = envs.step(rng.integers(0, 2, envs.num_envs))
        trace.append((np.copy(obs), reward.copy(), terminated.copy(), truncated.copy()))
        if "final_obs" in info:
            finals.append([None if o is None else np.copy(o) for o in info["final_obs"]])
    return trace, finals


@pytest.mark.parametrize("num_workers", [2, 3])
def test_sharded_matches_sync_vector_env(num_workers):
    fns = [_factory("CartPole-v1")] * 5
    sync = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    sharded = ShardedVectorEnv(fns, num_workers=num_workers)
    try:
        assert sharded.num_envs == 5 and sharded.single_observation_space == sync.single_observation_space
        a_trace, a_finals = _rollout(sync)
        b_trace, b_finals = _rollout(sharded)
        for a, b in zip(a_trace[1:], b_trace[1:], strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_array_equal(x, y)
        assert len(a_finals) == len(b_finals) > 0
        for fa, fb in zip(a_finals, b_finals, strict=True):
            for x, y in zip(fa, fb, strict=True):
                assert (x is None and y is None) or np.array_equal(x, y)
        # call / set_attr reach every copy, in order
        sharded.set_attr("tag", list(range(5)))
        assert sharded.get_attr("tag") == (0, 1, 2, 3, 4)
    finally:
        sync.close()
        sharded.close()


def test_dict_observations_use_the_pipe_path(toy_env_ids):
    fns = [_factory(toy_env_ids["dict"])] * 4
    sync = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    sharded = ShardedVectorEnv(fns, num_workers=2)
    try:
        a, _ = sync.reset(seed=3)
        b, _ = sharded.reset(seed=3)
        for key in a:
            if key == "pair":
                for x, y in zip(a[key], b[key], strict=True):
                    np.testing.assert_array_equal(x, y)
            else:
                np.testing.assert_array_equal(a[key], b[key])
        actions = np.array([[0, 1]] * 4)
        ra = sync.step(actions)
        rb = sharded.step(actions)
        np.testing.assert_array_equal(ra[1], rb[1])
    finally:
        sync.close()
        sharded.close()


class ExplodingEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if int(action) == 1:
            raise ValueError("boom in step")
        if int(action) == 0 and os.environ.get("_KILL_WORKER") == "1":
            os._exit(3)
        return np.zeros(2, np.float32), 0.0, False, False, {}


def test_worker_exception_surfaces_with_traceback():
    envs = ShardedVectorEnv([ExplodingEnv] * 4, num_workers=2)
    envs.reset(seed=0)
    envs.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(EnvWorkerError, match=r"(?s)worker process 1 raised.*ValueError: boom in step"):
        envs.step(np.array([0, 0, 1, 1]))
    assert envs.closed


def test_dead_worker_is_reported_not_waited_for(monkeypatch):
    monkeypatch.setenv("_KILL_WORKER", "1")  # inherited by the forked worker
    envs = ShardedVectorEnv([ExplodingEnv] * 2, num_workers=2)
    envs.reset(seed=0)
    monkeypatch.setenv("_KILL_WORKER", "0")  # the main process' own copy keeps stepping
    with pytest.raises(EnvWorkerError, match="died"):
        envs.step(np.zeros(2, dtype=np.int64))


def test_creation_error_surfaces():
    def broken():
        raise RuntimeError("cannot build this env")

    with pytest.raises(EnvWorkerError, match="cannot build this env"):
        ShardedVectorEnv([_factory("CartPole-v1"), broken], num_workers=2)
