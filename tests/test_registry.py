"""Registration, discovery, variants and the user's flow from an empty folder."""

from __future__ import annotations

import json
import math
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, list_envs, register_env
from ppo_envkit.cli import build_parser, main
from ppo_envkit.cli.train import resolve_train_config
from ppo_envkit.config import EnvConfig
from ppo_envkit.environments.discovery import EnvModuleError, discover_envs, load_env_module, user_modules
from ppo_envkit.environments.factory import make_env
from ppo_envkit.environments.lookup import (
    current_variant,
    env_info,
    modules_providing,
    registered_preset,
    resolve_variant,
)
from ppo_envkit.environments.registry import (
    RegistrationError,
    VariantError,
    temporary_registrations,
)
from ppo_envkit.parallel.vectorize import make_vec_env


@pytest.fixture
def registry():
    """Every registration and module load of the test is undone afterwards."""
    with temporary_registrations():
        yield


class Line(gym.Env):
    """A point on a line; discrete (left/right) or continuous moves. Reward: -distance to 0."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, continuous: bool = False, render_mode: str | None = None):
        self.continuous = continuous
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(2)
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-1, 1))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        move = float(np.clip(action[0], -1, 1)) if self.continuous else 2.0 * int(action) - 1.0
        self.x = float(np.clip(self.x + 0.1 * move, -1, 1))
        return np.array([self.x], np.float32), -abs(self.x), False, False, {}

    def render(self):
        frame = np.zeros((8, 21, 3), np.uint8)
        frame[:, round((self.x + 1) * 10)] = 255
        return frame


class OtherLine(Line):
    pass


# A user's environment file, as written in an empty folder (the "done means").
USER_FILE = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ppo_envkit import register_env


@register_env("{env_id}", max_episode_steps=50, variants="continuous")
class Hover(gym.Env):
    metadata = {{"render_modes": ["rgb_array"], "render_fps": 30}}

    def __init__(self, continuous=False, render_mode=None):
        self.continuous = continuous
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1, 1, (1,), np.float32) if continuous else spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.h = float(self.np_random.uniform(-1, 1))
        return np.array([self.h], np.float32), {{}}

    def step(self, action):
        thrust = float(np.clip(action[0], -1, 1)) if self.continuous else 2.0 * int(action) - 1.0
        self.h = float(np.clip(self.h + 0.1 * thrust, -1, 1))
        return np.array([self.h], np.float32), -abs(self.h), False, False, {{}}

    def render(self):
        frame = np.zeros((16, 16, 3), np.uint8)
        frame[round((self.h + 1) * 7.5)] = 255
        return frame
"""


def write_user_file(path, env_id="Hover-v0"):
    path.write_text(USER_FILE.format(env_id=env_id))
    return path


# ----------------------------------------------------------------------------- registration


def test_register_as_call_and_as_decorator(registry):
    register_env("Line-v0", Line, max_episode_steps=7, reward_threshold=-1.0, kwargs={"continuous": True})

    @register_env("test/Decorated-v3", action_names=["left", "right"], preset="my-preset")
    class Decorated(Line):
        pass

    assert Decorated.__name__ == "Decorated"  # the decorator returns the class itself
    env = gym.make("Line-v0")
    assert isinstance(env.action_space, spaces.Box)  # default kwargs applied
    env.reset(seed=0)
    steps = 0
    while not any(env.step(env.action_space.sample())[2:4]):
        steps += 1
    assert steps + 1 == 7  # max_episode_steps truncates
    assert gym.spec("Line-v0").reward_threshold == -1.0
    info = env_info("test/Decorated-v3")
    assert info.user and info.action_names == ["left", "right"] and info.preset == "my-preset"
    assert info.source is not None and info.source.endswith("test_registry.py")


@pytest.mark.parametrize("bad", ["grid", "Grid", "Grid-v", "Grid-vX", "my space/Grid-v0", "Grid-v0 ", 3])
def test_invalid_ids_get_a_readable_message(registry, bad):
    with pytest.raises(RegistrationError, match=r"ids look like 'Name-vN' or 'namespace/Name-vN'"):
        register_env(bad, Line)


def test_namespaced_and_dotted_ids_are_fine(registry):
    register_env("my-project/Grid.World-v12", Line)
    assert "my-project/Grid.World-v12" in gym.registry


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_episode_steps": 0}, "max_episode_steps must be a positive integer"),
        ({"reward_threshold": math.nan}, "reward_threshold must be a finite number"),
        ({"kwargs": [1]}, "kwargs must be a dict"),
        ({"variants": {"fast": {}}}, "unknown variant 'fast'"),
        ({"variants": "not an identifier"}, "must name a boolean keyword argument"),
        ({"variants": {"continuous": "not an id"}}, "invalid environment id"),
        ({"preset": {"fast": "x"}}, "preset keys must be 'discrete'/'continuous'"),
        ({"action_names": "left"}, "action_names must be a list of strings"),
    ],
)
def test_invalid_options_are_explained(registry, options, message):
    with pytest.raises(RegistrationError, match=message):
        register_env("Line-v0", Line, **options)


def test_entry_point_must_be_callable(registry):
    with pytest.raises(RegistrationError, match="entry_point must be the environment class"):
        register_env("Line-v0", 42)


def test_reregistering_other_code_is_explicit(registry):
    register_env("Line-v0", Line)
    with pytest.raises(RegistrationError, match=r"already registered .*overwrite=True.*'Line-v1'"):
        register_env("Line-v0", OtherLine)
    register_env("Line-v0", OtherLine, overwrite=True)
    assert isinstance(gym.make("Line-v0").unwrapped, OtherLine)
    register_env("Line-v0", OtherLine)  # the same code again: fine


def test_builtin_ids_are_not_taken_silently(registry):
    with pytest.raises(RegistrationError, match="already registered \\(by Gymnasium itself\\)"):
        register_env("CartPole-v1", Line)


def test_same_file_imported_twice_by_different_routes(registry, tmp_path, monkeypatch):
    """As a file, again as a file, as a folder, and as a dotted module: no error, one registration."""
    (tmp_path / "pkg_envs").mkdir()
    file = write_user_file(tmp_path / "pkg_envs" / "hover_twice.py", "Twice-v0")
    load_env_module(str(file))
    load_env_module(str(file))
    load_env_module(str(tmp_path / "pkg_envs"))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg_envs"))
    load_env_module("hover_twice")  # a second module object, same class source: not an error
    assert str(file) in user_modules() and "hover_twice" in user_modules()
    assert env_info("Twice-v0").user


def test_agent_records_only_the_module_that_registered_its_env(registry, tmp_path):
    """agent.json names the file an agent's environment needs, not every module loaded beside it."""
    first = write_user_file(tmp_path / "first_envs.py", "First-v0")
    second = write_user_file(tmp_path / "second_envs.py", "Second-v0")
    load_env_module(str(first))
    load_env_module(str(second))
    assert modules_providing("Second-v0") == [str(second)]
    assert modules_providing("First-v0") == [str(first)]
    assert modules_providing("CartPole-v1") == []  # Gymnasium's own: nothing to import
    register_env("Line-v0", Line)  # defined by this test module, which was not loaded as an env module
    assert modules_providing("Line-v0") == user_modules()  # unknown provider: every loaded module
    agent = PPO(config=TrainConfig().with_overrides({"env.id": "Second-v0", "env.num_envs": 1}))
    meta = json.loads((agent.save(tmp_path / "agent") / "agent.json").read_text())
    assert meta["env"]["modules"] == [str(second)]


def test_list_envs_marks_user_environments_first(registry):
    register_env("zz/Line-v0", Line)
    envs = list_envs(discover=False)
    assert envs[0].user
    by_id = {e.id: e for e in envs}
    assert by_id["zz/Line-v0"].user and not by_id["CartPole-v1"].user
    assert [e.id for e in list_envs(user_only=True, discover=False)] == [e.id for e in envs if e.user]


# ----------------------------------------------------------------------------- variants


def test_flag_variants(registry):
    presets = {"continuous": "line-c", "discrete": "line-d"}
    register_env("Line-v0", Line, variants="continuous", preset=presets)
    assert resolve_variant("Line-v0", "continuous").kwargs == {"continuous": True}
    assert resolve_variant("Line-v0", "discrete").kwargs == {"continuous": False}
    assert current_variant("Line-v0") == "discrete"  # from the signature default
    assert current_variant("Line-v0", {"continuous": True}) == "continuous"
    assert registered_preset("Line-v0") == "line-d"
    assert registered_preset("Line-v0", "continuous") == "line-c"


def test_two_id_variants(registry):
    register_env("Line-v0", Line, variants={"continuous": "LineContinuous-v0"})
    register_env("LineContinuous-v0", Line, kwargs={"continuous": True}, variants={"discrete": "Line-v0"})
    v = resolve_variant("Line-v0", "continuous")
    assert (v.env_id, v.kwargs) == ("LineContinuous-v0", {})
    assert resolve_variant("Line-v0", "discrete").env_id == "Line-v0"
    assert resolve_variant("LineContinuous-v0", "discrete").env_id == "Line-v0"
    register_env("Orphan-v0", Line, variants={"continuous": "Missing-v0"})
    with pytest.raises(VariantError, match=r"'Missing-v0' .* not registered"):
        resolve_variant("Orphan-v0", "continuous")


def _train_args(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_lunarlander_action_space_picks_kwargs_and_preset():
    config, preset = resolve_train_config(_train_args("LunarLander-v3", "--action-space", "continuous"))
    assert preset == "lunarlander-continuous" and config.env.kwargs == {"continuous": True}
    config, preset = resolve_train_config(_train_args("LunarLander-v3", "--action-space", "discrete"))
    assert preset == "lunarlander" and config.env.kwargs == {"continuous": False}
    config, preset = resolve_train_config(_train_args("LunarLander-v3"))
    assert preset == "lunarlander" and config.env.kwargs == {}


def test_user_env_variant_and_registered_preset(registry, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "line-c.yaml").write_text("env:\n  id: Line-v0\nppo:\n  n_steps: 16\n")
    register_env("Line-v0", Line, variants="continuous", preset={"continuous": "line-c"})
    config, preset = resolve_train_config(_train_args("Line-v0", "--action-space", "continuous"))
    assert preset == "line-c" and config.ppo.n_steps == 16 and config.env.kwargs == {"continuous": True}
    register_env("Two-v0", Line, variants={"continuous": "Line-v0"})
    config, _ = resolve_train_config(_train_args("Two-v0", "--action-space", "continuous"))
    assert config.env.id == "Line-v0"


def test_preset_yaml_next_to_the_env_file(registry, tmp_path, monkeypatch):
    """A package can ship its preset: a relative YAML path is taken from the env file's folder."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "hover.yaml").write_text("env:\n  id: Shipped-v0\nppo:\n  n_steps: 24\n")
    text = USER_FILE.format(env_id="Shipped-v0").replace('variants="continuous"', 'preset="hover.yaml"')
    (tmp_path / "pkg" / "shipped.py").write_text(text)
    load_env_module(str(tmp_path / "pkg" / "shipped.py"))
    monkeypatch.chdir(tmp_path)  # another folder than the file's
    assert env_info("Shipped-v0").preset == str(tmp_path / "pkg" / "hover.yaml")
    config, _ = resolve_train_config(_train_args("Shipped-v0"))
    assert config.ppo.n_steps == 24


def test_action_space_without_variants_is_one_line(capsys):
    assert main(["train", "CartPole-v1", "--action-space", "continuous"]) == 1
    err = capsys.readouterr().err
    assert "CartPole-v1 has no discrete/continuous variants" in err and "convention" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- discovery


def test_env_module_errors_name_the_file_and_line(registry, tmp_path):
    bad = tmp_path / "bad_env.py"
    bad.write_text("import numpy as np\n\nx = undefined_name\n")
    message = r"NameError: name 'undefined_name' is not defined at .*bad_env.py:3"
    with pytest.raises(EnvModuleError, match=message):
        load_env_module(str(bad))
    with pytest.raises(FileNotFoundError, match="environment module file not found"):
        load_env_module(str(tmp_path / "missing.py"))
    with pytest.raises(EnvModuleError, match="no module named 'no_such_module_xyz'"):
        load_env_module("no_such_module_xyz")


def test_envs_folder_is_discovered_and_broken_files_are_skipped(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "envs").mkdir()
    write_user_file(tmp_path / "envs" / "hover.py", "Found-v0")
    (tmp_path / "envs" / "broken.py").write_text("raise RuntimeError('boom')\n")
    assert main(["envs", "list", "--user"]) == 0
    captured = capsys.readouterr()
    assert "* Found-v0" in captured.out and "Discrete(2)" in captured.out
    assert "warning" in captured.err and "broken.py" in captured.err and "RuntimeError: boom" in captured.err


def test_python_api_discovers_envs_folder(registry, tmp_path, monkeypatch):
    from ppo_envkit import make_env

    monkeypatch.chdir(tmp_path)
    (tmp_path / "envs").mkdir()
    write_user_file(tmp_path / "envs" / "hover.py", "Lazy-v0")
    (tmp_path / "envs" / "nothing.py").write_text("raise ImportError('nothing here')\n")
    with pytest.warns(RuntimeWarning, match="nothing.py.*ImportError: nothing here"):
        env = make_env("Lazy-v0")
    assert env.observation_space.shape == (1,)


def test_entry_point_group_is_discovered(registry, tmp_path, monkeypatch):
    """A package announcing ``[project.entry-points."ppo_envkit.envs"] hover = "hover_pkg:register"``."""
    monkeypatch.chdir(tmp_path)
    site = tmp_path / "site"
    (site / "hover_pkg").mkdir(parents=True)
    (site / "hover_pkg" / "__init__.py").write_text(
        "def register():\n"
        "    from ppo_envkit import register_env\n"
        "    from hover_pkg.env import Hover\n"
        "    register_env('Plugin-v0', Hover)\n"
    )
    (site / "hover_pkg" / "env.py").write_text(USER_FILE.format(env_id="PluginDirect-v0"))
    dist = site / "hover_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hover-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[ppo_envkit.envs]\nhover = hover_pkg:register\n")
    monkeypatch.syspath_prepend(str(site))
    assert discover_envs(again=True) == []
    assert "Plugin-v0" in gym.registry and "PluginDirect-v0" in gym.registry
    assert "hover_pkg:register" in user_modules()  # so that worker processes load it too


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_async_workers_find_file_based_envs(registry, tmp_path, context):
    """Worker processes (forked, or fresh interpreters) import the user's file before building."""
    file = write_user_file(tmp_path / f"hover_{context}.py", f"Worker{context.title()}-v0")
    load_env_module(str(file))
    config = EnvConfig(id=f"Worker{context.title()}-v0", num_envs=2, vectorization="async")
    envs = make_vec_env(config, context=context)
    try:
        obs, _ = envs.reset(seed=0)
        obs, reward, *_ = envs.step(np.array([0, 1]))
        assert obs.shape == (2, 1) and reward.shape == (2,)
        assert envs.get_attr("continuous") == (False, False)
    finally:
        envs.close()


def test_spawned_workers_import_the_entry_points_module(registry, tmp_path, monkeypatch):
    """Registered by a module the user imported themselves (not through --env-module)."""
    (tmp_path / "own_envs_mod.py").write_text(USER_FILE.format(env_id="Own-v0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    __import__("own_envs_mod")
    envs = make_vec_env(EnvConfig(id="Own-v0", num_envs=2, vectorization="async"), context="spawn")
    try:
        assert envs.reset(seed=0)[0].shape == (2, 1)
    finally:
        envs.close()
        sys.modules.pop("own_envs_mod", None)


# ----------------------------------------------------------------------------- the user's flow


@pytest.mark.slow  # seconds of subprocesses or export: runs in the whole suite
def test_user_flow_from_an_empty_folder(registry, tmp_path, monkeypatch, capsys):
    """check, train each variant with 4 async copies, eval; all through the CLI, in-process."""
    monkeypatch.chdir(tmp_path)
    write_user_file(tmp_path / "hover.py")
    assert main(["envs", "check", "--env-module", "hover.py"]) == 0
    out = capsys.readouterr().out
    assert "Hover-v0: passed" in out and "Hover-v0(continuous=True): passed" in out
    common = ["--env-module", "hover.py", "--num-envs", "4", "--set", "env.vectorization=async"]
    for kind in ("discrete", "continuous"):
        run = tmp_path / kind
        argv = ["train", "Hover-v0", "--action-space", kind, "--total-timesteps", "1024"]
        assert main([*argv, *common, "--set", "ppo.n_steps=64", "--run-dir", str(run), "--no-progress"]) == 0
        meta = json.loads((run / "agent" / "agent.json").read_text())
        assert meta["env"]["kwargs"] == {"continuous": kind == "continuous"}
        assert meta["action_space"]["type"] == ("Box" if kind == "continuous" else "Discrete")
        assert main(["eval", str(run), "--episodes", "2", "--json", "--env-module", "hover.py"]) == 0
        assert json.loads(capsys.readouterr().out)["episodes"] == 2


def test_envs_check_of_a_module_checks_what_it_registered(registry, tmp_path, monkeypatch, capsys):
    """Environments some package registered when something else imported it (ale_py's hundred
    games, say) are not the module's: envs check --env-module checks the module's own."""
    monkeypatch.chdir(tmp_path)
    gym.register("Stranger-v0", entry_point=Line)  # registered outside ppo-envkit's module loading
    write_user_file(tmp_path / "hover.py")
    assert main(["envs", "check", "--env-module", "hover.py", "--steps", "50"]) == 0
    out = capsys.readouterr().out
    assert "Hover-v0: passed" in out and "Stranger-v0" not in out


def test_eval_without_the_module_says_which_to_pass(registry, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_user_file(tmp_path / "hover.py", "Forgotten-v0")
    run = tmp_path / "run"
    argv = ["train", "Forgotten-v0", "--env-module", "hover.py", "--total-timesteps", "64", "--num-envs", "1"]
    assert main([*argv, "--set", "ppo.n_steps=64", "--run-dir", str(run), "--no-progress"]) == 0
    gym.registry.pop("Forgotten-v0")
    assert main(["eval", str(run), "--episodes", "1"]) == 1
    err = capsys.readouterr().err
    assert "'Forgotten-v0', which is not registered here" in err and "--env-module" in err
    assert "hover.py" in err


# ----------------------------------------------------------------------------- imports like Python's

PLAIN_ENV = """
import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Drift(gym.Env):
    def __init__(self, continuous: bool = False):
        self.continuous = continuous
        self.observation_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (1,), np.float32) if continuous else spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 0.0, False, False, {}
"""


def _plain_registration(folder, env_id, entry_point="drift_env:Drift", file="my_envs.py", env_file=True):
    """A user's two files: the class, and a module registering it with plain gymnasium.register."""
    folder.mkdir(parents=True, exist_ok=True)
    if env_file:
        (folder / "drift_env.py").write_text(PLAIN_ENV)
    registering = folder / file
    registering.write_text(
        "import gymnasium\n\n"
        f"gymnasium.register({env_id!r}, entry_point={entry_point!r}, max_episode_steps=20)\n"
    )
    return registering


def test_an_entry_point_beside_the_registering_file_imports_as_python_would(
    registry, tmp_path, monkeypatch, capsys
):
    registering = _plain_registration(tmp_path / "project", "Drift-v0")
    monkeypatch.chdir(tmp_path)  # neither file is in the current directory
    module = ["--env-module", str(registering)]
    assert main(["envs", "check", "Drift-v0", "--quick", *module]) == 0
    run = tmp_path / "run"
    train = ["train", "Drift-v0", "--total-timesteps", "64", "--num-envs", "2", "--no-progress", *module]
    assert main([*train, "--set", "ppo.n_steps=32", "--run-dir", str(run)]) == 0
    assert main(["eval", str(run), "--episodes", "2", *module]) == 0
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_async_workers_import_an_entry_point_beside_the_file(registry, tmp_path, context):
    env_id = f"Drift{context.title()}-v0"
    load_env_module(str(_plain_registration(tmp_path / context, env_id)))
    envs = make_vec_env(EnvConfig(id=env_id, num_envs=2, vectorization="async"), context=context)
    try:
        assert envs.reset(seed=0)[0].shape == (2, 1)
        assert envs.step(np.array([0, 1]))[1].shape == (2,)
    finally:
        envs.close()


def test_the_current_directory_is_importable_as_under_python_m(registry, tmp_path, monkeypatch):
    (tmp_path / "drift_env.py").write_text(PLAIN_ENV)  # the class next to the user
    registering = _plain_registration(tmp_path / "registrations", "DriftCwd-v0", env_file=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    load_env_module(str(registering))
    assert make_env("DriftCwd-v0").reset(seed=0)[0].shape == (1,)


def test_an_entry_point_that_does_not_import_names_it_and_the_likely_fix(
    registry, tmp_path, monkeypatch, capsys
):
    registering = _plain_registration(tmp_path, "Lost-v0", entry_point="hover_env:Hover")
    monkeypatch.chdir(tmp_path)
    assert main(["envs", "check", "Lost-v0", "--quick", "--env-module", "my_envs.py"]) == 1
    out = capsys.readouterr().out
    assert "cannot import its entry point 'hover_env:Hover' (registered by my_envs.py)" in out
    assert "No module named 'hover_env'" in out and "is hover_env.py" in out
    assert "importlib" not in out and "ppo_envkit" not in out  # never a line of the library
    train = ["train", "Lost-v0", "--env-module", str(registering), "--no-progress"]
    assert main(train) == 1
    err = capsys.readouterr().err
    assert "hover_env" in err and "Traceback" not in err


def test_a_boolean_continuous_argument_gives_variants_by_convention(registry, tmp_path):
    load_env_module(str(_plain_registration(tmp_path, "DriftVariants-v0")))
    info = env_info("DriftVariants-v0")
    assert set(info.variants) == {"discrete", "continuous"}
    assert info.variants_from.startswith("by convention") and "Drift" in info.variants_from
    config, _ = resolve_train_config(_train_args("DriftVariants-v0", "--action-space", "continuous"))
    assert config.env.kwargs == {"continuous": True}
    assert current_variant("DriftVariants-v0", {"continuous": True}) == "continuous"
