"""The environment checker: one deliberately broken environment per finding, and its message."""

from __future__ import annotations

import inspect
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit import register_env
from ppo_envkit.cli import main
from ppo_envkit.cli.train import preflight_check
from ppo_envkit.config import TrainConfig
from ppo_envkit.environments.checker import QUICK_STEPS, check_environment
from ppo_envkit.environments.registry import temporary_registrations


@pytest.fixture(autouse=True)
def registry():
    with temporary_registrations():
        yield


class Good(gym.Env):
    """Follows every rule: the base that each broken environment below changes in one place."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def obs(self):
        return self.np_random.uniform(-1, 1, 3).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        return self.obs(), 1.0, self.t >= 10, False, {}

    def render(self):
        return np.zeros((16, 24, 3), np.uint8)


def line_of(cls, method, text):
    """The line number of ``text`` in ``cls.method`` (for asserting file:line locations)."""
    lines, start = inspect.getsourcelines(getattr(cls, method))
    return start + next(i for i, line in enumerate(lines) if text in line)


# --- one broken environment per finding ---------------------------------------------------------


class RaisesInInit(Good):
    def __init__(self, render_mode=None):
        raise ValueError("no map file")


class NoObservationSpace(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        del self.observation_space


class TextActions(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.action_space = spaces.Text(5)


class SequenceObservations(Good):
    # (Text observations are encoded since issue 23; a Sequence still has no encoder)
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.observation_space = spaces.Sequence(spaces.Discrete(2))


class InfiniteActionBox(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.action_space = spaces.Box(-np.inf, np.inf, (1,), np.float32)


class RaisesInReset(Good):
    def reset(self, *, seed=None, options=None):
        return {"a": 1}["b"], {}


class ResetWithoutSeed(Good):
    def reset(self):
        return self.observation_space.sample(), {}


class ResetReturnsObsOnly(Good):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.obs()


class WrongShape(Good):
    def obs(self):
        return np.zeros(4, np.float32)


class Float64Obs(Good):
    def obs(self):
        return np.zeros(3)


class FloatObsForUint8Space(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.observation_space = spaces.Box(0, 255, (3,), np.uint8)

    def obs(self):
        return np.full(3, 0.5, np.float32)


class OutOfBoundsAtStep5(Good):
    def step(self, action):
        obs, *rest = super().step(action)
        if self.t == 5:
            obs[1] = 1.5
        return obs, *rest


class NaNObs(Good):
    def step(self, action):
        obs, *rest = super().step(action)
        obs[2] = np.nan
        return obs, *rest


class DictMissingKey(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        pos = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict({"pos": pos, "mode": spaces.Discrete(3)})

    def obs(self):
        return {"pos": np.zeros(2, np.float32)}


class DiscreteObsOutOfRange(Good):
    def __init__(self, render_mode=None):
        super().__init__(render_mode)
        self.observation_space = spaces.Discrete(4)

    def obs(self):
        return 4


class NaNReward(Good):
    def step(self, action):
        obs, _, *rest = super().step(action)
        return obs, float("nan"), *rest


class NoneReward(Good):
    def step(self, action):
        obs, _, *rest = super().step(action)
        return obs, None, *rest


class ArrayReward(Good):
    def step(self, action):
        obs, _, *rest = super().step(action)
        return obs, np.array([1.0]), *rest


class IntTerminated(Good):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, int(terminated), truncated, info


class ArrayTruncated(Good):
    def step(self, action):
        obs, reward, terminated, _, info = super().step(action)
        return obs, reward, terminated, np.array([False]), info


class OldGymStep(Good):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated or truncated, info


class RaisesAtStep3(Good):
    def step(self, action):
        result = super().step(action)
        if self.t == 3:
            raise ZeroDivisionError("float division by zero")
        return result


class InfoNotDict(Good):
    def step(self, action):
        obs, reward, terminated, truncated, _ = super().step(action)
        return obs, reward, terminated, truncated, None


class IgnoresSeed(Good):
    def obs(self):
        return np.random.uniform(-1, 1, 3).astype(np.float32)


class NoRgbArray(Good):
    metadata = {"render_modes": []}


class RenderGrey(Good):
    def render(self):
        return np.zeros((16, 24), np.uint8)


class RenderRGBA(Good):
    def render(self):
        return np.zeros((16, 24, 4), np.uint8)


class RenderFloat(Good):
    def render(self):
        return np.zeros((16, 24, 3), np.float32)


class RenderNone(Good):
    def render(self):
        return None


class RenderRaises(Good):
    def render(self):
        return self.canvas


class NeverEnds(Good):
    def step(self, action):
        obs, reward, _, truncated, info = super().step(action)
        return obs, reward, False, truncated, info


BROKEN = [
    # class, severity, code, words in `what`, words in `fix`
    (
        RaisesInInit,
        "error",
        "make",
        "creating the environment raised ValueError: no map file",
        "fix the code at",
    ),
    (
        NoObservationSpace,
        "error",
        "observation-space-missing",
        "observation_space is missing",
        "set self.observation_space",
    ),
    (
        TextActions,
        "error",
        "action-space-unsupported",
        "no policy head supports the action space Text",
        "Discrete, Box",
    ),
    (
        SequenceObservations,
        "error",
        "obs-space-unsupported",
        "observation is Sequence(Discrete(2), stack=False), which no observation encoder reads",
        "Dict/Tuple",
    ),
    (InfiniteActionBox, "warning", "action-bounds-infinite", "infinite bounds", "finite bounds"),
    (RaisesInReset, "error", "reset-exception", "reset(seed=0) raised KeyError: 'b'", "fix the code at"),
    (
        ResetWithoutSeed,
        "error",
        "reset-exception",
        "unexpected keyword argument 'seed'",
        "reset(self, *, seed=None, options=None)",
    ),
    (
        ResetReturnsObsOnly,
        "error",
        "reset-return",
        "reset() returned ndarray, not (observation, info)",
        "return observation, {}",
    ),
    (
        WrongShape,
        "error",
        "obs-shape",
        "the observation has shape (4,), but the observation space has shape (3,)",
        "shape=(4,)",
    ),
    (
        Float64Obs,
        "warning",
        "obs-dtype",
        "the observation has dtype float64, but the observation space has dtype float32",
        "obs.astype(np.float32)",
    ),
    (
        FloatObsForUint8Space,
        "error",
        "obs-dtype",
        "has dtype float32, but the observation space has dtype uint8",
        "astype(np.uint8)",
    ),
    (OutOfBoundsAtStep5, "error", "obs-bounds", "element [1] is 1.5, above the high bound 1", "np.clip"),
    (NaNObs, "error", "obs-nonfinite", "the observation contains nan at index [2]", "keep it finite"),
    (DictMissingKey, "error", "obs-keys", "the observation lacks ['mode']", "['mode', 'pos']"),
    (
        DiscreteObsOutOfRange,
        "error",
        "obs-bounds",
        "the observation is 4, outside Discrete(4) (allowed 0..3)",
        "within 0..3",
    ),
    (NaNReward, "error", "reward-nonfinite", "the reward is nan", "keep it finite"),
    (NoneReward, "error", "reward-type", "the reward is NoneType None, not a number", "return a float"),
    (
        ArrayReward,
        "error",
        "reward-type",
        "the reward is an array of shape (1,), not a number",
        "float(reward)",
    ),
    (IntTerminated, "error", "terminated-type", "terminated is int (0), not a bool", "bool(...)"),
    (
        ArrayTruncated,
        "error",
        "truncated-type",
        "truncated is ndarray (array of shape (1,)), not a bool",
        "bool(...)",
    ),
    (OldGymStep, "error", "step-return", "step() returned 4 values", "terminated, truncated"),
    (
        RaisesAtStep3,
        "error",
        "step-exception",
        "raised ZeroDivisionError: float division by zero",
        "fix the code at",
    ),
    (
        InfoNotDict,
        "error",
        "step-info",
        "the info returned by step() is NoneType, not a dict",
        "return a dict",
    ),
    (
        IgnoresSeed,
        "error",
        "seed",
        "reset(seed=0) returned a different first observation the second time",
        "self.np_random",
    ),
    (
        NoRgbArray,
        "warning",
        "render-missing",
        "does not declare rgb_array rendering",
        "'render_modes': ['rgb_array']",
    ),
    (
        RenderGrey,
        "error",
        "render-frame",
        "render() returned shape (16, 24), not (height, width, 3)",
        "np.repeat",
    ),
    (RenderRGBA, "error", "render-frame", "render() returned shape (16, 24, 4)", "drop the alpha channel"),
    (RenderFloat, "error", "render-dtype", "render() returned dtype float32, not uint8", "astype(np.uint8)"),
    (
        RenderNone,
        "error",
        "render-frame",
        "render() returned None in rgb_array mode",
        "self.render_mode = render_mode",
    ),
    (RenderRaises, "error", "render-exception", "render() raised AttributeError", "fix the code at"),
    (
        NeverEnds,
        "warning",
        "no-episode-end",
        "no episode ended in 1000 random steps and there is no time limit",
        "max_episode_steps",
    ),
]


@pytest.mark.parametrize(
    ("cls", "severity", "code", "what", "fix"), BROKEN, ids=[b[0].__name__ for b in BROKEN]
)
def test_each_broken_environment_gets_its_finding(cls, severity, code, what, fix):
    env_id = f"broken/{cls.__name__}-v0"
    register_env(env_id, cls)
    report = check_environment(env_id)
    found = {f.code: f for f in report.findings}
    assert code in found, report.format()
    finding = found[code]
    assert finding.severity == severity
    assert what in finding.what, finding.format()
    assert fix in finding.fix, finding.format()
    assert finding.where
    # an environment that Gymnasium's own check_env rejects does not pass either
    gymnasium_failed = any(f.source == "gymnasium" and f.severity == "error" for f in report.findings)
    assert report.ok == (severity != "error" and not gymnasium_failed)
    # nothing but the planted problem (and Gymnasium agreeing with it)
    ours = [f for f in report.findings if f.source == "ppo-envkit"]
    assert [f.code for f in ours] == [code], report.format()


@pytest.mark.parametrize(
    ("cls", "method", "text", "where"),
    [
        (RaisesInInit, "__init__", "raise ValueError", "in __init__"),
        (RaisesInReset, "reset", 'return {"a": 1}["b"]', "reset(seed=0), "),
        (RaisesAtStep3, "step", "raise ZeroDivisionError", "at step 3, "),
        (RenderRaises, "render", "return self.canvas", "render() after reset(), "),
    ],
)
def test_exceptions_point_at_the_users_line(cls, method, text, where):
    register_env("broken/Raises-v0", cls)
    report = check_environment("broken/Raises-v0")
    finding = report.errors[0]
    assert where in finding.where
    assert f"tests/test_checker.py:{line_of(cls, method, text)}" in finding.where
    assert "Traceback" in (finding.details or "")


def test_bad_values_point_at_the_return_statement():
    register_env("broken/OutOfBounds-v0", OutOfBoundsAtStep5)
    finding = check_environment("broken/OutOfBounds-v0").errors[0]
    line = line_of(OutOfBoundsAtStep5, "step", "return obs, *rest")
    assert "step() at step 5" in finding.where
    assert f"OutOfBoundsAtStep5.step returned at tests/test_checker.py:{line}" in finding.where


def test_repeats_are_counted_not_listed():
    register_env("broken/NaN-v0", NaNReward, max_episode_steps=20)
    report = check_environment("broken/NaN-v0", steps=30)
    assert [f.code for f in report.findings if f.source == "ppo-envkit"] == ["reward-nonfinite"]
    assert report.errors[0].repeats == 29 and "(29 more times)" in report.format()


def test_good_environment_passes_everything():
    register_env("good/Good-v0", Good, max_episode_steps=50)
    report = check_environment("good/Good-v0")
    assert report.findings == [] and report.ok
    assert report.steps == 1000 and report.episodes == 100
    assert "passed" in report.summary()


def test_gymnasiums_checker_runs_and_is_labelled():
    class UnboundedObs(Good):
        def __init__(self, render_mode=None):
            super().__init__(render_mode)
            self.observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float32)

    register_env("good/Unbounded-v0", UnboundedObs)
    report = check_environment("good/Unbounded-v0")
    gym_findings = [f for f in report.findings if f.source == "gymnasium"]
    assert any("minimum value is -infinity" in f.what for f in gym_findings)
    assert all(f.severity == "warning" for f in gym_findings) and report.ok
    assert "[gymnasium]" in report.format()


def test_a_gymnasium_failure_is_an_error_shown_as_it_is(capsys):
    register_env("broken/Float64Obs-v0", Float64Obs, max_episode_steps=50)
    report = check_environment("broken/Float64Obs-v0")
    assert not report.ok
    failure = next(f for f in report.errors if f.source == "gymnasium")
    assert failure.what.startswith("AssertionError: ") and "observation space" in failure.what
    assert "likely" not in report.format()
    assert "obs-dtype" in {f.code for f in report.warnings}  # ours, still said
    assert main(["envs", "check", "broken/Float64Obs-v0"]) == 1
    assert f"error [gymnasium]: {failure.what}" in capsys.readouterr().out


def test_the_checker_imports_no_torch():
    code = "import sys, ppo_envkit.environments.checker; print([m for m in sys.modules if 'torch' in m])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_checkers_action_spaces_are_those_with_a_head():
    from ppo_envkit.algo.heads import make_head
    from ppo_envkit.spaces import ACTION_SPACE_TYPES, UnsupportedSpaceError, check_action_space

    supported = [spaces.Discrete(3), spaces.Box(-1, 1, (2,)), spaces.MultiDiscrete([2, 3])]
    supported.append(spaces.MultiBinary(4))
    assert {type(s) for s in supported} == set(ACTION_SPACE_TYPES)
    for space in supported:
        check_action_space(space)
        make_head(space, 1)
    composite = [
        spaces.Tuple([spaces.Discrete(2), spaces.Box(-1, 1, (2,))]),
        spaces.Dict({"a": spaces.Discrete(2)}),
    ]
    for space in composite:  # composite actions: one head per supported part
        check_action_space(space)
        make_head(space, 1)
    refused = (
        spaces.Text(3),
        spaces.Tuple([spaces.Discrete(2), spaces.Text(3)]),
        spaces.Dict({"a": spaces.Text(3)}),
    )
    for space in refused:
        for refuse in (check_action_space, lambda s: make_head(s, 1)):
            with pytest.raises(UnsupportedSpaceError, match="supported: Discrete, Box"):
                refuse(space)


def test_nondeterministic_envs_skip_the_seed_test():
    register_env("random/IgnoresSeed-v0", IgnoresSeed, nondeterministic=True)
    report = check_environment("random/IgnoresSeed-v0")
    assert report.ok and "seed" not in {f.code for f in report.findings}
    assert all("nondeterministic=True" in f.what for f in report.findings if f.source == "gymnasium")


def test_variant_with_the_wrong_action_space():
    class AlwaysDiscrete(Good):
        def __init__(self, continuous=False, render_mode=None):
            super().__init__(render_mode)

    register_env("broken/AlwaysDiscrete-v0", AlwaysDiscrete, variants="continuous")
    report = check_environment("broken/AlwaysDiscrete-v0", {"continuous": True}, expect="continuous")
    finding = next(f for f in report.errors if f.code == "variant-action-space")
    assert "the continuous variant has the action space Discrete(2), not a Box" in finding.what


def test_unknown_variant_argument_says_to_accept_it():
    register_env("broken/NoFlag-v0", Good, variants="continuous")
    report = check_environment("broken/NoFlag-v0", {"continuous": True})
    assert "accept the keyword argument 'continuous' in __init__" in report.errors[0].fix


def test_quick_check_skips_render_and_gymnasium():
    register_env("broken/RenderGrey-v0", RenderGrey)
    report = check_environment("broken/RenderGrey-v0", quick=True)
    assert report.ok and report.steps == QUICK_STEPS


# --- the command line ------------------------------------------------------------------------------


def test_envs_check_exit_status_and_output(capsys):
    register_env("good/Good-v0", Good, max_episode_steps=50)
    register_env("broken/NaN-v0", NaNReward)
    assert main(["envs", "check", "good/Good-v0"]) == 0
    assert "good/Good-v0: passed" in capsys.readouterr().out
    assert main(["envs", "check", "broken/NaN-v0", "--steps", "20"]) == 1
    out = capsys.readouterr().out
    assert "error: the reward is nan (19 more times)" in out
    assert "where: step() at step 1, NaNReward.step returned at tests/test_checker.py:" in out
    assert "fix:" in out


def test_train_refuses_a_broken_user_env_and_says_why(tmp_path, capsys):
    register_env("broken/Shape-v0", WrongShape)
    run = tmp_path / "run"
    assert main(["train", "broken/Shape-v0", "--run-dir", str(run), "--total-timesteps", "64"]) == 1
    err = capsys.readouterr().err
    assert "the observation has shape (4,), but the observation space has shape (3,)" in err
    assert "not training" in err and "ppo-envkit envs check broken/Shape-v0" in err
    assert not run.exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # Gymnasium's passive checker, while training
def test_train_mentions_warnings_in_one_line(tmp_path, capsys):
    register_env("good/Float64-v0", Float64Obs, max_episode_steps=10)
    argv = ["train", "good/Float64-v0", "--run-dir", str(tmp_path / "run"), "--total-timesteps", "32"]
    assert main([*argv, "--num-envs", "1", "--set", "ppo.n_steps=32", "--no-progress"]) == 0
    assert "1 warning from the environment check" in capsys.readouterr().err


def test_builtin_envs_are_not_checked_before_training(monkeypatch):
    import ppo_envkit.environments.checker as checker

    def fail(*args, **kwargs):
        raise AssertionError("the checker ran for a built-in environment")

    monkeypatch.setattr(checker, "check_environment", fail)
    assert preflight_check(TrainConfig().with_overrides({"env.id": "CartPole-v1"}))
