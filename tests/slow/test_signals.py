"""Signals that end a terminal end a run cleanly: save, one line, a way to continue.

Each case starts ``ppo-envkit train`` in its own session and sends the signal to the whole
process group, as a terminal does (Ctrl-C, Ctrl-\\, a closed terminal) and a scheduler may:
the trainer and every worker it started (async workers, sharded workers, forked ranks)
receive it. Only the trainer may answer: it saves the last good checkpoint, prints the
resume command and exits non-zero; no worker prints a traceback; none is left behind; a
second signal during the save changes nothing; ``--resume`` goes on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ppo_envkit import PPO
from ppo_envkit.io.checkpoint import checkpoint_dirs

from ..processes import descendants, wait_gone

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = {
    "sync": [],
    "async": ["--set", "env.vectorization=async"],
    "sharded": ["--set", "env.vectorization=async", "--set", "env.num_workers=2"],
    "processes": ["--processes", "2"],
}


def stop_training(tmp_path: Path, signum: int, extra: list[str], twice: bool = False):
    """Start training, wait for its first logged iteration, signal its process group."""
    args = ["train", "CartPole-v1", "--run-dir", "run", "--no-progress", "--total-timesteps", "10000000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppo_envkit", *args, *extra],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "run" / "progress.csv").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.3)
        workers = descendants(proc.pid)
        os.killpg(proc.pid, signum)
        if twice:
            time.sleep(0.05)
            os.killpg(proc.pid, signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out + err, workers


@pytest.mark.parametrize(
    ("signame", "backend", "twice"),
    [
        ("SIGHUP", "sync", False),
        ("SIGHUP", "async", False),
        ("SIGHUP", "processes", True),
        ("SIGTERM", "async", True),
        ("SIGTERM", "sharded", False),
        ("SIGINT", "async", False),
        ("SIGINT", "sharded", True),
        ("SIGQUIT", "processes", False),
    ],
)
def test_a_terminal_signal_saves_prints_one_line_and_leaves_no_worker(tmp_path, signame, backend, twice):
    code, output, workers = stop_training(tmp_path, getattr(signal, signame), BACKENDS[backend], twice)
    assert code == 130, output
    assert "Traceback" not in output and "Error" not in output, output
    (line,) = [x for x in output.splitlines() if x.startswith("interrupted")]
    (checkpoint,) = checkpoint_dirs(tmp_path / "run")
    assert str(checkpoint.relative_to(tmp_path)) in line
    assert "continue with: ppo-envkit train --resume run" in output
    assert wait_gone(workers) == []
    PPO.resume(checkpoint).close()
