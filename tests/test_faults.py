"""Faults lose nothing and hang nothing (the fast cases; kills at random points are in slow/).

Each case asserts what the README's "What survives what" promises: the error type and
one clear line, no process left behind, no hang (every wait here is bounded), files
either complete and loadable or absent, and a checkpoint where one is promised.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from ppo_envkit import PPO, TrainConfig, load_agent
from ppo_envkit.cli import main
from ppo_envkit.config import load_config
from ppo_envkit.errors import (
    AgentFileError,
    ConfigError,
    EnvironmentFailed,
    NonFiniteError,
    RunDirError,
)
from ppo_envkit.io.atomic import discard_dir
from ppo_envkit.io.checkpoint import MODEL_FILE, checkpoint_dirs, tensors_digest
from ppo_envkit.io.rundir import recover
from ppo_envkit.io.runlog import RunLogger

from .processes import alive, children, wait_gone
from .test_checkpoint import small_config

pytestmark = pytest.mark.timeout(120)  # the watchdog: a hang is a failure
ROOT = Path(__file__).resolve().parents[1]


def _config(env_id: str = "CartPole-v1", **extra) -> TrainConfig:
    return small_config(env_id, **{"run.seed": 3, "run.eval_interval": 0, **extra})


def _cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command line in a fresh process, as a user runs it, with a watchdog."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "ppo_envkit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _start_training(args: list[str], cwd: Path) -> subprocess.Popen:
    """``ppo-envkit ARGS`` in the background; returns once it has logged its first iteration."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ppo_envkit", *args], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (cwd / "run" / "progress.csv").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("error", "invalid settings"))]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr, stderr
    return errors[0]


# ----------------------------------------------------------------------------- workers


@pytest.mark.parametrize("backend", ["gymnasium", "sharded"])
def test_a_dead_environment_worker_is_an_error_not_a_hang(backend, fault_env_ids):
    config = _config(
        fault_env_ids["kill"],
        **{"env.vectorization": "async", "env.kwargs": {"fail_at": 30}},
        **({"env.num_workers": 2} if backend == "sharded" else {}),
    )
    before = children()
    agent = PPO(config=config)
    start = time.monotonic()
    with pytest.raises(EnvironmentFailed, match=r"died \(killed by signal 9 \(SIGKILL\)\)"):
        agent.learn(256)
    assert time.monotonic() - start < 30
    agent.close()
    assert wait_gone(children() - before) == []


@pytest.mark.parametrize(
    "extra",
    [{}, {"env.vectorization": "async"}, {"env.vectorization": "async", "env.num_workers": 2}],
    ids=["sync", "async", "sharded"],
)
def test_an_exception_in_step_saves_a_checkpoint_and_names_the_line(tmp_path, extra, fault_env_ids):
    config = _config(fault_env_ids["raises"], **{"env.kwargs": {"fail_at": 40}}, **extra)
    agent = PPO(config=config)
    logger = RunLogger(tmp_path / "run", progress=False, tensorboard=False, checkpoint_interval=0)
    with pytest.raises(EnvironmentFailed) as info:
        agent.learn(1024, logger=logger)
    message = str(info.value)
    assert "\n" not in message
    assert "ValueError: the valve is at 100% (injected fault)" in message
    assert "fault_envs.py:" in message and "in step() at training step" in message
    assert info.value.checkpoint is not None and info.value.checkpoint.exists()
    assert checkpoint_dirs(tmp_path / "run") == [info.value.checkpoint]
    resumed = PPO.resume(info.value.checkpoint)  # complete and loadable
    assert resumed.num_timesteps == 64 * (39 // 16)  # the iterations before the failing one
    agent.close()


def test_an_observation_of_the_wrong_shape_says_which_and_what(fault_env_ids):
    agent = PPO(config=_config(fault_env_ids["shape"], **{"env.kwargs": {"fail_at": 20}}))
    with pytest.raises(EnvironmentFailed, match=r"shape \(5,\).*observation_space is Box.*\(shape \(4,\)\)"):
        agent.learn(256)
    agent.close()


def test_a_nan_reward_names_the_step_and_copies_across_processes(tmp_path, fault_env_ids):
    config = _config(fault_env_ids["nan"], **{"env.kwargs": {"fail_at": 5}, "run.processes": 2})
    agent = PPO(config=config)
    with pytest.raises(NonFiniteError) as info:
        agent.learn(256)
    agent.close()
    # Every copy of both processes fails at its 5th step: 5 steps x 4 copies in all.
    assert "training step 20 " in str(info.value)
    assert "environment copies 0-1 of 4" in str(info.value) or "copies 2-3 of 4" in str(info.value)


def test_unknown_env_kwargs_are_one_line(tmp_path):
    result = _cli("train", "CartPole-v1", "--set", "env.kwargs.colour=red", cwd=tmp_path)
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "does not accept env.kwargs 'colour' (it takes: sutton_barto_reward)" in line


# ----------------------------------------------------------------------------- run directories


def test_two_runs_cannot_share_a_run_directory(tmp_path):
    first = RunLogger(tmp_path / "run", progress=False, tensorboard=False)
    with pytest.raises(RunDirError, match=rf"in use by another training run \(process {os.getpid()}\)"):
        RunLogger(tmp_path / "run", progress=False, tensorboard=False)
    first.close()
    RunLogger(tmp_path / "run", progress=False, tensorboard=False).close()


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / ".lock").write_text(f"{dead.pid}\n")
    logger = RunLogger(run, progress=False, tensorboard=False)
    assert f"the run that held it (process {dead.pid}) is no longer running" in capsys.readouterr().err
    assert (run / ".lock").read_text().strip() == str(os.getpid())
    logger.close()


def test_a_new_run_refuses_a_directory_that_holds_another(tmp_path):
    run = tmp_path / "run"
    agent = PPO(config=_config())
    agent.learn(64, logger=RunLogger(run, progress=False, tensorboard=False))
    agent.close()
    with pytest.raises(
        RunDirError, match=r"already holds a run \(1 checkpoint up to step_0000000064.*--resume"
    ):
        RunLogger(run, progress=False, tensorboard=False)
    RunLogger(run, progress=False, tensorboard=False, resume=True).close()  # resuming is fine


@pytest.mark.slow  # two training processes
def test_concurrent_cli_runs_in_one_directory(tmp_path):
    """The second run stops at once with one line; the first goes on, and SIGTERM saves it."""
    args = ["train", "CartPole-v1", "--total-timesteps", "5000000", "--run-dir", "run", "--no-progress"]
    args += ["--set", "run.stop_at=null", "--set", "run.checkpoint_interval=0"]
    first = _start_training(args, tmp_path)
    try:
        second = _cli(*args, cwd=tmp_path)
        assert second.returncode == 1
        assert "in use by another training run" in _one_error_line(second.stderr)
        assert first.poll() is None  # undisturbed
        first.send_signal(signal.SIGTERM)  # as kill, docker stop or a scheduler would
        _, stderr = first.communicate(timeout=60)
        assert first.returncode == 130, stderr
    finally:
        first.kill()
    assert "continue with: ppo-envkit train --resume run" in stderr
    (checkpoint,) = checkpoint_dirs(tmp_path / "run")
    PPO.resume(checkpoint).close()


def test_pruning_renames_before_deleting_and_incomplete_checkpoints_do_not_count(tmp_path):
    run = tmp_path / "run"
    agent = PPO(config=_config())
    agent.learn(64, logger=RunLogger(run, progress=False, tensorboard=False))
    agent.close()
    (only,) = checkpoint_dirs(run)
    half = only.parent / "step_0000009999"  # what a kill in the middle of rmtree used to leave
    half.mkdir()
    (half / "agent.json").write_text((only / "agent.json").read_text())
    assert checkpoint_dirs(run) == [only]
    discard_dir(only)
    assert not only.exists() and not any(p.name.startswith(".step") for p in only.parent.iterdir())
    (only.parent / ".step_0000000064.del-0123abcd").mkdir()  # a deletion killed half-way
    assert recover(run) and not any(p.name.startswith(".") for p in only.parent.iterdir())


def test_recover_restores_an_agent_caught_between_two_renames_and_removes_leftovers(tmp_path):
    run = tmp_path / "run"
    agent_dir = PPO(config=_config()).save(run / "agent")
    os.rename(agent_dir, run / ".agent.old-0123abcd")  # killed after the first rename
    (run / ".agent.tmp-4567cdef").mkdir()  # ... and its half-written replacement
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".step_0000000064.tmp-89abcdef").mkdir()
    done = recover(run)
    assert len(done) == 3
    assert load_agent(str(run / "agent")).num_timesteps == 0
    assert sorted(p.name for p in run.iterdir()) == ["agent", "checkpoints"]
    assert list((run / "checkpoints").iterdir()) == []


def test_resume_rewrites_progress_without_losing_rows_or_keeping_a_torn_one(tmp_path):
    run = tmp_path / "run"
    agent = PPO(config=_config(**{"run.total_timesteps": 64 * 5, "run.checkpoint_interval": 128}))
    agent.learn(logger=RunLogger(run, progress=False, tensorboard=False, checkpoint_interval=128))
    agent.close()
    with open(run / "progress.csv", "a") as fh:
        fh.write("384,6,1.0,")  # a row torn by a kill
    logger = RunLogger(run, progress=False, tensorboard=False, resume=True)
    logger._open_outputs(256)
    logger.close()
    rows = list(csv.DictReader(open(run / "progress.csv")))
    assert [int(r["timesteps"]) for r in rows] == [64, 128, 192, 256]
    assert not [p for p in run.iterdir() if p.name.startswith(".progress")]


# ----------------------------------------------------------------------------- agent files


@pytest.fixture
def saved(tmp_path) -> Path:
    agent = PPO(config=_config())
    agent.learn(64)
    agent.close()
    return agent.save(tmp_path / "agent")


def test_an_agent_file_that_is_a_fifo_or_a_device_is_refused_at_once(saved):
    (saved / "agent.json").unlink()
    os.mkfifo(saved / "agent.json")
    with pytest.raises(AgentFileError, match="is not a regular file"):
        load_agent(str(saved))
    (saved / "agent.json").unlink()
    (saved / "agent.json").symlink_to("/dev/zero")
    with pytest.raises(AgentFileError, match="is not a regular file"):
        load_agent(str(saved))


def test_sizes_from_a_file_are_limited_before_anything_is_allocated(saved):
    meta = json.loads((saved / "agent.json").read_text())
    meta["config"]["policy"]["hidden_sizes"] = [65536, 65536]
    (saved / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"parameters \(\d+\.\d GiB\), more than the 100,000,000"):
        load_agent(str(saved))
    meta["config"]["policy"]["hidden_sizes"] = [64, 64]
    meta["observation_space"]["shape"] = [1 << 30]
    (saved / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError, match=r"stored spaces are malformed .*Box size"):
        load_agent(str(saved))


def test_flipped_bytes_in_the_weights_are_caught_by_the_checksum(saved):
    data = bytearray((saved / MODEL_FILE).read_bytes())
    rng = np.random.default_rng(0)
    header = 8 + int.from_bytes(data[:8], "little")
    for i in rng.choice(np.arange(header, len(data)), 200, replace=False):
        data[i] ^= 0xFF
    (saved / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(AgentFileError, match="corrupt: its tensors do not match the SHA-256"):
        load_agent(str(saved))


def test_nan_weights_and_changed_dtypes_are_refused_even_with_a_matching_checksum(saved):
    tensors = load_file(str(saved / MODEL_FILE))
    meta = json.loads((saved / "agent.json").read_text())
    for name, mutate, message in (
        ("actor_trunk.0.weight", lambda t: t.fill_(float("nan")), "holds NaN or infinite values"),
        (
            "actor_trunk.0.weight",
            lambda t: t.to(torch.int32),
            "is torch.int32 .* settings give torch.float32",
        ),
    ):
        changed = dict(tensors)
        changed[name] = mutate(tensors[name].clone())
        save_file(changed, str(saved / MODEL_FILE))
        meta["tensors_sha256"] = tensors_digest(changed)  # a forger can recompute it
        (saved / "agent.json").write_text(json.dumps(meta))
        with pytest.raises(AgentFileError, match=message):
            load_agent(str(saved))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("observation_space", [1, 2]),
        ("action_space", {"type": "Discrete", "n": "many"}),
        ("num_timesteps", 1e30),
        ("env", "CartPole-v1"),
        ("observation_space", {"type": "Dict", "spaces": {"a": {"type": "Box", "shape": [[2]]}}}),
    ],
)
def test_type_errors_in_agent_json_are_one_line(saved, field, value):
    meta = json.loads((saved / "agent.json").read_text())
    meta[field] = value
    (saved / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError) as info:
        load_agent(str(saved))
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- settings and storage


@pytest.mark.parametrize("setting", ["env.num_envs=true", "ppo.n_epochs=false", "run.eval_interval=true"])
def test_true_is_not_a_number(setting):
    with pytest.raises(ConfigError, match="expects a number, not true/false"):
        TrainConfig().with_overrides([setting])


def test_a_directory_or_a_binary_file_as_config_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="is not text"):
        load_config(tmp_path / "weights.bin")


def test_a_rollout_larger_than_memory_is_a_settings_error():
    config = _config(**{"ppo.n_steps": 10**9 // 4, "ppo.minibatch_size": 64})
    agent = PPO(config=config)
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GiB, but .* available; lower ppo.n_steps"):
        agent.learn(64)
    agent.close()


def test_a_full_disk_during_training_is_one_line_and_loses_no_earlier_checkpoint(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: writes past it fail with EFBIG."""
    script = textwrap.dedent(
        """
        import resource, sys
        from ppo_envkit.cli import main
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
        sys.exit(main(sys.argv[1:]))
        """
    )
    train = ["train", "CartPole-v1", "--total-timesteps", "4096", "--run-dir", "run", "--no-progress"]
    result = subprocess.run(
        [sys.executable, "-c", script, *train, "--set", "run.checkpoint_interval=1024"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "File too large" in _one_error_line(result.stderr)
    for checkpoint in checkpoint_dirs(tmp_path / "run"):
        PPO.resume(checkpoint).close()  # whatever was saved is complete
    leftovers = [
        p for p in (tmp_path / "run").rglob(".*") if any(k in p.name for k in (".tmp-", ".old-", ".del-"))
    ]
    assert leftovers == []


def test_a_read_only_run_directory_is_one_line(tmp_path, monkeypatch, capsys):
    import ppo_envkit.io.runlog as runlog

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system", str(self))

    monkeypatch.setattr(runlog.Path, "mkdir", read_only)
    code = main(["train", "CartPole-v1", "--total-timesteps", "64", "--run-dir", str(tmp_path / "ro")])
    assert code == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "cannot create the run directory" in line and "Read-only file system" in line


def test_the_sharded_worker_dies_with_its_trainer(tmp_path):
    script = textwrap.dedent(
        """
        import os, sys, time
        from ppo_envkit.environments.factory import make_env
        from ppo_envkit.parallel.vector import ShardedVectorEnv
        envs = ShardedVectorEnv([lambda: make_env("CartPole-v1")] * 4, num_workers=2)
        envs.reset(seed=0)
        print(" ".join(str(p.pid) for p in envs._procs), flush=True)
        time.sleep(60)
        """
    )
    trainer = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    workers = [int(p) for p in trainer.stdout.readline().split()]
    assert workers and all(alive(p) for p in workers)
    os.kill(trainer.pid, signal.SIGKILL)
    trainer.wait(timeout=10)
    assert wait_gone(workers) == []


def test_the_checker_reports_a_hanging_environment_instead_of_hanging(fault_env_ids, monkeypatch):
    import ppo_envkit.environments.findings as findings
    from ppo_envkit import check_environment

    monkeypatch.setattr(findings, "CALL_TIME_LIMIT_S", 0.5)
    start = time.monotonic()
    report = check_environment(fault_env_ids["hang"], {"fail_at": 3})
    assert time.monotonic() - start < 10
    (error,) = report.errors
    assert "did not return within 0.5 s" in error.what and "fault_envs.py:" in error.fix


@pytest.mark.slow  # seconds of subprocesses or export: runs in the whole suite
def test_stopping_while_the_environment_hangs_saves_the_last_good_checkpoint(tmp_path):
    """A hung step cannot be told from a slow one; Ctrl-C or SIGTERM is the way out, and it
    loses nothing."""
    module = Path(__file__).with_name("fault_envs.py")
    args = ["train", "faults/Hangs-v0", "--env-module", str(module), "--set", "env.kwargs.fail_at=300"]
    args += ["--num-envs", "4", "--run-dir", "run", "--no-progress"]
    proc = _start_training(args, tmp_path)
    try:
        time.sleep(2.0)  # the 300th step of each copy comes after the first logged iteration
        proc.send_signal(signal.SIGTERM)  # Ctrl-C is ignored in background jobs; SIGTERM is not
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    (checkpoint,) = checkpoint_dirs(tmp_path / "run")
    assert checkpoint.name == "step_0000001024"  # 2 iterations of 4 copies x 128 steps; the 3rd hung
    PPO.resume(checkpoint).close()


def test_the_checkers_fix_line_never_points_into_the_standard_library(tmp_path, monkeypatch):
    import sysconfig

    from ppo_envkit import check_environment
    from ppo_envkit.environments.registry import unregister_env

    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken_env.py").write_text(
        textwrap.dedent(
            """
            import json
            import gymnasium as gym
            import numpy as np
            from gymnasium import spaces

            class Broken(gym.Env):
                observation_space = spaces.Box(-1, 1, (2,), np.float32)
                action_space = spaces.Discrete(2)

                def reset(self, *, seed=None, options=None):
                    super().reset(seed=seed)
                    json.loads("{not json")  # raises deep inside the json module
                    return np.zeros(2, np.float32), {}

                def step(self, action):
                    return np.zeros(2, np.float32), 0.0, False, False, {}

            gym.register("faults/StdlibRaises-v0", entry_point=Broken)
            gym.register("faults/NoSuchModule-v0", entry_point="no_such_module_here:Env")
            """
        )
    )
    from ppo_envkit import load_env_module

    load_env_module(str(tmp_path / "broken_env.py"))
    stdlib = sysconfig.get_paths()["stdlib"]
    try:
        for env_id, expected in (
            ("faults/StdlibRaises-v0", "broken_env.py:13"),
            ("faults/NoSuchModule-v0", None),
        ):
            report = check_environment(env_id)
            assert report.errors
            for finding in report.errors:
                assert stdlib not in finding.fix and "importlib" not in finding.fix, finding.fix
                assert expected is None or expected in finding.fix, finding.fix
    finally:
        unregister_env("faults/StdlibRaises-v0")
        unregister_env("faults/NoSuchModule-v0")


def test_recording_where_nothing_can_be_written_is_one_line(saved, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    target = tmp_path / "a_file" / "video.mp4"  # its folder is a file: nothing can go there
    code = main(["replay", str(saved), "--headless", "--record", str(target), "--episodes", "1"])
    assert code == 1
    assert "cannot record to" in _one_error_line(capsys.readouterr().err)


def test_resume_skips_a_corrupt_latest_checkpoint_with_a_warning(tmp_path, capsys):
    args = ["train", "CartPole-v1", "--total-timesteps", "3072", "--run-dir", str(tmp_path / "run")]
    args += ["--no-progress", "--set", "run.checkpoint_interval=1024", "--set", "run.keep_checkpoints=3"]
    assert main(args) == 0
    *_, previous, latest = checkpoint_dirs(tmp_path / "run")
    data = bytearray((latest / MODEL_FILE).read_bytes())
    data[-10] ^= 0xFF  # damaged on disk
    (latest / MODEL_FILE).write_bytes(bytes(data))
    capsys.readouterr()
    resume = ["train", "--resume", str(tmp_path / "run"), "--total-timesteps", "4096", "--no-progress"]
    assert main(resume) == 0
    err = capsys.readouterr().err
    assert f"skipping checkpoint {latest.name}" in err and f"from {previous}" in err


def test_an_exception_in_replay_is_one_line_naming_the_call_and_the_line(tmp_path, capsys):
    """The viewer's environment raises in step(): replay says where, in one line."""
    from ppo_envkit.cli import main
    from ppo_envkit.errors import EnvironmentFailed
    from ppo_envkit.viewer import Viewer

    from .fault_envs import StepRaises

    class RaisesOnScreen(StepRaises):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

        def __init__(self, fail_at: int = 50, render_mode: str | None = None):
            super().__init__(fail_at)
            self.render_mode = render_mode

        def render(self):
            return np.zeros((8, 8, 3), np.uint8)

    gym.register("RaisesOnScreen-v0", entry_point=RaisesOnScreen)
    try:
        config = TrainConfig().with_overrides(
            {"env.id": "RaisesOnScreen-v0", "env.kwargs": {"fail_at": 10**9}}
        )
        path = PPO(config=config).save(tmp_path / "agent")
        meta = json.loads((path / "agent.json").read_text())
        meta["config"]["env"]["kwargs"] = meta["env"]["kwargs"] = {"fail_at": 5}  # replay's copy fails
        (path / "agent.json").write_text(json.dumps(meta))
        with pytest.raises(
            EnvironmentFailed, match=r"in step\(\) during replay \(episode 1, step 4\).*fault_envs"
        ):
            Viewer(load_agent(str(path)), headless=True).run()
        code = main(["replay", str(path), "--headless", "--record", str(tmp_path / "r.gif")])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err and "(injected fault)" in err
    finally:
        gym.registry.pop("RaisesOnScreen-v0", None)


# ----------------------------------------------------------------------------- user code that exits

_EXITS = [("sys.exit", "SystemExit: 4"), ("GeneratorExit", "GeneratorExit"), ("own", "UserBaseException")]


@pytest.mark.parametrize(
    ("how", "call", "extra"),
    [(how, "step", {}) for how, _ in _EXITS]
    + [
        ("sys.exit", "step", {"env.vectorization": "async"}),
        ("own", "step", {"env.vectorization": "async", "env.num_workers": 2}),
        ("sys.exit", "reset", {}),
        ("GeneratorExit", "reset", {"env.vectorization": "async"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(str(x) for x in v.values()) or "sync",
)
def test_user_code_that_ends_the_process_is_one_line_and_keeps_the_checkpoint(
    tmp_path, how, call, extra, fault_env_ids
):
    """``sys.exit()``, ``GeneratorExit`` or a user's own ``BaseException`` inside the environment
    is reported like an exception: one line with the call and the user's line; work is saved."""
    fail_at = 40 if call == "step" else 10**9
    kwargs = {"fail_at": fail_at, "how": how, "call": call}
    agent = PPO(config=_config(fault_env_ids["exits"], **{"env.kwargs": kwargs}, **extra))
    logger = RunLogger(tmp_path / "run", progress=False, tensorboard=False, checkpoint_interval=0)
    with pytest.raises(EnvironmentFailed) as info:
        agent.learn(1024, logger=logger)
    message = str(info.value)
    assert "\n" not in message and dict(_EXITS)[how] in message, message
    assert f"in {call}()" in message and "fault_envs.py:" in message, message
    if call == "step":
        assert info.value.checkpoint is not None and info.value.checkpoint.exists()
    agent.close()


@pytest.mark.parametrize("call", ["init", "render", "close"])
def test_user_code_that_exits_outside_training_is_an_error(call, fault_env_ids):
    from ppo_envkit.environments.factory import make_env

    kwargs = {"how": "sys.exit", "call": call}
    with pytest.raises(Exception) as info:
        env = make_env(fault_env_ids["exits"], kwargs, render_mode="rgb_array")
        env.reset(seed=0)
        env.render()
        env.close()
    assert isinstance(info.value, Exception) and "SystemExit: 4" in str(info.value)
    assert call == "init" or f"in {call}() (" in str(info.value)


def test_an_env_module_that_exits_at_import_is_one_line(tmp_path):
    (tmp_path / "quits.py").write_text("import sys\n\nsys.exit(7)\n")
    result = _cli("train", "CartPole-v1", "--env-module", "quits.py", "--no-progress", cwd=tmp_path)
    assert result.returncode != 0 and result.returncode != 7
    line = _one_error_line(result.stderr)
    assert "SystemExit: 7" in line and "quits.py:3" in line


def test_a_closed_terminal_saves_the_checkpoint_and_says_how_to_continue(tmp_path):
    """SIGHUP (a closed terminal, a dropped SSH session) to the whole process group, async
    workers included: the trainer saves and prints its line; the workers print nothing.
    (More signals and backends: slow/test_signals.py.)"""
    from .slow.test_signals import BACKENDS, stop_training

    code, output, workers = stop_training(tmp_path, signal.SIGHUP, BACKENDS["async"])
    assert code == 130 and "Traceback" not in output, output
    assert "continue with: ppo-envkit train --resume run" in output
    assert len(checkpoint_dirs(tmp_path / "run")) == 1
    assert wait_gone(workers) == []


# ----------------------------------------------------------------------------- hostile YAML


def _laughs(depth: int) -> str:
    """A "billion laughs" settings file: each level repeats the previous one ten times."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, depth + 1)]
    return "\n".join(lines) + f"\npolicy:\n  hidden_sizes: *a{depth}\n"


@pytest.mark.parametrize(
    "case",
    ["config-aliases", "preset-aliases", "set-aliases", "lookup-aliases", "deep-nesting", "huge-value"],
)
def test_settings_files_cannot_make_the_loader_do_unbounded_work(tmp_path, monkeypatch, capsys, case):
    """Aliases are refused wherever settings YAML is read, deep nesting is an error, and no
    message echoes more than a few hundred characters of what the file holds."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agents").mkdir()
    text = {
        "deep-nesting": "policy:\n  hidden_sizes: " + "[" * 20000 + "]" * 20000 + "\n",
        "huge-value": "policy:\n  hidden_sizes: [" + ", ".join(["-1"] * 100000) + "]\n",
    }.get(case, _laughs(6))  # 10**7 values once expanded
    (tmp_path / "agents" / "bad.yaml").write_text(text)
    train = ["train", "CartPole-v1", "--total-timesteps", "64", "--no-progress", "--run-dir", "run"]
    args = {
        "preset-aliases": [*train, "--preset", "bad"],
        "set-aliases": [*train, "--set", "policy.hidden_sizes=[&a [1, 1, 1, 1], [*a, *a, *a]]"],
        "lookup-aliases": ["envs", "list"],
    }.get(case, [*train, "--config", "agents/bad.yaml"])
    start = time.process_time()
    code = main(args)
    if case != "lookup-aliases":  # (envs list imports every installed environment package: its
        # CPU time is the imports', 4 to 36 s on a loaded machine; the skip message below shows the
        # file was refused before anything was expanded)
        assert time.process_time() - start < 10
    err = capsys.readouterr().err
    assert len(err) < (3000 if case == "lookup-aliases" else 600), err[:1000]
    if case == "lookup-aliases":
        assert code == 0 and "skipping preset file" in err and "bad.yaml" in err
    else:
        assert code == 2 and "Traceback" not in err


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "env: [1, 2]\n", "env:\n  kwargs: 3\n", "\x00\x01"])
def test_a_preset_file_that_is_not_a_preset_is_skipped_with_one_warning(tmp_path, monkeypatch, capsys, text):
    """One broken file in ./agents must not break every `train ENV`; asked for by name, it is
    refused in one line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "broken.yaml").write_text(text)
    train = ["train", "CartPole-v1", "--total-timesteps", "64", "--no-progress", "--set", "env.num_envs=1"]
    assert main([*train, "--run-dir", "run"]) == 0
    err = capsys.readouterr().err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning")]
    assert "broken.yaml" in warning and "Traceback" not in err
    assert main([*train, "--run-dir", "run2", "--preset", "broken"]) == 2
    assert "broken.yaml" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("kind", "expected", "extra"),
    [
        ("none", "the reward is NoneType None, not a number", {}),
        ("array", "the reward is an array of shape (2,)", {}),
        ("string", "the reward is str '1.0', not a number", {}),
        ("string", "the reward is str '1.0', not a number", {"env.vectorization": "async"}),
        ("none", "the reward is NoneType None", {"env.vectorization": "async", "env.num_workers": 2}),
    ],
)
def test_a_late_reward_of_the_wrong_type_is_refused_as_the_pre_check_refuses_it(
    tmp_path, kind, expected, extra, fault_env_ids
):
    """None, an array or a string as the reward, after the pre-check's steps, is named as a
    reward of the wrong type (not "non-finite", not numpy's words, not accepted)."""
    config = _config(fault_env_ids["reward"], **{"env.kwargs": {"fail_at": 40, "kind": kind}}, **extra)
    agent = PPO(config=config)
    logger = RunLogger(tmp_path / "run", progress=False, tensorboard=False, checkpoint_interval=0)
    with pytest.raises(EnvironmentFailed) as info:
        agent.learn(1024, logger=logger)
    message = str(info.value)
    assert expected in message and "in step() at training step" in message, message
    assert "\n" not in message and "non-finite" not in message
    assert info.value.checkpoint is not None and info.value.checkpoint.exists()
    agent.close()


# ----------------------------------------------------------------------------- agents meet environments


@pytest.mark.parametrize("where", ["evaluate", "loaded", "viewer", "masks-off"])
def test_a_masked_agent_is_refused_an_environment_without_masks(where, tmp_path):
    """Unmasked, a masked agent takes the actions its masks forbade and plays on silently (a
    return of -9.3 instead of 20); every place that pairs an agent with an environment refuses."""
    from ppo_envkit import evaluate, load_agent
    from ppo_envkit.errors import ActionMaskError
    from ppo_envkit.viewer import Viewer

    from .masked_envs import register_masked

    ids = register_masked()
    config = small_config(ids["pick_info"], **{"run.seed": 0, "run.eval_interval": 0, "env.num_envs": 2})
    agent = PPO(config=config)
    agent.learn(128)  # masks from info["action_mask"]
    agent.close()
    if where == "loaded":  # what it was trained with travels in agent.json
        agent = load_agent(str(agent.save(tmp_path / "agent")))
    overrides = {"env.kwargs": {"via": "none"}}  # the same environment, now without masks
    if where == "masks-off":
        overrides["env.action_masks"] = "off"  # the explicit way: run it unmasked on purpose
    agent.config = agent.config.with_overrides(overrides)
    if where == "masks-off":  # allowed; the environment raises on the first illegal action it gets
        with pytest.raises(Exception, match="illegal action"):
            evaluate(agent, episodes=20)
    elif where in ("evaluate", "loaded"):
        with pytest.raises(ActionMaskError, match=r"trained with action masks.*gives none"):
            evaluate(agent, episodes=2)
    else:
        with pytest.raises(ActionMaskError, match="trained with action masks"):
            Viewer(agent, headless=True).run()


# ----------------------------------------------------------------------------- messages that name files


def test_hints_quote_paths_for_the_shell(tmp_path, monkeypatch, capsys):
    """Every command a message suggests can be pasted into a shell as it is."""
    monkeypatch.chdir(tmp_path)
    run = "dir with spaces ü"
    args = ["train", "CartPole-v1", "--total-timesteps", "64", "--no-progress", "--run-dir", run]
    assert main([*args, "--set", "env.num_envs=1", "--set", "run.eval_interval=0"]) == 0
    err = capsys.readouterr().err
    assert "ppo-envkit eval 'dir with spaces ü' --episodes 100" in err
    assert "ppo-envkit replay 'dir with spaces ü'" in err and "run directory: 'dir with spaces ü'" in err
    assert main([*args, "--set", "env.num_envs=1"]) == 1  # the directory holds a run already
    assert "--resume 'dir with spaces ü'" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("command", ["eval", "plot"])
def test_a_failed_write_names_the_file_and_keeps_the_result(saved, tmp_path, command):
    """A file that cannot be written (here a file size limit, as on a full disk): the error
    names the file it meant to write; ``eval --write-result`` still prints the result it
    computed, and no temporary file is left."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    if command == "eval":
        args, target = (
            ["eval", str(saved), "--episodes", "2", "--write-result", "--json"],
            saved / "agent.json",
        )
    else:
        run = tmp_path / "run"
        assert (
            main(["train", "CartPole-v1", "--total-timesteps", "128", "--run-dir", str(run), "--no-progress"])
            == 0
        )
        args, target = ["plot", str(run)], run / "curves.png"
    result = subprocess.run(
        [sys.executable, "-m", "ppo_envkit", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 1
    line = _one_error_line(result.stderr)
    assert f"could not write {target}: File too large" in line, line
    if command == "eval":
        assert json.loads(result.stdout)["episodes"] == 2  # the computed result, printed
        assert not list(saved.glob(".agent.json.tmp-*"))
        assert "evaluation" not in json.loads((saved / "agent.json").read_text())


# ------------------------------------------------------------------ tuning studies (more: slow/test_tune.py)


@pytest.mark.parametrize("content", [b"", b"SQLite format 3\x00" + bytes(range(256)) * 8, b"not a database"])
def test_a_corrupt_or_empty_study_is_one_line(tmp_path, capsys, content):
    pytest.importorskip("optuna")  # the tune extra
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.db").write_bytes(content)
    args = ["tune", "CartPole-v1", "--trials", "1", "--steps-per-trial", "64", "--jobs", "1"]
    code = main([*args, "--study-dir", str(tmp_path / "study"), "--resume"])
    line = _one_error_line(capsys.readouterr().err)
    assert code == 1 and "study.db" in line and len(line) < 400, line


@pytest.mark.parametrize("call", ["reset", "step"])
def test_the_checker_reports_user_code_that_exits_and_exits_non_zero(call, fault_env_ids):
    """Gymnasium's check_env runs on the unwrapped environment: sys.exit() there is a finding too,
    not the end of ``envs check`` with the environment's exit status."""
    from ppo_envkit.environments.checker import check_environment

    report = check_environment(fault_env_ids["exits"], {"how": "sys.exit", "call": call, "fail_at": 1})
    assert not report.ok
    assert any("SystemExit: 4" in f.what for f in report.errors), report.errors
