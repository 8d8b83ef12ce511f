"""kill -9 at seeded points of training, saving, replacing and pruning: nothing is lost.

Each trial runs ``ppo-envkit train`` in a fresh process that SIGKILLs itself at a point
drawn from a seeded schedule: after a random time, or inside the k-th call to the
function that writes tensors, renames directories or deletes old checkpoints (the test
patches them in the child, the program is unchanged). Afterwards:

* no process of the run is left (environment workers, forked ranks);
* every checkpoint that ``checkpoint_dirs`` lists, and ``agent/`` if present, loads;
* ``train --resume`` finishes, leaves no ``.tmp-``/``.old-``/``.del-`` directories, and ends with
  the weights of the unbroken run, bit for bit.

Run only these: ``python -m pytest -m faults`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from ppo_envkit import PPO, load_agent
from ppo_envkit.io.checkpoint import checkpoint_dirs

from ..processes import descendants, wait_gone

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]  # the watchdog

ROOT = Path(__file__).resolve().parents[2]
STEPS = 16 * 64 * 32  # 32 iterations of the cartpole preset: about 2.3 s after start-up
TRAIN = ["train", "CartPole-v1", "--total-timesteps", str(STEPS), "--run-dir", "run", "--no-progress"]
TRAIN += ["--set", "run.checkpoint_interval=2048", "--set", "run.keep_checkpoints=2"]
#: How the run is spread: one process, two training processes, or one process whose
#: environment copies step in two shards (one in a worker process).
MODES = {
    "1": ["--processes", "1"],
    "2": ["--processes", "2"],
    "sharded": ["--processes", "1", "--set", "env.vectorization=async", "--set", "env.num_workers=2"],
}

#: Runs ppo-envkit's main() after arranging to SIGKILL this process at the chosen point.
CHILD = textwrap.dedent(
    """
    import os, shutil, signal, sys, threading, time
    kind, k = sys.argv[1], int(sys.argv[2])
    import ppo_envkit.io.atomic as atomic
    from ppo_envkit.cli import main

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def on_call(module, name, before=False, partial=None):
        original = getattr(module, name)
        calls = [0]
        def patched(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                if partial is not None:
                    partial(*args)
                if before:
                    die()
                original(*args, **kwargs)
                die()
            return original(*args, **kwargs)
        setattr(module, name, patched)

    def delete_one_file(path, *args):  # pruning killed half-way through the deletion
        for root, _dirs, files in os.walk(path):
            for f in files:
                os.unlink(os.path.join(root, f))
                return

    if kind == "time":
        threading.Timer(k / 1000, die).start()
    elif kind == "save":
        on_call(atomic, "save_file")  # after a tensor file is written, before the rest
    elif kind == "rename":
        on_call(os, "rename", before=True)  # between the steps of a replacement
    elif kind == "prune":
        on_call(shutil, "rmtree", before=True, partial=delete_one_file)
    sys.exit(main(sys.argv[3:]))
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _train(cwd: Path, *args: str) -> None:
    """``ppo-envkit ARGS`` in a fresh process, which must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "ppo_envkit", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "agent" / "model.safetensors"))


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory) -> dict[str, dict[str, torch.Tensor]]:
    """The unbroken runs' final weights, for one and two processes (sharded environment
    workers give one process's weights, bit for bit)."""
    out = {}
    for processes in ("1", "2"):
        cwd = tmp_path_factory.mktemp(f"unbroken{processes}")
        _train(cwd, *TRAIN, *MODES[processes])
        out[processes] = _weights(cwd / "run")
    out["sharded"] = out["1"]
    return out


def _schedule(seed: int = 2026) -> list[tuple[str, int, str]]:
    """(kind, k, mode) for each trial: k is milliseconds for ``time``, else the call."""
    rng = np.random.default_rng(seed)
    trials = []
    for kind, n in (("time", 8), ("save", 4), ("rename", 4), ("prune", 4)):
        for _ in range(n):
            k = int(rng.integers(900, 3300)) if kind == "time" else int(rng.integers(1, 12))
            trials.append((kind, k, str(rng.choice(list(MODES)))))
    return trials


@pytest.mark.parametrize(("kind", "k", "mode"), _schedule())
def test_a_kill_loses_nothing_and_resume_is_exact(tmp_path, unbroken, kind, k, mode):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kind, str(k), *TRAIN, *MODES[mode]],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    family: set[int] = set()
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        family |= descendants(child.pid)
        time.sleep(0.02)
    _, stderr = child.communicate(timeout=10)
    run = tmp_path / "run"
    if child.returncode == 0:  # the point was never reached: the run simply finished
        print(f"[{kind} {k} {mode}] not reached")
        assert torch_equal(_weights(run), unbroken[mode])
        return
    assert child.returncode == -9, stderr
    assert wait_gone(family, timeout=10) == [], "processes left behind"

    for checkpoint in checkpoint_dirs(run):
        PPO.resume(checkpoint).close()  # complete and loadable
    if (run / "agent").exists():
        load_agent(str(run / "agent"))
    print(f"[{kind} {k} {mode}] killed; checkpoints {[c.name for c in checkpoint_dirs(run)]}")
    if not checkpoint_dirs(run):
        return  # killed before the first checkpoint: nothing to resume, nothing promised

    _train(tmp_path, "train", "--resume", "run", "--no-progress")
    leftovers = [p for p in run.rglob(".*") if any(k in p.name for k in (".tmp-", ".old-", ".del-"))]
    assert leftovers == []
    assert torch_equal(_weights(run), unbroken[mode])


def torch_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


def _unbroken_then_killed(tmp_path: Path, args: list[str], save_call: int) -> dict[str, torch.Tensor]:
    """Train ``args`` unbroken (in ``tmp_path/unbroken``), then again in ``tmp_path``, SIGKILLed
    at the ``save_call``-th tensor file a checkpoint writes; the unbroken run's weights."""
    (tmp_path / "unbroken").mkdir()
    _train(tmp_path / "unbroken", *args)
    killed = subprocess.run(
        [sys.executable, "-c", CHILD, "save", str(save_call), *args],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    return _weights(tmp_path / "unbroken" / "run")


EVENTS = str(ROOT / "tests" / "event_envs.py")
#: A run whose callback changes every copy after each update (a curriculum, issue 24): the
#: changes are part of the checkpoint, so a resumed run makes them at the same steps.
CURRICULUM = ["train", "MetricWalk-v0", "--env-module", EVENTS, "--callback", f"{EVENTS}:MoveBias"]
CURRICULUM += ["--total-timesteps", "4096", "--run-dir", "run", "--no-progress"]
for _key, _value in (("env.num_envs", 4), ("ppo.n_steps", 32), ("ppo.minibatch_size", 64)):
    CURRICULUM += ["--set", f"{_key}={_value}"]
CURRICULUM += ["--set", "run.checkpoint_interval=512", "--set", "run.eval_interval=0"]


@pytest.mark.parametrize("mode", ["1", "sharded"])
def test_a_kill_during_a_curriculum_loses_nothing_and_resume_is_exact(tmp_path, mode):
    unbroken = _unbroken_then_killed(tmp_path, [*CURRICULUM, *MODES[mode]], save_call=7)
    run = tmp_path / "run"
    assert checkpoint_dirs(run), "killed after several checkpoints were due"
    # a run's modules and callbacks are given again, as `train` prints after an interruption
    _train(tmp_path, "train", "--resume", "run", "--no-progress", *CURRICULUM[2:6])
    assert torch_equal(_weights(run), unbroken)


KEY_DOOR = str(ROOT / "envs" / "key_door.py")
#: The curriculum example itself (examples/curriculum.py): KeyDoor-v0 in an 11 x 11 room, the
#: key and door within reach 2 at first, doubled at 80% success (at 8,192 and 12,800 steps).
EXAMPLE = ["train", "KeyDoor-v0", "--env-module", KEY_DOOR]
EXAMPLE += ["--callback", str(ROOT / "examples" / "curriculum.py") + ":ReachCurriculum"]
EXAMPLE += ["--total-timesteps", "16384", "--run-dir", "run", "--no-progress", "--set", "env.kwargs.size=11"]
for _key, _value in (("env.num_envs", 8), ("ppo.n_steps", 64), ("run.checkpoint_interval", 2048)):
    EXAMPLE += ["--set", f"{_key}={_value}"]
EXAMPLE += ["--set", "run.eval_interval=0", "--set", "run.keep_checkpoints=2"]


def test_the_curriculum_example_survives_a_kill_and_resumes_exactly(tmp_path):
    """Killed by SIGKILL while saving a checkpoint after its first promotion, resumed with
    the same module and callback: the unbroken run's weights, bit for bit."""
    unbroken = _unbroken_then_killed(tmp_path, EXAMPLE, save_call=9)
    run = tmp_path / "run"
    steps = [int(c.name.split("_")[1]) for c in checkpoint_dirs(run)]
    assert steps and 8192 <= max(steps) < 16384, steps  # after the first promotion, before the end
    _train(tmp_path, "train", "--resume", "run", "--no-progress", *EXAMPLE[2:6])
    assert torch_equal(_weights(run), unbroken)
