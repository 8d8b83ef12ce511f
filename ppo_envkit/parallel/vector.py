"""A vector environment that steps shards of copies in parallel, the main process included.

Gymnasium's ``AsyncVectorEnv`` runs one process per copy and pickles every step
through a pipe: with 16 copies on 2 cores, that costs more than the parallelism
brings. :class:`ShardedVectorEnv` splits the copies into ``num_workers`` shards.
Shard 0 steps in the calling process while the other shards step in worker
processes at the same time, so ``num_workers`` equal to the number of cores
keeps every core busy during collection.

A step moves no pickles: actions, observations, rewards, episode flags and final
observations travel through shared memory, and a one-byte pipe message wakes the
worker (a blocked worker burns no CPU while the learner updates). Other calls
(reset, call, set_attr) go through the pipe.

Each shard is a ``SyncVectorEnv`` with same-step autoreset, so a step that ends an
episode returns the reset observation and puts the episode's last observation in
``info["final_obs"]``. That and ``info["action_mask"]`` (the action masks of the returned
observations) are the info keys carried across processes, with the arrays an environment
declares in its ``info_arrays`` attribute (``{key: (shape, dtype)}`` of one copy: the
per-agent results of :class:`~ppo_envkit.environments.agent_stack.AgentStack`), of the step
and, for copies whose episode ended, of its ``info["final_info"]``.

An exception in a worker is raised in the caller with the worker's traceback; a
worker that dies is reported instead of waited for.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from ..environments.masks import mask_size
from ..errors import EnvWorkerError, RewardError, UserCodeExit
from .lifeline import describe_exit, die_with_parent, ignore_terminal_signals, parent_alive

_REQUEST, _DONE, _FAILED = 0, 1, 2

#: ``{key: (shape, dtype)}``: per-copy info arrays an environment declares (``info_arrays``).
InfoArrays = dict[str, tuple[tuple[int, ...], Any]]


def info_arrays(envs: SyncVectorEnv) -> InfoArrays:
    """The info arrays the copies of ``envs`` declare (their ``info_arrays`` attribute; none
    without one)."""
    try:
        declared = envs.envs[0].get_wrapper_attr("info_arrays")
    except AttributeError:
        return {}
    return {str(key): (tuple(shape), np.dtype(dtype)) for key, (shape, dtype) in dict(declared).items()}


class _Shared:
    """Numpy views over shared memory for one shard's step data."""

    def __init__(
        self,
        ctx: Any,
        n: int,
        obs_space: spaces.Box,
        act_batch: np.ndarray,
        masks: int,
        arrays: InfoArrays | None = None,
    ):
        obs_shape, obs_dtype = (n, *obs_space.shape), obs_space.dtype
        self.keys = list(arrays or {})
        self.specs = {
            "action_mask": ((n, masks), np.bool_),
            "has_mask": ((n,), np.bool_),
            "obs": (obs_shape, obs_dtype),
            "final_obs": (obs_shape, obs_dtype),
            "final_mask": ((n,), np.bool_),
            "reward": ((n,), np.float64),
            "terminated": ((n,), np.bool_),
            "truncated": ((n,), np.bool_),
            "actions": (act_batch.shape, act_batch.dtype),
            "has_final_info": ((n,), np.bool_),
        }
        for key, (shape, dtype) in (arrays or {}).items():  # the step's, and the ended episodes'
            self.specs[f"info.{key}"] = ((n, *shape), dtype)
            self.specs[f"has.{key}"] = ((n,), np.bool_)
            self.specs[f"final.{key}"] = ((n, *shape), dtype)
        self.raw = {
            k: ctx.RawArray("b", max(1, int(np.prod(s)) * np.dtype(d).itemsize))
            for k, (s, d) in self.specs.items()
        }
        self.ctrl = ctx.RawArray("q", 3)  # request seq, done seq, failed flag
        self.attach()

    def attach(self) -> None:
        self.views = {
            key: np.frombuffer(self.raw[key], dtype=dtype, count=int(np.prod(shape))).reshape(shape)
            for key, (shape, dtype) in self.specs.items()
        }
        for key, view in self.views.items():
            if "." not in key:
                setattr(self, key, view)
        self.ctrl_view = np.frombuffer(self.ctrl, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        return {"specs": self.specs, "raw": self.raw, "ctrl": self.ctrl, "keys": self.keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.attach()


def _slim_info(info: dict[str, Any], n: int, keys: Sequence[str] = ()) -> dict[str, Any]:
    """The info keys that travel: final observations, action masks, and the declared info
    arrays ``keys`` (of the step, and of ``final_info`` for the copies whose episode ended)."""
    out = {}
    for key in ("final_obs", "action_mask", *keys):
        if key in info:
            out[key] = info[key]
            out[f"_{key}"] = info.get(
                f"_{key}", np.zeros(n, bool) if key == "final_obs" else np.ones(n, bool)
            )
    if keys and "final_info" in info:
        final = info["final_info"]
        out["final_info"] = {k: final[k] for key in keys for k in (key, f"_{key}") if k in final}
        out["_final_info"] = info["_final_info"]
    return out


def _write_step(shared: _Shared, result: tuple[Any, ...]) -> None:
    obs, reward, terminated, truncated, info = result
    shared.obs[...] = obs
    shared.reward[...] = reward
    shared.terminated[...] = terminated
    shared.truncated[...] = truncated
    mask = info.get("_final_obs")
    shared.final_mask[...] = False if mask is None else mask
    if mask is not None:
        for i in np.flatnonzero(mask):
            shared.final_obs[i] = info["final_obs"][i]
    present = info.get("_action_mask")
    shared.has_mask[...] = False if present is None else present
    if present is not None:
        shared.action_mask[...] = info["action_mask"]
    views = shared.views
    for key in shared.keys:
        present = info.get(f"_{key}")
        views[f"has.{key}"][...] = False if present is None else present
        if present is not None:
            views[f"info.{key}"][...] = info[key]
    ended = info.get("_final_info")
    shared.has_final_info[...] = False if ended is None else ended
    if ended is not None and shared.keys:
        final = info["final_info"]
        for key in shared.keys:
            if key in final:
                views[f"final.{key}"][...] = final[key]


def _next_message(conn: Any) -> Any:
    """The next message from the parent; EOFError when the parent is gone (a sibling may hold
    the parent's end of the pipe, so end-of-file alone does not say it)."""
    while not conn.poll(1.0):
        if not parent_alive():
            raise EOFError
    return conn.recv()


def _worker(conn: Any, env_fns: list[Callable[[], gym.Env]], shared: _Shared | None, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    ignore_terminal_signals()  # the parent stops training and ends this process
    envs = None
    try:
        envs = SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
        keys = list(info_arrays(envs))
        conn.send(("ok", None))
        while True:
            message = _next_message(conn)
            if message == "step":  # fast path: data in shared memory
                seq = int(shared.ctrl_view[_REQUEST])
                try:
                    _write_step(shared, envs.step(shared.actions.copy()))
                except Exception:
                    shared.ctrl_view[_FAILED] = 1
                    conn.send(("error", traceback.format_exc()))
                shared.ctrl_view[_DONE] = seq
                continue
            cmd, data = message
            try:
                if cmd == "step":
                    obs, reward, terminated, truncated, info = envs.step(data)
                    result: Any = (obs, reward, terminated, truncated, _slim_info(info, envs.num_envs, keys))
                elif cmd == "reset":
                    obs, info = envs.reset(seed=data)
                    result = (obs, _slim_info(info, envs.num_envs, keys))
                elif cmd == "call":
                    name, args, kwargs = data
                    result = envs.call(name, *args, **kwargs)
                elif cmd == "set_attr":
                    envs.set_attr(*data)
                    result = None
                elif cmd == "close":
                    envs.close()
                    conn.send(("ok", None))
                    return
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                conn.send(("ok", result))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    except (KeyboardInterrupt, EOFError):
        pass  # Ctrl-C is handled by the parent; EOF: the parent went away
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except (BrokenPipeError, OSError):
            pass
    finally:
        if envs is not None:
            envs.close()


class ShardedVectorEnv(VectorEnv):
    """``len(env_fns)`` copies in ``num_workers`` shards; shard 0 in this process."""

    def __init__(
        self, env_fns: Sequence[Callable[[], gym.Env]], num_workers: int = 2, context: str | None = None
    ):
        n = len(env_fns)
        num_workers = max(1, min(num_workers, n))
        bounds = np.linspace(0, n, num_workers + 1).round().astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        self.closed = True
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._local = SyncVectorEnv(list(env_fns[self._slices[0]]), autoreset_mode=AutoresetMode.SAME_STEP)
        self.closed = False
        self._arrays = info_arrays(self._local)
        self._keys = list(self._arrays)
        self.num_envs = n
        self.single_observation_space = self._local.single_observation_space
        self.single_action_space = self._local.single_action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self.metadata = dict(self._local.metadata)
        self.metadata["autoreset_mode"] = AutoresetMode.SAME_STEP
        self.render_mode = self._local.render_mode
        self._obs_buffer = create_empty_array(self.single_observation_space, n)
        fast = isinstance(self.single_observation_space, spaces.Box) and not isinstance(
            self.single_action_space, (spaces.Dict, spaces.Tuple)
        )
        if context is None:
            context = "fork" if sys.platform.startswith("linux") else "spawn"
        ctx = mp.get_context(context)
        self._shared: list[_Shared | None] = []
        for sl in self._slices[1:]:
            m = sl.stop - sl.start
            shared = None
            if fast:
                act_batch = np.asarray(create_empty_array(self.single_action_space, m))
                masks = mask_size(self.single_action_space) or 0
                shared = _Shared(ctx, m, self.single_observation_space, act_batch, masks, self._arrays)
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker, args=(child, list(env_fns[sl]), shared, os.getpid()), daemon=True
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
            self._shared.append(shared)
        self._seq = 0
        for k in range(len(self._conns)):
            self._receive(k)  # creation errors surface here

    # ------------------------------------------------------------------ plumbing

    def _fail(self, message: str, trace: str | None = None) -> None:
        self.close(terminate=True)
        raise EnvWorkerError(message, trace)

    def _died(self, k: int) -> None:
        proc = self._procs[k]
        proc.join(timeout=2.0)  # a closed pipe can be seen before the kernel reaps the process
        self._fail(f"environment worker process {k + 1} died ({describe_exit(proc.exitcode)})")

    def _receive(self, k: int) -> Any:
        conn, proc = self._conns[k], self._procs[k]
        while not conn.poll(0.5):
            if not proc.is_alive():
                self._died(k)
        try:
            status, payload = conn.recv()
        except (EOFError, ConnectionResetError):
            self._died(k)
        if status == "error":
            last = [line for line in payload.strip().splitlines() if line.strip()][-1:] or ["?"]
            what = " raised " + last[0].strip()
            for bare, instead in ((UserCodeExit, " raised "), (RewardError, ": ")):  # their own words
                what = what.replace(f" raised {bare.__module__}.{bare.__name__}: ", instead)
            self._fail(f"the environment in worker process {k + 1}{what}", payload)
        return payload

    def _wait_step(self, k: int) -> None:
        shared, proc = self._shared[k], self._procs[k]
        ctrl = shared.ctrl_view
        spins = 0
        while ctrl[_DONE] != self._seq:
            spins += 1
            if spins > 2000:  # the worker is slow: stop spinning, check it is alive
                time.sleep(0.0001)
                if spins % 5000 == 0 and not proc.is_alive():
                    self._died(k)
        if ctrl[_FAILED]:
            self._receive(k)

    def _broadcast(self, cmd: str, per_worker: Sequence[Any]) -> None:
        for conn, data in zip(self._conns, per_worker, strict=True):
            conn.send((cmd, data))

    def _gather_obs(self, parts: list[Any]) -> Any:
        space = self.single_observation_space
        if isinstance(space, spaces.Box):
            return np.concatenate(parts, axis=0)
        items: list[Any] = []
        for part, sl in zip(parts, self._slices, strict=True):
            items.extend(iterate(batch_space(space, sl.stop - sl.start), part))
        return concatenate(space, items, self._obs_buffer)

    # ------------------------------------------------------------------ VectorEnv API

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        seeds = _split_seeds(seed, self.num_envs)
        self._broadcast("reset", [None if seeds is None else seeds[sl] for sl in self._slices[1:]])
        local_seed = None if seeds is None else seeds[self._slices[0]]
        local_obs, local_info = self._local.reset(seed=local_seed, options=options)
        results = [(local_obs, _slim_info(local_info, self._local.num_envs, self._keys))]
        results += [self._receive(k) for k in range(len(self._conns))]
        return self._gather_obs([r[0] for r in results]), self._merge_info([r[1] for r in results])

    def step(self, actions: Any):
        if not isinstance(actions, tuple | dict):  # composite actions: a tuple or dict of batches
            actions = np.asarray(actions)
        if self._shared and self._shared[0] is not None:
            return self._step_shared(actions)
        self._broadcast("step", [_rows(actions, sl) for sl in self._slices[1:]])
        local = self._local.step(_rows(actions, self._slices[0]))
        results = [(*local[:4], _slim_info(local[4], self._local.num_envs, self._keys))]
        results += [self._receive(k) for k in range(len(self._conns))]
        return self._merge(results)

    def _step_shared(self, actions: np.ndarray):
        self._seq += 1
        for k, (shared, sl) in enumerate(zip(self._shared, self._slices[1:], strict=True)):
            shared.actions[...] = actions[sl]
            shared.ctrl_view[_REQUEST] = self._seq
            self._conns[k].send("step")
        local = self._local.step(actions[self._slices[0]])
        results = [(*local[:4], _slim_info(local[4], self._local.num_envs, self._keys))]
        for k, shared in enumerate(self._shared):
            self._wait_step(k)
            info = {}
            if shared.final_mask.any():
                final = np.full(len(shared.final_mask), None, dtype=object)
                for i in np.flatnonzero(shared.final_mask):
                    final[i] = shared.final_obs[i].copy()
                info = {"final_obs": final, "_final_obs": shared.final_mask.copy()}
            if shared.has_mask.any():
                info["action_mask"], info["_action_mask"] = shared.action_mask.copy(), shared.has_mask.copy()
            info.update(self._shared_arrays(shared))
            results.append((shared.obs, shared.reward, shared.terminated, shared.truncated, info))
        return self._merge(results)

    def _shared_arrays(self, shared: _Shared) -> dict[str, Any]:
        """A worker's declared info arrays, read from its shared memory as a vector info."""
        views, info = shared.views, {}
        for key in self._keys:
            present = views[f"has.{key}"]
            if present.any():
                info[key], info[f"_{key}"] = views[f"info.{key}"].copy(), present.copy()
        ended = shared.has_final_info
        if self._keys and ended.any():
            final = {}
            for key in self._keys:
                final[key], final[f"_{key}"] = views[f"final.{key}"].copy(), ended.copy()
            info["final_info"], info["_final_info"] = final, ended.copy()
        return info

    def _merge(self, results: list[tuple[Any, ...]]):
        obs = self._gather_obs([r[0] for r in results])
        reward = np.concatenate([r[1] for r in results])
        terminated = np.concatenate([r[2] for r in results])
        truncated = np.concatenate([r[3] for r in results])
        return obs, reward, terminated, truncated, self._merge_info([r[4] for r in results])

    def _merge_info(self, infos: list[dict[str, Any]]) -> dict[str, Any]:
        """The shards' slim infos as one vector info (with the ``_key`` presence arrays)."""
        info = self._merge_keys(infos, ("final_obs", "action_mask", *self._keys))
        ended = [part.get("final_info", {}) for part in infos]
        if any(ended):
            info["final_info"] = self._merge_keys(ended, self._keys)
            present = np.zeros(self.num_envs, dtype=bool)
            for part, sl in zip(infos, self._slices, strict=True):
                if "_final_info" in part:
                    present[sl] = part["_final_info"]
            info["_final_info"] = present
        return info

    def _merge_keys(self, infos: list[dict[str, Any]], keys: Sequence[str]) -> dict[str, Any]:
        """``keys`` of the shards' infos (one per shard, in order) as the vector's."""
        info: dict[str, Any] = {}
        for key in keys:
            parts = [
                (part[key], part[f"_{key}"], sl)
                for part, sl in zip(infos, self._slices, strict=True)
                if key in part
            ]
            if not parts:
                continue
            first = np.asarray(parts[0][0])
            if key == "final_obs":
                values = np.full(self.num_envs, None, dtype=object)
            else:
                values = np.zeros((self.num_envs, *first.shape[1:]), first.dtype)
            present = np.zeros(self.num_envs, dtype=bool)
            for value, there, sl in parts:
                values[sl] = value
                present[sl] = there
            info[key], info[f"_{key}"] = values, present
        return info

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        self._broadcast("call", [(name, args, kwargs)] * len(self._conns))
        results = list(self._local.call(name, *args, **kwargs))
        for k in range(len(self._conns)):
            results.extend(self._receive(k))
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr needs {self.num_envs} values, got {len(values)}")
        self._broadcast("set_attr", [(name, list(values[sl])) for sl in self._slices[1:]])
        self._local.set_attr(name, list(values[self._slices[0]]))
        for k in range(len(self._conns)):
            self._receive(k)

    def render(self) -> tuple[Any, ...] | None:
        return self._local.render()

    def close_extras(self, terminate: bool = False, **kwargs: Any) -> None:
        for conn, proc in zip(self._conns, self._procs, strict=True):
            if not terminate and proc.is_alive():
                try:
                    conn.send(("close", None))
                    if conn.poll(5.0):
                        conn.recv()
                except (BrokenPipeError, EOFError, OSError):
                    pass
            proc.join(timeout=0.1 if terminate else 2.0)
            if proc.is_alive():  # workers ignore SIGTERM
                proc.kill()
                proc.join(timeout=1.0)
            conn.close()
        self._conns, self._procs, self._shared = [], [], []
        self._local.close()

    def close(self, **kwargs: Any) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_extras(**kwargs)


def _rows(actions: Any, rows: slice) -> Any:
    """The ``rows`` of a batch of actions: an array, or a composite action's tuple or dict of
    batches (nested), sliced part by part."""
    if isinstance(actions, tuple):
        return tuple(_rows(part, rows) for part in actions)
    if isinstance(actions, dict):
        return {key: _rows(part, rows) for key, part in actions.items()}
    return actions[rows]


def _split_seeds(seed: int | Sequence[int] | None, n: int) -> list[int | None] | None:
    if seed is None:
        return None
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    return list(seed)
