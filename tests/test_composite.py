"""Composite (Tuple/Dict) action spaces end to end: masks on their discrete parts, training,
predict, evaluation, exact resume, the checker and the viewer.

``PickAndAim`` raises on an illegal pick, so a run that completes sent none.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, evaluate, load_agent, register_env
from ppo_envkit.environments.masks import mask_size, sample_legal, to_flat_mask, user_masks
from ppo_envkit.environments.registry import unregister_env
from ppo_envkit.errors import ActionMaskError

from .resume import assert_resume_is_exact


class PickAndAim(gym.Env):
    """Dict action: ``pick`` one of 4 items (a random half legal, mask in info as
    ``{"pick": ...}``), ``aim`` a Box(1) that should match the picked item's target, and
    ``flags`` a MultiBinary(2) that is free. Reward: item value - (aim - target)^2."""

    N = 4

    def __init__(self, render_mode=None, structured=True):
        self.render_mode = render_mode
        self.structured = structured
        self.observation_space = spaces.Box(-1.0, 1.0, (3 * self.N,), np.float32)
        self.action_space = spaces.Dict(
            {
                "pick": spaces.Discrete(self.N),
                "aim": spaces.Box(-1.0, 1.0, (1,)),
                "flags": spaces.MultiBinary(2),
            }
        )
        self._values = np.zeros(self.N, np.float32)
        self._targets = np.zeros(self.N, np.float32)
        self._legal = np.ones(self.N, bool)

    def _draw(self):
        self._values = self.np_random.uniform(-1, 1, self.N).astype(np.float32)
        self._targets = self.np_random.uniform(-1, 1, self.N).astype(np.float32)
        self._legal = np.zeros(self.N, bool)
        self._legal[self.np_random.choice(self.N, self.N // 2, replace=False)] = True

    def _info(self):
        flags = np.ones(4, bool)
        if self.structured:
            return {"action_mask": {"pick": self._legal.copy(), "flags": flags}}
        return {"action_mask": np.concatenate([flags, self._legal])}  # the space's order: aim, flags, pick

    def _obs(self):
        return np.concatenate([self._values, self._targets, self._legal.astype(np.float32)])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._draw()
        return self._obs(), self._info()

    def step(self, action):
        assert list(action) == list(self.action_space.spaces), action  # the space's key order
        pick = int(action["pick"])
        if not self._legal[pick]:
            raise ValueError(f"illegal pick {pick}; legal: {np.flatnonzero(self._legal).tolist()}")
        aim = float(np.asarray(action["aim"]).reshape(-1)[0])
        reward = float(self._values[pick]) - (aim - float(self._targets[pick])) ** 2
        self._draw()
        return self._obs(), reward, False, False, self._info()


@pytest.fixture
def pick_aim():
    ids = {"structured": "CompositePickAim-v0", "flat": "CompositePickAimFlat-v0"}
    register_env(ids["structured"], PickAndAim, max_episode_steps=10, overwrite=True)
    register_env(ids["flat"], PickAndAim, max_episode_steps=10, overwrite=True, kwargs={"structured": False})
    yield ids
    for env_id in ids.values():
        unregister_env(env_id)


def config(env_id: str, **extra) -> TrainConfig:
    overrides = {
        "env.id": env_id,
        "env.num_envs": 4,
        "ppo.n_steps": 32,
        "ppo.minibatch_size": 64,
        "ppo.n_epochs": 2,
        "run.seed": 3,
        "run.eval_interval": 0,
        **extra,
    }
    return TrainConfig().with_overrides(overrides)


SPACE = spaces.Tuple(
    (spaces.Discrete(3), spaces.Box(-1, 1, (2,)), spaces.Dict({"m": spaces.MultiDiscrete([2, 3])}))
)


def test_composite_mask_layout_flat_or_structured():
    assert mask_size(SPACE) == 3 + 5
    assert mask_size(spaces.Tuple((spaces.Box(-1, 1, (2,)),))) is None
    flat = np.array([1, 0, 1, 1, 0, 0, 0, 1], bool)
    assert to_flat_mask(flat, SPACE, "x").tolist() == flat.tolist()
    structured = (np.array([1, 0, 1], bool), None, {"m": [np.array([1, 0], bool), np.array([0, 0, 1], bool)]})
    assert to_flat_mask(structured, SPACE, "x").tolist() == flat.tolist()
    with pytest.raises(ActionMaskError, match=r"part 0"):
        to_flat_mask((np.zeros(3, bool), None, {"m": flat[3:]}), SPACE, "x")
    left_out = to_flat_mask((np.array([0, 1, 0], bool),), SPACE, "x")  # parts left out: all legal
    assert left_out.tolist() == [False, True, False] + [True] * 5
    with pytest.raises(ActionMaskError, match=r"needs 8 values .*0: 3, 2/m: 5"):
        to_flat_mask(np.ones(7, bool), SPACE, "x")
    batch = user_masks(np.stack([flat, flat]), SPACE, 2)
    assert batch.shape == (2, 8)


def test_sample_legal_composite():
    rng = np.random.default_rng(0)
    mask = np.array([0, 1, 0, 1, 0, 0, 1, 0], bool)
    for _ in range(20):
        action = sample_legal(SPACE, mask, rng)
        assert SPACE.contains(action)
        assert action[0] == 1 and action[2]["m"].tolist() == [0, 1]


@pytest.mark.parametrize(
    ("kind", "dist"),
    [("structured", "auto"), ("flat", "auto"), ("structured", "beta"), ("structured", "gaussian-censored")],
)
def test_masked_composite_training_predict_and_evaluation(pick_aim, kind, dist, tmp_path):
    agent = PPO(config=config(pick_aim[kind], **{"policy.box_distribution": dist})).learn(640)
    assert agent.state.action_masks
    obs = np.zeros((3, 12), np.float32)
    picks = np.array([[1, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0]], bool)
    masks = np.concatenate([np.ones((3, 4), bool), picks], 1)  # flags, pick: the space's order
    for deterministic in (True, False):
        batch = agent.predict(obs, deterministic=deterministic, action_mask=masks)
        assert list(batch) == ["aim", "flags", "pick"] and batch["pick"].shape == (3,)
        assert picks[np.arange(3), batch["pick"]].all()
        one = agent.predict(obs[0], deterministic=deterministic, action_mask={"pick": picks[0]})
        assert agent.action_space.contains(one) and one["pick"] == 0
    path = agent.save(tmp_path / "agent")
    agent.close()
    loaded = load_agent(str(path))
    result = evaluate(loaded, 8, deterministic=False, seed=5)  # an illegal draw would raise
    assert result.episodes == 8


@pytest.mark.slow  # a 3,000-step learning run
def test_composite_training_learns_the_conditional_aim(pick_aim):
    """(A short run: the return rises from random play.)"""
    agent = PPO(config=config(pick_aim["structured"], **{"policy.composite": "conditional"}))
    before = evaluate(agent, 20, seed=100).mean_return
    agent.learn(3000)
    after = evaluate(agent, 20, seed=100).mean_return
    agent.close()
    assert after > before + 1.0, (before, after)


@pytest.mark.parametrize("std", ["fixed", "state", "beta"])
def test_resume_of_a_composite_agent_equals_an_unbroken_run(pick_aim, tmp_path, std):
    overrides = {
        "run.total_timesteps": 128 * 5,
        "policy.composite": "conditional",
        **({"policy.box_distribution": "beta"} if std == "beta" else {"policy.composite_std": std}),
    }
    assert_resume_is_exact(config(pick_aim["structured"], **overrides), tmp_path / "r")


def test_sharded_workers_take_composite_actions_and_train_as_one_process(pick_aim):
    """A Dict action with a mask per part, stepped in two shards (one in a worker process): the
    same weights as stepping every copy in this process."""
    import torch

    weights = []
    for setup in ({}, {"env.vectorization": "async", "env.num_workers": 2}):
        agent = PPO(config=config(pick_aim["structured"], **{"run.total_timesteps": 256}, **setup))
        try:
            agent.learn()
            weights.append(agent.policy.state_dict())
        finally:
            agent.close()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_checker_steps_a_masked_composite_environment_legally(pick_aim):
    from ppo_envkit.environments.checker import check_environment

    for env_id in pick_aim.values():
        report = check_environment(env_id, steps=200)
        assert not [f for f in report.findings if f.severity == "error"], (env_id, report.findings)
        assert report.steps == 200  # no illegal pick sent (they raise)


def test_viewer_draws_each_part_named_by_its_key(pick_aim):
    import sys

    from ppo_envkit.viewer import Viewer
    from ppo_envkit.viewer.decision import decision_view

    agent = PPO(config=config(pick_aim["structured"]))
    obs = np.zeros(12, np.float32)
    decision = agent.policy_step(obs, action_mask={"pick": np.array([0, 1, 1, 0], bool)})
    text, bars, gauges = decision_view(decision, agent.action_space)
    assert text.startswith("aim=") and " pick=" in text and " flags=" in text
    pick = [b for b in bars if b.title == "pick"]
    assert pick and pick[0].legal.tolist() == [False, True, True, False]
    assert [g.label for g in gauges] == ["aim.a0"]
    agent.close()
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "envs"))
    import golf  # noqa: F401  (registers Golf-v0)

    golfer = PPO(config=config("Golf-v0"))
    viewer = Viewer(golfer, headless=True)
    for _ in range(5):
        viewer.tick(1)
    decision = viewer.panes[0].decision
    assert decision is not None and {"0.probs", "1/0.mean", "1/2.std"} <= set(decision)
    assert viewer.frame_array().ndim == 3
    viewer.close()
    golfer.close()


@pytest.mark.slow  # tens of seconds of export under load
@pytest.mark.parametrize(
    ("composite", "std", "coords", "dist"),
    [
        ("independent", "fixed", "env", "gaussian"),
        ("conditional", "fixed", "env", "gaussian"),
        ("conditional", "state", "env", "gaussian"),
        ("independent", "state", "normalized", "gaussian"),
        ("conditional", "auto", "auto", "beta"),
    ],
)
def test_onnx_export_of_a_composite_agent_acts_as_predict(tmp_path, composite, std, coords, dist):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import torch

    from ppo_envkit.export.check import OnnxAgent, check_export, stack_observations

    obs_space = spaces.Box(-1.0, 1.0, (4,), np.float32)
    act_space = spaces.Dict(
        {
            "club": spaces.Discrete(3, start=1),
            "power": spaces.Tuple((spaces.Box(-1, 1, (1,)), spaces.Box(0, 2, (2,)), spaces.Box(-1, 1, (1,)))),
            "keys": spaces.MultiBinary(2),
            "gear": spaces.MultiDiscrete([2, 3]),
        }
    )
    config = TrainConfig().with_overrides(
        {
            "policy.hidden_sizes": [16, 16],
            "policy.composite": composite,
            "policy.composite_std": std,
            "policy.box_coords": coords,
            "policy.box_distribution": dist,
        }
    )
    agent = PPO(config=config, observation_space=obs_space, action_space=act_space)
    with torch.no_grad():
        for part in agent.policy.head.parts:
            part.out.weight.mul_(300.0)  # actions vary, and often hit the Box bounds
    path = agent.export_onnx(tmp_path / "m.onnx", distribution=True)
    obs_space.seed(0)
    observations = [obs_space.sample() for _ in range(500)]
    result = check_export(agent, path, observations=observations)  # raises on any mismatch
    assert result.observations == 500 and result.mismatches == 0
    model = OnnxAgent(path)
    names = [o.name for o in model.session.get_outputs()]
    assert names[:5] == ["action/club", "action/gear", "action/keys", "action/power/0", "action/power/1"]
    assert "probs/club" in names and ("alpha/power/2" if dist == "beta" else "mean/power/2") in names
    batch = stack_observations(observations[:64])
    action, expected = model.predict(batch), agent.predict(batch)
    assert list(action) == list(act_space.spaces) and isinstance(action["power"], tuple)
    np.testing.assert_array_equal(action["club"], expected["club"])
    assert len(set(action["club"].tolist())) > 1
    np.testing.assert_allclose(action["power"][1], expected["power"][1], atol=1e-5)
    assert act_space.contains(agent.policy.head.row(action, 0))
    if dist == "beta":  # the exported concentrations are the policy's
        x = agent.policy.obs_norm(agent.policy.obs_to_tensor(batch))
        described = agent.policy.head.describe(agent.policy.actor_params(x))
        outputs = dict(zip(names, model.run(batch), strict=True))
        np.testing.assert_allclose(outputs["beta/power/1"], described["power/1.beta"], rtol=1e-4)
    if std == "state":  # the exported spread is the policy's, state by state
        x = agent.policy.obs_norm(agent.policy.obs_to_tensor(batch))
        described = agent.policy.head.describe(agent.policy.actor_params(x))
        outputs = dict(zip(names, model.run(batch), strict=True))
        np.testing.assert_allclose(outputs["std/power/1"], described["power/1.std"], rtol=1e-4)
        assert len(np.unique(outputs["std/power/1"].round(3))) > 1  # not the same in every state
        # mean and spread in the environment's units (power/1 is a box [0, 2])
        np.testing.assert_allclose(outputs["mean/power/1"], described["power/1.mean"], rtol=1e-4, atol=1e-6)


def test_the_numpy_fast_path_falls_back_to_autograd_for_composite_heads(pick_aim):
    from ppo_envkit.algo.fastpath import NumpyBackend

    agent = PPO(config=config(pick_aim["structured"]))
    assert not NumpyBackend.supports(agent.policy)  # no registered gradient: autograd trains it
    agent.close()


# --------------------------------------------------------------------------- parametrized spaces

BOX1 = spaces.Box(-1.0, 1.0, (1,))
PARAMETRIZED = {
    "tuple": spaces.Tuple((spaces.Discrete(3), spaces.Tuple((spaces.Box(-1, 1, (2,)), BOX1, BOX1)))),
    "dict": spaces.Dict({"club": spaces.Discrete(2), "power": spaces.Dict({"a": BOX1, "b": BOX1})}),
}
NOT_PARAMETRIZED = {
    "box-not-grouped": spaces.Tuple((spaces.Discrete(2), BOX1, BOX1)),
    "group-of-the-wrong-size": spaces.Tuple((spaces.Discrete(3), spaces.Tuple((BOX1, BOX1)))),
    "group-not-all-box": spaces.Tuple((spaces.Discrete(2), spaces.Tuple((BOX1, spaces.Discrete(2))))),
    "no-choice": spaces.Tuple((BOX1, spaces.Tuple((BOX1, BOX1)))),
    "the-mask-test-space": SPACE,
}


@pytest.mark.parametrize("name", list(PARAMETRIZED) + list(NOT_PARAMETRIZED))
def test_parameter_entry_finds_the_layout_of_a_parametrized_space(name):
    from ppo_envkit.algo.heads import parameter_entry

    expected = {"tuple": 1, "dict": "power"}.get(name)
    assert parameter_entry({**PARAMETRIZED, **NOT_PARAMETRIZED}[name]) == expected


@pytest.mark.parametrize("name", list(PARAMETRIZED))
def test_by_default_only_the_chosen_parameters_count(name):
    """``composite_params=auto`` (the default): on a parametrized space the parameters of the choices
    not taken get no gradient and do not change the log-probability; ``all`` keeps them."""
    import torch

    from ppo_envkit.algo.heads import make_head

    space = PARAMETRIZED[name]
    assert TrainConfig().policy.composite_params == "auto"
    torch.manual_seed(0)
    auto = make_head(space, 8)
    every = make_head(space, 8, composite_params="all", composite_std="state")  # the same network
    assert auto.chosen_params and not every.chosen_params
    every.load_state_dict(auto.state_dict())
    params = auto(torch.randn(16, 8)).detach().requires_grad_(True)
    actions = auto.sample(params, torch.Generator().manual_seed(1)).detach()
    actions[:, auto.choice] = 0.0  # choice 0 everywhere
    auto.log_prob(params, actions).sum().backward()
    grads = params.grad.split(auto.param_sizes, -1)
    first, *others = auto.group
    assert (grads[first] != 0).any() and all((grads[i] == 0).all() for i in others)
    # moving an unchosen parameter changes the log-probability of 'all' only
    moved = actions.clone()
    moved[:, -1] += 0.5  # the last parameter belongs to the last choice
    with torch.no_grad():
        torch.testing.assert_close(auto.log_prob(params, moved), auto.log_prob(params, actions))
        assert (every.log_prob(params, moved) != every.log_prob(params, actions)).all()


@pytest.mark.parametrize("name", list(NOT_PARAMETRIZED))
def test_by_default_a_space_without_the_layout_counts_every_part(name):
    from ppo_envkit.algo.heads import make_head

    head = make_head(NOT_PARAMETRIZED[name], 8)
    assert not head.chosen_params
    assert not any(getattr(part, "state_std", False) for part in head.parts)  # composite_std=auto: fixed


def test_an_agent_on_striker_trains_its_chosen_parameters_only():
    """The default settings on envs/striker.py (a parametrized space of Box(2), Box(1), Box(1))."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))
    from striker import Striker  # registers Striker-v0

    agent = PPO(config=config("Striker-v0", **{"run.total_timesteps": 256}))
    assert agent.policy.head.chosen_params and agent.policy.head.group == [1, 2, 3]
    assert all(agent.policy.head.parts[i].state_std for i in (1, 2, 3))  # composite_std=auto: state
    agent.learn(256)
    action = agent.predict(np.zeros(4, np.float32), deterministic=True)
    assert Striker().action_space.contains(action), action
    agent.close()


def test_striker_scores_a_close_shot_away_from_the_keeper_and_not_into_it():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "envs"))
    from striker import GOAL_X, Striker

    env = Striker()
    zero2, zero1 = np.zeros(2, np.float32), np.zeros(1, np.float32)
    goals = {"far corner": 0, "at the keeper": 0}
    for seed in range(50):
        for aim_far in (True, False):
            env.reset(seed=seed)
            env._ball = np.array([GOAL_X - 1.0, 0.0])
            left_is_far = env._keeper < 0  # shoot_left aims at y > 0
            aim = np.array([0.3], np.float32)  # y = 1.3 on the chosen side
            choice = (1 if left_is_far else 2) if aim_far else (2 if left_is_far else 1)
            params = (zero2, aim, zero1) if choice == 1 else (zero2, zero1, aim)
            _, reward, terminated, _, _ = env.step((choice, params))
            assert terminated and reward in (0.0, 1.0)
            goals["far corner" if aim_far else "at the keeper"] += int(reward)
    assert goals["far corner"] >= 45 and goals["at the keeper"] <= 40, goals


def test_the_first_choices_are_uniform_over_the_whole_parametrized_action_set():
    """A choice with more parameters starts with a larger probability (2 ** d: Box(2) beside
    two Box(1): 4 : 2 : 2), whatever the features; as many parameters keep equal
    probabilities, and so does ``composite_params=all``."""
    import torch

    from ppo_envkit.algo.heads import make_head

    torch.manual_seed(0)
    features = torch.randn(64, 8)
    head = make_head(PARAMETRIZED["tuple"], 8)
    probs = head.parts[head.choice].out(features).softmax(-1).mean(0)
    torch.testing.assert_close(probs, torch.tensor([0.5, 0.25, 0.25]), atol=0.02, rtol=0)
    for equal in (
        make_head(PARAMETRIZED["dict"], 8),
        make_head(PARAMETRIZED["tuple"], 8, composite_params="all"),
    ):
        probs = equal.parts[equal.choice].out(features).softmax(-1).mean(0)
        torch.testing.assert_close(probs, torch.full_like(probs, 1 / len(probs)), atol=0.02, rtol=0)
    # units do not count: [0, 100] beside [-1, 1] starts even (only dimensions count) ...
    units = spaces.Tuple((spaces.Discrete(2), spaces.Tuple((spaces.Box(0, 100, (1,)), BOX1))))
    head = make_head(units, 8)
    probs = head.parts[head.choice].out(features).softmax(-1).mean(0)
    torch.testing.assert_close(probs, torch.tensor([0.5, 0.5]), atol=0.02, rtol=0)
    # ... and 10 dimensions beside none start at most 16 : 1 apart
    many = spaces.Tuple(
        (spaces.Discrete(2), spaces.Tuple((spaces.Box(-1, 1, (10,)), spaces.Box(-1, 1, (0,)))))
    )
    head = make_head(many, 8)
    probs = head.parts[head.choice].out(features).softmax(-1).mean(0)
    torch.testing.assert_close(probs, torch.tensor([16 / 17, 1 / 17]), atol=0.02, rtol=0)


def test_moving_follows_the_published_rules():
    """examples/hybrid_moving.py (gym-hybrid's Moving-v0): the speed, turn and break of its README,
    the reward (distance gained - 0.001, +1 for a stop in the target, -1 on leaving the field), and
    a scripted driver that turns to the target, goes and brakes in time stops in it every time."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from hybrid_moving import Moving, MovingParametrized

    env = MovingParametrized()
    env.reset(seed=0)
    env._pos, env._target, env._theta = np.zeros(2), np.array([0.5, 0.0]), 0.0
    none = np.zeros(0, np.float32)
    obs, reward, *_ = env.step((0, (np.array([1.0], np.float32), np.zeros(1, np.float32), none)))
    assert obs[2] == 0.5 and np.isclose(obs[0], 0.0025) and np.isclose(reward, 0.0025 - 0.001)
    obs, *_ = env.step((1, (np.zeros(1, np.float32), np.array([0.5], np.float32), none)))
    assert np.isclose(np.arctan2(obs[4], obs[3]), np.pi / 4)
    obs, *_ = env.step((2, (np.zeros(1, np.float32), np.zeros(1, np.float32), none)))
    assert np.isclose(obs[2], 0.4)
    env._pos, env._speed = np.array([0.999, 0.0]), 10.0
    env._theta = 0.0
    *_, reward, terminated, _, info = env.step((0, (np.zeros(1, np.float32), np.zeros(1, np.float32), none)))
    assert terminated and reward == -1.0 and not info["goal"]

    def drive(o):
        x, y, v, c, s, tx, ty, d = o[:8]
        error = (np.arctan2(ty - y, tx - x) - np.arctan2(s, c) + np.pi) % (2 * np.pi) - np.pi
        braking = 0.005 * sum(v - 0.1 * k for k in range(1, int(v / 0.1) + 1))
        if v > 0 and (d <= braking + 0.05 or abs(error) > 0.3):
            return 2, 0.0
        if abs(error) > 0.05 and v == 0:
            return 1, float(np.clip(error / (np.pi / 2), -1, 1))
        return (0, 1.0) if d > braking + 0.1 and v < 3 else ((2, 0.0) if v > 0 else (0, 0.2))

    env = Moving()
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            choice, value = drive(obs)
            obs, reward, done, _, info = env.step((choice, np.array([value, value], np.float32)))
            total += reward
        assert info["goal"] and total > 1.0, (seed, total)


def _saved_before(pick_aim, path, key: str):
    """An agent file as written before the policy setting ``key`` existed: saved with ``auto``
    (checked), then the key removed, as such a file holds it."""
    import json

    from ppo_envkit.io.checkpoint import META_FILE

    agent = PPO(pick_aim["structured"], config=config(pick_aim["structured"]))
    agent.save(path)
    agent.close()
    meta_path = path / META_FILE
    meta = json.loads(meta_path.read_text())
    assert meta["config"]["policy"][key] == "auto"
    assert getattr(load_agent(path).config.policy, key) == "auto"
    del meta["config"]["policy"][key]  # what an agent saved before the setting holds
    meta_path.write_text(json.dumps(meta))
    return path


def test_an_agent_saved_before_box_coords_loads_in_the_env_units_it_trained_in(pick_aim, tmp_path):
    path = _saved_before(pick_aim, tmp_path / "a", "box_coords")
    assert load_agent(path).config.policy.box_coords == "env"


def test_an_agent_saved_before_box_distribution_loads_with_its_gaussian(pick_aim, tmp_path):
    from ppo_envkit.algo.heads import BetaHead, GaussianHead

    loaded = load_agent(_saved_before(pick_aim, tmp_path / "a", "box_distribution"))
    assert loaded.config.policy.box_distribution == "gaussian"
    box_parts = [p for p in loaded.policy.head.parts if isinstance(p.space, spaces.Box)]
    assert box_parts and all(type(p) is GaussianHead and not isinstance(p, BetaHead) for p in box_parts)
    loaded.close()
