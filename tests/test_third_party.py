"""Environments and wrappers from other packages, as users name them (issue 23, items 1, 2, 4):
Gymnasium's ``module:EnvId`` ids, ``env.wrappers``, what the unknown-id message suggests, and
the checker's fix for a missing dependency. Small fake packages written to ``tmp_path`` stand
in for MiniGrid, ale-py and the like (one test uses MiniGrid itself)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.cli import main
from ppo_envkit.config import ConfigError, WrapperSpec, load_config
from ppo_envkit.environments import ids
from ppo_envkit.environments.checker import check_environment
from ppo_envkit.environments.factory import make_configured_env
from ppo_envkit.environments.registry import EnvNotFoundError, ensure_registered, temporary_registrations
from ppo_envkit.environments.wrappers import check_wrappers

# A third-party package as they are written: it registers its ids with gym.register on import.
PACKAGE_INIT = """
import gymnasium as gym

gym.register("FakeGrid-v0", entry_point="fakegrid_pkg.env:Walk")
gym.register("FakeGridLong-v0", entry_point="fakegrid_pkg.env:Walk", kwargs={"length": 100})
gym.register("FakeGridBroken-v0", entry_point="fakegrid_pkg.env:Broken")
"""

PACKAGE_ENV = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Walk(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length=20, bool_reward=False, render_mode=None):
        self.length, self.bool_reward, self.render_mode = length, bool_reward, render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.x = float(self.np_random.uniform(-0.5, 0.5))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.t += 1
        self.x = float(np.clip(self.x + (0.1 if action else -0.1), -1, 1))
        reward = self.x > 0 if self.bool_reward else float(self.x)
        return np.array([self.x], np.float32), reward, self.t >= self.length, False, {}

    def render(self):
        frame = np.zeros((8, 21, 3), np.uint8)
        frame[:, round((self.x + 1) * 10)] = 255
        return frame


class Broken(Walk):
    def __init__(self, **kwargs):
        raise gym.error.DependencyNotInstalled(
            'fakephysics is not installed, run `pip install "fakegrid[physics]"`'
        )
"""

# Wrappers in another installed package.
WRAPPERS = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class AddFeature(gym.ObservationWrapper):
    \"\"\"Appends a constant to a 1-D Box observation.\"\"\"

    def __init__(self, env, value=1.0):
        super().__init__(env)
        self.value = value
        low, high = env.observation_space.low, env.observation_space.high
        self.observation_space = spaces.Box(
            np.append(low, -10.0).astype(np.float32), np.append(high, 10.0).astype(np.float32)
        )

    def observation(self, obs):
        return np.append(obs, self.value).astype(np.float32)


def not_a_wrapper(env):
    return env
"""

FAKE_MODULES = ("fakegrid_pkg", "fakewrap_pkg")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """``fakegrid_pkg`` (registers FakeGrid-v0 ...) and ``fakewrap_pkg`` (wrappers), importable by
    name as installed packages are; the working directory is another folder."""
    root = tmp_path / "site"
    (root / "fakegrid_pkg").mkdir(parents=True)
    (root / "fakegrid_pkg" / "__init__.py").write_text(PACKAGE_INIT)
    (root / "fakegrid_pkg" / "env.py").write_text(PACKAGE_ENV)
    (root / "fakewrap_pkg").mkdir()
    (root / "fakewrap_pkg" / "__init__.py").write_text(WRAPPERS)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with temporary_registrations():
        monkeypatch.syspath_prepend(str(root))
        yield work
        forget_packages()


def forget_packages() -> None:
    """As in a new process: the fake packages are not imported and their ids not registered."""
    for name in [n for n in sys.modules if n.split(".")[0] in FAKE_MODULES]:
        del sys.modules[name]
    for env_id in [i for i in gym.registry if i.startswith("FakeGrid")]:
        del gym.registry[env_id]


SMALL = ["--num-envs", "2", "--set", "ppo.n_steps=32", "--set", "run.eval_episodes=2", "--no-progress"]


# ----------------------------------------------------------------------------- module:EnvId


def test_module_id_everywhere_without_env_module(site, capsys):
    """train module:id; then, as in a new shell, eval and envs check of the run need nothing
    more: the id records its module, which is imported by name again (replay and export: below)."""
    assert "FakeGrid-v0" not in gym.registry
    run = site / "run"
    argv = ["train", "fakegrid_pkg:FakeGrid-v0", "--total-timesteps", "128", "--run-dir", str(run)]
    assert main(argv + SMALL) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "--env-module" not in err  # the printed hints work as printed
    assert load_config(run / "config.yaml").env.id == "fakegrid_pkg:FakeGrid-v0"
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["env"]["id"] == "fakegrid_pkg:FakeGrid-v0" and meta["env"]["modules"] == []

    forget_packages()
    assert main(["eval", str(run), "--episodes", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 2
    forget_packages()
    assert main(["envs", "check", "fakegrid_pkg:FakeGrid-v0", "--quick"]) == 0
    assert "fakegrid_pkg:FakeGrid-v0: passed" in capsys.readouterr().out


def test_module_id_in_the_python_api_and_config_files(site):
    agent = PPO(env="fakegrid_pkg:FakeGrid-v0", config=TrainConfig().with_overrides(["env.num_envs=2"]))
    assert agent.observation_space.shape == (1,)
    forget_packages()
    (site / "walk.yaml").write_text("env:\n  id: fakegrid_pkg:FakeGridLong-v0\n  num_envs: 2\n")
    env = make_configured_env(load_config(site / "walk.yaml").env)
    assert env.unwrapped.length == 100
    env.close()
    assert ensure_registered("fakegrid_pkg:FakeGrid-v0") == "FakeGrid-v0"


def test_module_id_names_a_module_never_a_file(site, capsys):
    (site / "evil.py").write_text("raise SystemExit('imported')\n")
    for env_id in ("./evil.py:Evil-v0", "evil.py:Evil-v0", "/tmp/x:Evil-v0"):
        assert main(["train", env_id]) == 1
        err = capsys.readouterr().err
        assert "names an installed module" in err and "--env-module FILE.py" in err, err
        assert len(err.strip().splitlines()) == 1


def test_unknown_module_and_unknown_id_in_a_module(site, capsys):
    assert main(["train", "fakegird_pkg:FakeGrid-v0"]) == 1
    assert "no module named 'fakegird_pkg'" in capsys.readouterr().err
    assert main(["train", "fakegrid_pkg:NoSuch-v0"]) == 1
    err = capsys.readouterr().err
    assert "importing fakegrid_pkg did not register 'NoSuch-v0'" in err and "Traceback" not in err


def test_unknown_id_names_the_installed_package_or_the_pip_install(site, monkeypatch, capsys):
    """The well-known packages that are installed are imported, and Gymnasium's registry asked."""
    monkeypatch.setattr(
        ids,
        "KNOWN_PACKAGES",
        (
            ids.KnownPackage("fakegrid_pkg", "fakegrid", re.compile(r"^FakeGrid")),
            ids.KnownPackage("ghost_envs_pkg", "ghost-envs", re.compile(r"^Ghost-")),
        ),
    )
    assert main(["train", "FakeGrid-v0"]) == 1
    err = capsys.readouterr().err
    assert "the installed package fakegrid_pkg registers it" in err
    assert "'fakegrid_pkg:FakeGrid-v0'" in err
    assert main(["train", "Ghost-v1"]) == 1
    err = capsys.readouterr().err
    assert "pip install ghost-envs" in err and "'ghost_envs_pkg:Ghost-v1'" in err
    assert main(["train", "NothingLikeIt-v0"]) == 1
    assert "unknown environment 'NothingLikeIt-v0'" in capsys.readouterr().err
    with pytest.raises(EnvNotFoundError, match="pip install fakegrid"):
        forget_packages()
        ensure_registered("fakegird_typo:FakeGrid-v0")


# ----------------------------------------------------------------------------- env.wrappers


def test_wrapper_forms_in_yaml_and_set():
    forms = [
        "env.wrappers=fakewrap_pkg:AddFeature",
        "env.wrappers=[fakewrap_pkg:AddFeature]",
        "env.wrappers=[{fakewrap_pkg:AddFeature: {value: 2.0}}]",
        "env.wrappers=[{name: fakewrap_pkg:AddFeature, kwargs: {value: 2.0}}]",
    ]
    for form in forms:
        wrappers = TrainConfig().with_overrides([form]).env.wrappers
        assert [w.name for w in wrappers] == ["fakewrap_pkg:AddFeature"], form
    config = TrainConfig().with_overrides([forms[2]])
    assert config.env.wrappers == [WrapperSpec(name="fakewrap_pkg:AddFeature", kwargs={"value": 2.0})]
    assert TrainConfig.model_validate(json.loads(json.dumps(config.model_dump(mode="json")))) == config
    for bad, words in [
        ("env.wrappers=[wrappers.py:Scale]", "never a file path"),
        ("env.wrappers=[/tmp/w:Scale]", "never a file path"),
        ("env.wrappers=[Scale]", "is not 'module:Class'"),
        ("env.wrappers=[{name: a:B, kwarg: {}}]", "unknown key(s) ['kwarg']"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(words)):
            TrainConfig().with_overrides([bad])


@pytest.mark.parametrize(
    ("wrapper", "words"),
    [
        ("fakewrap_pkg:AddFeatur", "module fakewrap_pkg has no 'AddFeatur'; did you mean AddFeature?"),
        ("no_such_wrappers:Scale", "no module named 'no_such_wrappers'"),
        ("{fakewrap_pkg:AddFeature: {valu: 1}}", "does not accept 'valu' (it takes: value)"),
        ("fakewrap_pkg:not_a_wrapper", "is a function, not a gymnasium.Wrapper class"),
        ("os:system", "not a gymnasium.Wrapper class"),
    ],
)
def test_bad_wrappers_are_one_line_before_anything_is_built(site, capsys, wrapper, words):
    assert main(["train", "fakegrid_pkg:FakeGrid-v0", "--set", f"env.wrappers=[{wrapper}]", *SMALL]) != 0
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (site / "runs").exists()


def test_wrappers_apply_in_order_before_frame_stacking(site):
    config = TrainConfig().with_overrides(
        [
            "env.id=fakegrid_pkg:FakeGrid-v0",
            "env.wrappers=[{fakewrap_pkg:AddFeature: {value: 2.0}}, {fakewrap_pkg:AddFeature: {value: 3.0}}]",
            "env.frame_stack=2",
        ]
    )
    env = make_configured_env(config.env)
    obs, _ = env.reset(seed=0)
    env.close()
    assert obs.shape == (2, 3)  # two stacked frames of [x, 2, 3]: the wrappers are inside the stack
    np.testing.assert_array_equal(obs[-1, 1:], [2.0, 3.0])


def _train_with_wrapper(site, capsys):
    run = site / "run"
    wrappers = "env.wrappers=[{fakewrap_pkg:AddFeature: {value: 0.5}}]"
    argv = ["train", "fakegrid_pkg:FakeGrid-v0", "--total-timesteps", "128", "--run-dir", str(run)]
    assert main([*argv, "--set", wrappers, *SMALL]) == 0
    capsys.readouterr()
    return run


def test_wrappers_are_saved_and_applied_by_eval(site, capsys):
    run = _train_with_wrapper(site, capsys)
    meta = json.loads((run / "agent" / "agent.json").read_text())
    assert meta["observation_space"]["shape"] == [2]
    assert meta["config"]["env"]["wrappers"] == [
        {"name": "fakewrap_pkg:AddFeature", "kwargs": {"value": 0.5}}
    ]
    forget_packages()
    assert main(["eval", str(run), "--episodes", "2"]) == 0


@pytest.mark.slow  # the viewer, an export and two processes
def test_replay_and_export_apply_the_module_and_wrappers(site, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    run = _train_with_wrapper(site, capsys)
    forget_packages()
    gif = site / "walk.gif"
    assert main(["replay", str(run), "--headless", "--record", str(gif), "--episodes", "1"]) == 0
    assert gif.stat().st_size > 0
    forget_packages()
    model = site / "walk.onnx"
    assert main(["export", str(run), "-o", str(model)]) == 0
    props = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
    assert json.loads(props["env_wrappers"]) == [
        {"name": "fakewrap_pkg:AddFeature", "kwargs": {"value": 0.5}}
    ]
    assert props["env_id"] == "fakegrid_pkg:FakeGrid-v0"
    example = Path(__file__).parents[1] / "examples" / "onnx_inference.py"
    site_dir = str(site.parent / "site")
    env = {**os.environ, "PYTHONPATH": site_dir}
    cmd = [sys.executable, str(example), str(model), "--episodes", "2", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["episodes"] == 2
    env["PYTHONPATH"] = ""  # the wrapper's package is not installed there: said, nothing played
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    assert "cannot apply wrapper fakewrap_pkg:AddFeature: ModuleNotFoundError" in done.stderr, done.stderr


def test_an_agent_file_naming_anything_but_a_wrapper_class_is_refused(site, capsys):
    run = site / "run"
    argv = ["train", "fakegrid_pkg:FakeGrid-v0", "--total-timesteps", "64", "--run-dir", str(run)]
    assert main(argv + SMALL) == 0
    capsys.readouterr()
    path = run / "agent" / "agent.json"
    meta = json.loads(path.read_text())
    for wrappers, words in [
        ([{"name": "os:system", "kwargs": {"command": "echo hi"}}], "not a gymnasium.Wrapper class"),
        ([{"name": "/tmp/evil.py:Wrapper", "kwargs": {}}], "never a file path"),
    ]:
        meta["config"]["env"]["wrappers"] = wrappers
        path.write_text(json.dumps(meta))
        assert main(["eval", str(run / "agent"), "--episodes", "1"]) != 0
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err


def test_the_checker_applies_wrappers(site):
    report = check_environment(
        "fakegrid_pkg:FakeGrid-v0",
        wrappers=[WrapperSpec(name="fakewrap_pkg:AddFeature", kwargs={"value": 50})],
    )
    # the constant lies outside the wrapper's declared bounds: found through the wrapper
    assert any(f.code.startswith("obs") for f in report.errors), report.format()
    with pytest.raises(ConfigError, match="does not accept 'nope'"):
        check_wrappers([WrapperSpec(name="fakewrap_pkg:AddFeature", kwargs={"nope": 1})])


# ----------------------------------------------------------------------------- the checker


def test_missing_dependency_fix_is_the_pip_install_it_names(site):
    report = check_environment("fakegrid_pkg:FakeGridBroken-v0", quick=True)
    (finding,) = report.errors
    assert finding.fix == 'install what it needs: pip install "fakegrid[physics]"', finding.fix


def test_train_and_envs_check_count_the_same_warnings(site, capsys):
    """Episodes of 100 steps without a time limit: 64 quick steps said 'no episode ended', which
    the full check (1000 steps) did not; and the suggested envs check builds the same env."""
    quick = check_environment("fakegrid_pkg:FakeGridLong-v0", quick=True)
    full = check_environment("fakegrid_pkg:FakeGridLong-v0")
    assert not quick.findings and not full.findings, quick.format() + full.format()

    run = site / "run"
    wrappers = "env.wrappers=[fakewrap_pkg:AddFeature]"  # a console markup tag, if not escaped
    argv = ["train", "fakegrid_pkg:FakeGrid-v0", "--set", "env.kwargs.bool_reward=true", "--set", wrappers]
    assert main([*argv, "--total-timesteps", "64", "--run-dir", str(run), *SMALL]) == 0
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "from the environment check" in line)
    assert line.startswith("1 warning")
    command = line.rpartition(")")[0].split("(details: ")[1]
    assert "--set env.kwargs.bool_reward=true" in command
    # the wrappers' brackets are printed as written (not read as the console's markup)
    assert f"--set '{wrappers}'" in command, command
    assert main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out  # the same warning (and Gymnasium's own, which only the full check runs)
    assert "(bool_reward=True): 2 warnings" in out and "the reward is a bool" in out, out


def test_envs_check_set_takes_only_how_the_env_is_built(site, capsys):
    assert main(["envs", "check", "fakegrid_pkg:FakeGrid-v0", "--set", "ppo.gamma=0.9"]) != 0
    assert "only how the environment is built" in capsys.readouterr().err


# ----------------------------------------------------------------------------- MiniGrid itself


def test_minigrid_with_its_image_wrapper(tmp_path, capsys):
    pytest.importorskip("minigrid")
    run = tmp_path / "run"
    argv = ["train", "minigrid:MiniGrid-Empty-5x5-v0", "--total-timesteps", "128", "--run-dir", str(run)]
    assert main([*argv, "--set", "env.wrappers=minigrid.wrappers:ImgObsWrapper", *SMALL]) == 0
    assert "not training" not in capsys.readouterr().err
    assert json.loads((run / "agent" / "agent.json").read_text())["observation_space"]["shape"] == [7, 7, 3]
    assert main(["eval", str(run), "--episodes", "1"]) == 0


def test_train_says_when_no_training_episode_ended(site, capsys):
    """Episodes of 100 steps, 32 steps per copy: no 'recent training return nan'."""
    run = site / "run"
    argv = ["train", "fakegrid_pkg:FakeGridLong-v0", "--total-timesteps", "64", "--run-dir", str(run)]
    assert main([*argv, *SMALL]) == 0
    err = capsys.readouterr().err
    assert "no training episode ended yet" in err and "return nan" not in err, err
