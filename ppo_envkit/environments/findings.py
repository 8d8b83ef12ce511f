"""Findings of the environment checker: what is wrong, where, and how to fix it.

A :class:`Finding` is one problem in plain words; :class:`CheckReport` is every finding for
one environment. :class:`ReturnLine` and :func:`exception_finding` locate a problem in the
user's file: at the ``return`` that produced a bad value, or at the line that raised.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from ..errors import ConfigError, UserCodeExit
from .checks import Problem
from .discovery import display_path, user_location

__all__ = [
    "CheckReport",
    "EnvCallTimeout",
    "Finding",
    "Findings",
    "ReturnLine",
    "TimeLimited",
    "exception_finding",
    "install_fix",
    "method_location",
    "time_limit",
]


@dataclass(frozen=True)
class Finding:
    """One problem: ``what`` is wrong, ``where``, and how to ``fix`` it."""

    severity: str  # "error" | "warning"
    code: str  # stable short name, e.g. "obs-dtype"
    what: str
    where: str
    fix: str
    source: str = "ppo-envkit"  # or "gymnasium"
    details: str | None = None  # a traceback, when there is one
    repeats: int = 0  # later occurrences of the same code that were not listed

    def format(self) -> str:
        again = f" ({self.repeats} more time{'s' * (self.repeats > 1)})" if self.repeats else ""
        label = "" if self.source == "ppo-envkit" else f" [{self.source}]"
        return f"{self.severity}{label}: {self.what}{again}\n  where: {self.where}\n  fix:   {self.fix}"


@dataclass
class CheckReport:
    """The findings for one environment id and constructor arguments."""

    env_id: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    steps: int = 0
    episodes: int = 0
    quick: bool = False
    #: What is fine but worth knowing (the kind of a PettingZoo environment, its conventions).
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def title(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.env_id}({args})" if args else self.env_id

    def summary(self) -> str:
        ran = f"{self.steps} random steps, {self.episodes} episodes ended"
        if not self.findings:
            return f"{self.title()}: passed ({ran})"
        n_err, n_warn = len(self.errors), len(self.warnings)
        counts = [f"{n_err} error{'s' * (n_err != 1)}"] if n_err else []
        counts += [f"{n_warn} warning{'s' * (n_warn != 1)}"] if n_warn else []
        return f"{self.title()}: {', '.join(counts)} ({ran})"

    def format(self) -> str:
        ordered = self.errors + self.warnings
        notes = (f"note: {n}" for n in self.notes)
        return "\n".join([self.summary(), *notes, *(f.format() for f in ordered)])


class Findings:
    """Collects findings; a code seen again is counted, not listed again."""

    def __init__(self) -> None:
        self.items: list[Finding] = []
        self._index: dict[str, int] = {}

    def add(self, severity: str, code: str, what: str, where: str, fix: str, **extra: Any) -> None:
        if code in self._index:
            i = self._index[code]
            old = self.items[i]
            self.items[i] = Finding(**{**old.__dict__, "repeats": old.repeats + 1})
            return
        self._index[code] = len(self.items)
        self.items.append(Finding(severity, code, what, where, fix, **extra))

    def problems(self, problems: list[Problem], where: str) -> None:
        for p in problems:
            self.add(p.severity, p.code, p.what, where, p.fix)


def method_location(env: gym.Env, name: str) -> str:
    """``Class.method (file:line)`` of the environment's own definition of ``name``."""
    cls = type(env.unwrapped)
    fn = getattr(cls, name, None)
    owner = next((c for c in cls.__mro__ if name in c.__dict__), None)
    if owner is not None and owner.__module__.startswith("gymnasium"):
        return f"{cls.__name__}.{name} (not defined: inherited from gymnasium.Env)"
    try:
        file = inspect.getsourcefile(fn)  # type: ignore[arg-type]
        line = inspect.getsourcelines(fn)[1]  # type: ignore[arg-type]
    except (TypeError, OSError):
        return f"{cls.__name__}.{name}"
    return f"{cls.__name__}.{name} ({display_path(file or '?')}:{line})"


class ReturnLine:
    """Records the line of the ``return`` that ended the last call of one function.

    A finding about a returned value can then point at the ``return`` statement that
    produced it rather than at the ``def``. Skipped under a debugger or coverage tool.
    """

    def __init__(self, env: gym.Env, name: str) -> None:
        fn = getattr(type(env.unwrapped), name, None)
        self.code = getattr(fn, "__code__", None)
        self.file = display_path(self.code.co_filename) if self.code is not None else ""
        self.name = getattr(fn, "__qualname__", name)
        self.line: int | None = None

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        return self._local if event == "call" and frame.f_code is self.code else None

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "return":
            self.line = frame.f_lineno
        return self._local

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self.line = None
        if self.code is None or sys.gettrace() is not None:
            return fn(*args, **kwargs)
        sys.settrace(self._global)
        try:
            return fn(*args, **kwargs)
        finally:
            sys.settrace(None)

    def where(self, fallback: str) -> str:
        return f"{self.name} returned at {self.file}:{self.line}" if self.line is not None else fallback


#: Seconds the checker waits for one call of the environment (reset, step, render, close).
CALL_TIME_LIMIT_S = 20.0


class TimeLimited(gym.Wrapper):
    """Each call of the wrapped environment under :func:`time_limit` (the checker's copy);
    :attr:`timed_out` tells whether one did not return (the checks may catch the error)."""

    timed_out = False

    def _limited(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with time_limit(CALL_TIME_LIMIT_S, what):
                return fn(*args, **kwargs)
        except EnvCallTimeout:
            self.timed_out = True
            raise

    def reset(self, **kwargs: Any) -> Any:
        return self._limited("reset()", self.env.reset, **kwargs)

    def step(self, action: Any) -> Any:
        return self._limited("step()", self.env.step, action)

    def render(self) -> Any:
        return self._limited("render()", self.env.render)

    def close(self) -> None:
        self._limited("close()", self.env.close)


class EnvCallTimeout(TimeoutError):
    """A call of the environment did not return within :data:`CALL_TIME_LIMIT_S`."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`EnvCallTimeout` inside the block after ``seconds`` (a hanging environment
    becomes a finding instead of a hung checker). POSIX main thread only; elsewhere no limit."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expired(_signum: int, _frame: Any) -> None:
        raise EnvCallTimeout(f"{what} did not return within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    remaining, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:  # an outer limit was running (a test's watchdog): give it back what is left
            signal.setitimer(signal.ITIMER_REAL, max(remaining - (time.monotonic() - started), 0.001))


_PIP_QUOTED = re.compile(r"`(pip install [^`]+)`")
_PIP_PLAIN = re.compile(
    r"pip install (?:\"[^\"]+\"|'[^']+'|[\w.\[\],=<>~-]+)(?: (?:\"[^\"]+\"|[\w.\[\],=<>~-]+))*"
)


def install_fix(exc: BaseException) -> str | None:
    """The fix for a missing dependency: the ``pip install`` commands that Gymnasium's
    ``DependencyNotInstalled`` (or an ImportError) names, in its words' order; None if it names none."""
    if not isinstance(exc, gym.error.DependencyNotInstalled | ImportError):
        return None
    text = str(exc)
    commands = _PIP_QUOTED.findall(text) or _PIP_PLAIN.findall(text)
    if not commands:
        return None
    return "install what it needs: " + ", then ".join(dict.fromkeys(c.strip().rstrip(".") for c in commands))


def exception_finding(found: Findings, code: str, call: str, exc: BaseException, at: str = "") -> None:
    """An exception raised by the environment, located in the user's file; a missing dependency's
    fix is the ``pip install`` its message names, not the user's line."""
    if isinstance(exc, ConfigError) and isinstance(exc.__cause__, TypeError):
        exc = exc.__cause__  # make_env's one-line form of the constructor's TypeError
    loc = user_location(exc.__traceback__)
    text = str(exc)
    fix = install_fix(exc) or (f"fix the code at {loc}" if loc else "fix the exception")
    if isinstance(exc, TypeError) and "unexpected keyword argument" in text:
        arg = re.search(r"argument '(\w+)'", text)
        name = arg.group(1) if arg else "?"
        fix = {
            "seed": "give reset the signature reset(self, *, seed=None, options=None) and call "
            "super().reset(seed=seed) first",
            "options": "give reset the signature reset(self, *, seed=None, options=None)",
            "render_mode": "accept render_mode=None in __init__ and store it: self.render_mode = render_mode",
        }.get(name, f"accept the keyword argument {name!r} in __init__ (it comes from kwargs or variants)")
    where = ", ".join(p for p in (call + at, loc) if p)
    found.add(
        "error",
        code,
        # sys.exit() and the like arrive as UserCodeExit("SystemExit: 4"): named as the user wrote them
        f"{call} raised {text}"
        if isinstance(exc, UserCodeExit)
        else f"{call} raised {type(exc).__name__}: {text}",
        where,
        fix,
        details="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )
