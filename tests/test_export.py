"""ONNX export: onnxruntime acts as ``predict(deterministic=True)`` does, for every space
combination, for the shipped agents, and in a process where torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, evaluate
from ppo_envkit.cli import main
from ppo_envkit.export.check import OnnxAgent, check_export, stack_observations
from ppo_envkit.export.onnx import ExportError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "agents"

OBSERVATION_SPACES = {
    "box": spaces.Box(-1.0, 1.0, (3, 2), np.float32),
    "dict": spaces.Dict(
        {
            "pos": spaces.Box(-1.0, 1.0, (2, 2), np.float32),
            "mode": spaces.Discrete(3, start=-1),
            "flags": spaces.MultiBinary(2),
            "pair": spaces.Tuple(
                (spaces.Discrete(2, start=1), spaces.MultiDiscrete([[2, 3], [4, 1]], start=[[1, 0], [-2, 5]]))
            ),
        }
    ),
}
ACTION_SPACES = {
    "discrete": spaces.Discrete(5, start=2),
    "box": spaces.Box(np.array([-1, 0, -3], np.float32), np.array([1, 2, 3], np.float32)),
    "multidiscrete": spaces.MultiDiscrete([[3, 2], [4, 2]], start=[[0, 1], [-1, 0]]),
    "multibinary": spaces.MultiBinary(4),
}
COMBINATIONS = [(o, a, False) for o in OBSERVATION_SPACES for a in ACTION_SPACES] + [
    (o, "box", True) for o in OBSERVATION_SPACES
]
# The fast tier exports these three; the others run in the slow tier (each kind of observation
# and action is still exported by a fast test: discrete and Box in the two tests below).
FAST = {("dict", "multidiscrete", False), ("box", "box", True), ("box", "multibinary", False)}
COMBINATIONS = [c if c in FAST else pytest.param(*c, marks=pytest.mark.slow) for c in COMBINATIONS]


def tiny_agent(
    observation_space: spaces.Space, action_space: spaces.Space, squash: bool = False, **policy
) -> PPO:
    """A small untrained agent whose normalization statistics and action scores are far from
    the defaults, so that a dropped normalization or a wrong column would change actions."""
    config = TrainConfig().with_overrides(
        {
            "policy.hidden_sizes": [16, 16],
            "policy.squash": squash,
            "policy.log_std_init": 0.5,
            **{f"policy.{key}": value for key, value in policy.items()},
        }
    )
    agent = PPO(config=config, observation_space=observation_space, action_space=action_space)
    rms = agent.policy.obs_norm.rms
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        rms.mean.copy_(torch.randn(rms.mean.shape, generator=g, dtype=torch.float64) * 0.3)
        rms.var.copy_(torch.rand(rms.var.shape, generator=g, dtype=torch.float64) + 0.1)
        agent.policy.head.out.weight.mul_(300.0)  # actions vary, and often hit the Box bounds
    agent.policy.obs_norm.refresh()
    return agent


def sampled(space: spaces.Space, n: int) -> list:
    space.seed(0)
    return [space.sample() for _ in range(n)]


@pytest.mark.parametrize(("obs_kind", "act_kind", "squash"), COMBINATIONS)
def test_every_space_combination_acts_as_predict(tmp_path, obs_kind, act_kind, squash):
    obs_space, act_space = OBSERVATION_SPACES[obs_kind], ACTION_SPACES[act_kind]
    agent = tiny_agent(obs_space, act_space, squash)
    path = agent.export_onnx(tmp_path / "m.onnx", distribution=True, value=True)
    observations = sampled(obs_space, 1000)
    result = check_export(agent, path, observations=observations)  # raises on any mismatch
    assert result.observations == 1000 and result.mismatches == 0
    if result.exact:
        assert result.max_abs_diff == 0
    model = OnnxAgent(path)
    assert [i.name for i in model.session.get_inputs()] == [s["name"] for s in model.inputs]
    for batch in (1, 64):  # the batch dimension is dynamic
        obs = stack_observations(observations[:batch])
        action = model.predict(obs)
        expected = agent.predict(obs)
        assert action.shape == expected.shape and action.dtype == expected.dtype
        if not isinstance(act_space, spaces.Box):
            np.testing.assert_array_equal(action, expected)
        assert act_space.contains(action[0])
    if not isinstance(act_space, spaces.Box):
        assert len({a.tobytes() for a in model.predict(stack_observations(observations[:64]))}) > 1


@pytest.mark.slow  # seconds of subprocesses or export: runs in the whole suite
def test_distribution_and_value_outputs(tmp_path):
    agent = tiny_agent(OBSERVATION_SPACES["dict"], ACTION_SPACES["discrete"])
    path = agent.export_onnx(tmp_path / "m.onnx", distribution=True, value=True)
    obs = stack_observations(sampled(OBSERVATION_SPACES["dict"], 64))
    model = OnnxAgent(path)
    assert [o.name for o in model.session.get_outputs()] == ["action", "probs", "value"]
    _, probs, value = model.run(obs)
    with torch.no_grad():
        x = agent.policy.obs_norm(agent.policy.obs_to_tensor(obs))
        expected_probs = agent.policy.actor_params(x).softmax(-1).numpy()
        expected_value = agent.policy.value(x).numpy()
    np.testing.assert_allclose(probs, expected_probs, atol=1e-5)
    np.testing.assert_allclose(value, expected_value, atol=1e-5)

    plain = OnnxAgent(agent.export_onnx(tmp_path / "plain.onnx"))
    assert [o.name for o in plain.session.get_outputs()] == ["action"]


def test_gaussian_outputs_mean_and_std(tmp_path):
    agent = tiny_agent(OBSERVATION_SPACES["box"], ACTION_SPACES["box"])
    model = OnnxAgent(agent.export_onnx(tmp_path / "m.onnx", distribution=True))
    assert [o.name for o in model.session.get_outputs()] == ["action", "mean", "std"]
    _, _, std = model.run(np.zeros((3, 3, 2), np.float32))
    np.testing.assert_allclose(std, np.full((3, 3), np.exp(0.5)), rtol=1e-6)


def test_a_censored_gaussian_agent_exports_as_the_gaussian(tmp_path):
    agent = tiny_agent(OBSERVATION_SPACES["box"], ACTION_SPACES["box"], box_distribution="gaussian-censored")
    path = agent.export_onnx(tmp_path / "m.onnx", distribution=True)
    result = check_export(agent, path, observations=sampled(OBSERVATION_SPACES["box"], 200))
    assert result.observations == 200 and result.mismatches == 0
    assert [o.name for o in OnnxAgent(path).session.get_outputs()] == ["action", "mean", "std"]


def test_a_beta_box_agent_exports_its_mode_and_concentrations(tmp_path):
    agent = tiny_agent(OBSERVATION_SPACES["box"], ACTION_SPACES["box"], box_distribution="beta")
    path = agent.export_onnx(tmp_path / "m.onnx", distribution=True)
    observations = sampled(OBSERVATION_SPACES["box"], 500)
    result = check_export(agent, path, observations=observations)  # raises on any mismatch
    assert result.observations == 500 and result.mismatches == 0
    model = OnnxAgent(path)
    assert [o.name for o in model.session.get_outputs()] == ["action", "alpha", "beta"]
    obs = stack_observations(observations[:64])
    action, alpha, beta = model.run(obs)
    np.testing.assert_allclose(action, agent.predict(obs), atol=1e-5)
    assert (alpha >= 1).all() and (beta >= 1).all()
    assert len({a.tobytes() for a in action}) > 1


@pytest.mark.parametrize(
    "name", ["lunarlander", pytest.param("lunarlander-continuous", marks=pytest.mark.slow)]
)
def test_shipped_agents_on_1000_recorded_observations(tmp_path, capsys, name):
    """``export --check`` plays the agent for 1,000 steps and compares every action."""
    out = tmp_path / f"{name}.onnx"
    assert main(["export", str(SHIPPED / name), "-o", str(out), "--check", "--check-steps", "1000"]) == 0
    err = capsys.readouterr().err
    assert "agree on 1000 of 1000 observations" in err
    if name == "lunarlander":
        assert "identical actions" in err

    meta = OnnxAgent(out).metadata
    stored = json.loads((SHIPPED / name / "agent.json").read_text())
    assert meta["env_id"] == "LunarLander-v3"
    assert json.loads(meta["env_kwargs"]) == stored["env"]["kwargs"]
    assert json.loads(meta["observation_space"]) == stored["observation_space"]
    assert json.loads(meta["action_space"]) == stored["action_space"]
    assert json.loads(meta["num_timesteps"]) == stored["num_timesteps"]
    assert meta["ppo_envkit_version"]
    provenance = json.loads(meta["provenance"])
    assert provenance["tensors_sha256"] == stored["tensors_sha256"]
    assert provenance["versions"] == stored["versions"]
    assert provenance["training"]["command"] == stored["provenance"]["command"]
    assert len(provenance["model_sha256"]) == 64


def test_dict_environment_check_through_the_cli(tmp_path, capsys, toy_env_ids):
    config = TrainConfig().with_overrides({"env.id": toy_env_ids["dict"], "policy.hidden_sizes": [8]})
    agent = PPO(config=config)
    agent.save(tmp_path / "agent")
    out = tmp_path / "dict.onnx"
    assert main(["export", str(tmp_path / "agent"), "-o", str(out), "--check", "--check-steps", "100"]) == 0
    assert "agree on 100 of 100" in capsys.readouterr().err
    names = {i.name for i in OnnxAgent(out).session.get_inputs()}
    assert names == {"pos", "mode", "flags", "pair/0", "pair/1"}


# The example in a process where torch and ppo_envkit cannot be imported.
_BLOCKED = """
import runpy, sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "ppo_envkit"):
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocked())
for name in ("torch", "ppo_envkit"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(f"{name} could be imported")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
assert "torch" not in sys.modules and "ppo_envkit" not in sys.modules
"""


def test_example_plays_without_torch_and_matches_eval(tmp_path):
    agent = PPO.load(SHIPPED / "lunarlander")
    path = agent.export_onnx(tmp_path / "lander.onnx")
    example = ROOT / "examples" / "onnx_inference.py"
    argv = [str(example), str(path), "--episodes", "3", "--seed", "7", "--json"]
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    played = json.loads(proc.stdout)
    expected = evaluate(agent, 3, seed=7)
    assert played["returns"] == pytest.approx(expected.returns, abs=1e-9)
    assert played["mean_return"] == pytest.approx(expected.mean_return, abs=1e-9)


def test_mismatch_is_one_clear_error(tmp_path):
    agent = tiny_agent(OBSERVATION_SPACES["box"], ACTION_SPACES["discrete"])
    path = agent.export_onnx(tmp_path / "m.onnx")
    with torch.no_grad():
        agent.policy.head.out.bias.add_(torch.arange(5.0) * 1000)  # the agent changed since
    with pytest.raises(ExportError, match=r"disagrees with the agent on \d+ of 200 observations"):
        check_export(agent, path, observations=sampled(OBSERVATION_SPACES["box"], 200))


def test_recurrent_policy_is_refused(tmp_path):
    config = TrainConfig().with_overrides({"policy.recurrent": "lstm", "policy.recurrent_size": 8})
    agent = PPO(
        config=config, observation_space=OBSERVATION_SPACES["box"], action_space=ACTION_SPACES["discrete"]
    )
    assert agent.policy.recurrent
    with pytest.raises(ExportError, match="recurrent policies is not supported"):
        agent.export_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_is_one_line_with_the_install_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` fail
    assert main(["export", str(SHIPPED / "lunarlander"), "-o", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert 'pip install -e ".[export]"' in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def knight_agent(steps: int = 2048) -> PPO:
    from ppo_envkit import load_env_module

    load_env_module(str(ROOT / "envs" / "knight.py"))
    config = TrainConfig().with_overrides(
        {"env.id": "KnightTour-v0", "run.eval_interval": 0, "env.num_envs": 8}
    )
    return PPO(config=config).learn(steps)


@pytest.mark.slow  # seconds of subprocesses or export: runs in the whole suite
def test_a_masked_agent_exports_its_mask_as_an_input(tmp_path):
    """KnightTour raises on an illegal action: the exported model must choose legal ones."""
    agent = knight_agent()
    assert agent.state.action_masks is True
    path = agent.export_onnx(tmp_path / "knight.onnx")
    model = OnnxAgent(path)
    assert [spec["name"] for spec in model.inputs][-1] == "action_mask"
    result = check_export(agent, path, steps=500)  # recorded with the masks in force
    assert result.mismatches == 0 and result.exact
    # without the mask the most likely action is often illegal; with it, never
    observations, masks = [], []
    import gymnasium as gym

    env = gym.make("KnightTour-v0")
    obs, info = env.reset(seed=3)
    for _ in range(300):
        observations.append(obs)
        masks.append(info["action_mask"])
        action = model.predict(stack_observations([obs]), np.asarray([info["action_mask"]]))[0]
        obs, _, terminated, truncated, info = env.step(action)  # raises if illegal
        if terminated or truncated:
            obs, info = env.reset()
    unmasked = agent.export_onnx(tmp_path / "plain.onnx", action_mask=False)
    plain = OnnxAgent(unmasked).predict(stack_observations(observations))
    assert (~np.stack(masks)[np.arange(len(plain)), plain]).any()
    with pytest.raises(ExportError, match="takes an action_mask input"):
        model.predict(stack_observations(observations))
    agent.close()


@pytest.mark.slow  # a training run and a second process
def test_masked_example_plays_without_torch_and_matches_eval(tmp_path):
    agent = knight_agent(1024)
    path = agent.export_onnx(tmp_path / "knight.onnx")
    # envs/knight.py registers itself through ppo_envkit, which the blocked process cannot import:
    # give it the same class, registered with plain gymnasium (as a deployment would)
    source = (ROOT / "envs" / "knight.py").read_text().replace("from ppo_envkit import register_env", "")
    (tmp_path / "knight.py").write_text(source.replace("@register_env(", "@(lambda *a, **k: (lambda c: c))("))
    (tmp_path / "register_knight.py").write_text(
        "import gymnasium as gym, knight\n"
        "gym.register('KnightTour-v0', entry_point=knight.KnightTour, max_episode_steps=100)\n"
    )
    example = ROOT / "examples" / "onnx_inference.py"
    argv = [
        str(example),
        str(path),
        "--episodes",
        "6",
        "--seed",
        "2",
        "--json",
        "--import",
        "register_knight",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    played = json.loads(proc.stdout)
    expected = evaluate(agent, 6, seed=2)
    assert played["returns"] == pytest.approx(expected.returns, abs=1e-9)
    agent.close()


@pytest.mark.slow  # a CNN export (the fast tier exports MLPs)
def test_a_cnn_agent_with_frame_stack_exports(tmp_path, masked_env_ids):
    config = TrainConfig().with_overrides(
        {"env.id": masked_env_ids["spot_cf"], "env.frame_stack": 2, "env.num_envs": 4, "ppo.n_steps": 16,
         "ppo.minibatch_size": 32, "policy.cnn_features": 32, "run.eval_interval": 0}
    )  # fmt: skip
    agent = PPO(config=config).learn(256)
    assert agent.policy.encoder is not None
    path = agent.export_onnx(tmp_path / "spot.onnx", value=True)
    model = OnnxAgent(path)
    assert model.inputs[0]["shape"] == [2, 3, 12, 12] and model.metadata["frame_stack"] == "2"
    result = check_export(agent, path, steps=200)
    assert result.mismatches == 0
    agent.close()
