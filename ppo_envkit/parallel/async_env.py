"""Gymnasium's ``AsyncVectorEnv`` with worker liveness: a dead worker is an error, never a hang.

Gymnasium waits on each worker's pipe without a timeout and, on close, waits for a
pending step and then for every worker's reply: a worker killed mid-step (out of memory,
``kill -9``) hangs the trainer in ``close()``. Its error path also formats the worker's
traceback with ``%``, so a ``%`` in the user's failing line turns into a logging
``TypeError``. :class:`GuardedAsyncVectorEnv` keeps Gymnasium's protocol and replaces
the waiting, the error report and the close:

* waiting checks every half second that the workers it waits for are alive;
* an exception in a worker becomes :class:`~ppo_envkit.errors.EnvWorkerError` with the
  worker's traceback, and a dead worker one that says how it died;
* ``close()`` never waits on a dead worker, and ends workers that do not answer.

``_poll_pipe_envs`` and ``_raise_if_errors`` are private to Gymnasium: the versions this
relies on are pinned by ``tests/unit/test_gymnasium_pins.py`` (hence ``gymnasium<1.5``).
"""

from __future__ import annotations

import time
from multiprocessing.connection import wait
from typing import Any

from gymnasium.vector import AsyncVectorEnv
from gymnasium.vector.async_vector_env import AsyncState, _async_worker

from ..errors import EnvWorkerError, RewardError, UserCodeExit
from .lifeline import describe_exit, ignore_terminal_signals

#: Seconds between liveness checks while waiting for the workers.
POLL_S = 0.5
#: Seconds a closing worker gets to answer before it is terminated.
CLOSE_TIMEOUT_S = 5.0


def _quiet_worker(*args: Any) -> None:
    """Gymnasium's worker, ignoring terminal signals (the parent stops training and ends the
    workers), and silent when its parent has gone (Gymnasium's worker reports its errors
    through the error queue first, then fails to write to the closed pipe)."""
    ignore_terminal_signals()
    try:
        _async_worker(*args)
    except BaseException:  # nothing left to tell: the parent is gone or ending this process
        pass


class GuardedAsyncVectorEnv(AsyncVectorEnv):
    """``AsyncVectorEnv`` (one process per copy) that reports dead workers instead of hanging."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("worker", _quiet_worker)
        super().__init__(*args, **kwargs)

    def _poll_pipe_envs(self, timeout: float | None = None) -> bool:
        """Wait until every worker has answered (True), ``timeout`` passes (False), or a worker
        dies without answering (:class:`EnvWorkerError`)."""
        self._assert_is_running()
        if any(pipe is None or pipe.closed for pipe in self.parent_pipes):
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = dict(enumerate(self.parent_pipes))
        while pending:
            wait_s = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic()))
            for pipe in wait(list(pending.values()), timeout=wait_s):
                pending = {i: p for i, p in pending.items() if p is not pipe}
            for index, pipe in list(pending.items()):
                process = self.processes[index]
                if not process.is_alive() and not pipe.poll():
                    self._worker_died(index)
            if pending and deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def step_wait(self, timeout: float | None = None) -> Any:
        return self._guarded(super().step_wait, timeout)

    def reset_wait(self, timeout: float | None = None, **kwargs: Any) -> Any:
        return self._guarded(super().reset_wait, timeout, **kwargs)

    def call_wait(self, timeout: float | None = None) -> Any:
        return self._guarded(super().call_wait, timeout)

    def _guarded(self, wait_call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return wait_call(*args, **kwargs)
        except (EOFError, BrokenPipeError, ConnectionResetError):
            self._worker_died(self._first_dead_worker())

    def _first_dead_worker(self, grace_s: float = 2.0) -> int | None:
        """The index of a worker that has ended. A closed pipe can be seen before the kernel
        reports the process's end, so wait up to ``grace_s`` for one to be reaped."""
        deadline = time.monotonic() + grace_s
        while True:
            dead = [i for i, p in enumerate(self.processes) if not p.is_alive()]
            if dead or time.monotonic() >= deadline:
                return dead[0] if dead else None
            time.sleep(0.01)

    def _worker_died(self, index: int | None) -> None:
        how = describe_exit(self.processes[index].exitcode) if index is not None else "pipe closed"
        which = f"environment worker {index}" if index is not None else "an environment worker"
        self._state = AsyncState.DEFAULT
        self.close(terminate=True)
        raise EnvWorkerError(f"{which} died ({how}) while stepping its environment copy")

    def _raise_if_errors(self, successes: Any) -> None:
        """Raise the workers' exceptions as one :class:`EnvWorkerError` (not through Gymnasium's
        ``%``-formatting logger), with the first failing worker's traceback."""
        successes = list(successes)
        if all(successes):
            return
        failures = [self.error_queue.get() for _ in range(successes.count(False))]
        for index, *_ in failures:
            self.parent_pipes[index].close()
            self.parent_pipes[index] = None
        self._state = AsyncState.DEFAULT
        index, exc_type, value, trace = failures[0]
        more = f" (and {len(failures) - 1} other copies)" if len(failures) > 1 else ""
        self.close(terminate=True)
        if issubclass(exc_type, RewardError):  # returned, not raised
            what = f": {value}"
        elif issubclass(exc_type, UserCodeExit):  # SystemExit: 4, as the user wrote it
            what = f" raised {value}"
        else:
            what = f" raised {exc_type.__name__}: {value}"
        raise EnvWorkerError(f"the environment in worker {index}{more}{what}", trace=trace)

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        """Ask live workers to close (unless ``terminate``), then end any that remain."""
        pipes = [p for p in self.parent_pipes if p is not None and not p.closed]
        healthy = self._state == AsyncState.DEFAULT and all(p.is_alive() for p in self.processes)
        if not terminate and healthy:
            try:
                for pipe in pipes:
                    pipe.send(("close", None))
                for pipe in pipes:
                    if pipe.poll(CLOSE_TIMEOUT_S if timeout is None else timeout):
                        pipe.recv()
            except (EOFError, OSError):
                pass
        for pipe in pipes:
            pipe.close()
        for process in self.processes:
            process.join(timeout=0.05 if terminate or not healthy else CLOSE_TIMEOUT_S)
            if process.is_alive():  # workers ignore SIGTERM (see _quiet_worker)
                process.kill()
                process.join()


__all__ = ["GuardedAsyncVectorEnv"]
