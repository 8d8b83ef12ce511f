"""Pins on Gymnasium's private code that ppo-envkit overrides.

:class:`~ppo_envkit.parallel.async_env.GuardedAsyncVectorEnv` replaces
``AsyncVectorEnv._poll_pipe_envs`` and ``_raise_if_errors`` (private: no release promises
them) and relies on ``step_wait``, ``reset_wait`` and ``call_wait`` calling them as they do,
and on ``close_extras``'s parameters. These tests compare the installed Gymnasium's code of
those methods (docstrings, comments, annotations and layout left out) with the versions
read and found to fit: Gymnasium 1.1.1, 1.2.2, 1.3.0 and 1.4.0. A release that changes
them fails here, loudly, before a worker death hangs training or an error is lost.

If this fails: read the changed methods in ``gymnasium/vector/async_vector_env.py``,
adjust ``ppo_envkit/parallel/async_env.py``, add the new fingerprints below, and move the
upper bound of ``gymnasium`` in ``pyproject.toml`` (it is ``<1.5`` because 1.4 is the
newest release checked).
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap

import gymnasium
import pytest
from gymnasium.vector import AsyncVectorEnv

from ppo_envkit.parallel.async_env import GuardedAsyncVectorEnv

#: method -> fingerprints of the versions read (1.1.1 and 1.2.2 / 1.3.0 and 1.4.0 where they differ)
KNOWN = {
    "_poll_pipe_envs": {"d72edd0620a1"},
    "_raise_if_errors": {"86fbc96622d1"},
    "_assert_is_running": {"d33535876be5"},
    "step_wait": {"d1c3c1fb47a2"},
    "reset_wait": {"7a5480c6f20c", "101651f22d96"},  # 1.3: zip(..., strict=True)
    "call_wait": {"0ee8ea237ac1", "52f00763731b"},  # 1.3: zip(..., strict=True)
    "close_extras": {"08c581f1214f"},
}


class _Behaviour(ast.NodeTransformer):
    """What a method does: no docstring, no annotations (types change without behaviour)."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.generic_visit(node)
        node.returns = None
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                node.body = node.body[1:]
        return node


def fingerprint(method: object) -> str:
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))  # type: ignore[arg-type]
    return hashlib.sha256(ast.dump(_Behaviour().visit(tree.body[0])).encode()).hexdigest()[:12]


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_gymnasiums_async_internals_are_the_ones_we_override(name):
    found = fingerprint(getattr(AsyncVectorEnv, name))
    assert found in KNOWN[name], (
        f"Gymnasium {gymnasium.__version__} changed AsyncVectorEnv.{name}, which "
        "ppo_envkit/parallel/async_env.py overrides or relies on (fingerprint "
        f"{found}, known {sorted(KNOWN[name])}): read the new code, adjust GuardedAsyncVectorEnv, then "
        "add the fingerprint here and move the gymnasium bound in pyproject.toml"
    )


@pytest.mark.parametrize("name", ["_poll_pipe_envs", "_raise_if_errors", "close_extras"])
def test_our_overrides_keep_gymnasiums_signatures(name):
    ours = inspect.signature(getattr(GuardedAsyncVectorEnv, name))
    theirs = inspect.signature(getattr(AsyncVectorEnv, name))
    assert list(ours.parameters) == list(theirs.parameters)
    assert [p.default for p in ours.parameters.values()] == [p.default for p in theirs.parameters.values()]
