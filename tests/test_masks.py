"""Action masks end to end: read from the environment, validated, respected in training,
evaluation, replay, predict and the checker, saved and resumed exactly.

The masked environments of tests/masked_envs.py raise on an illegal action, so a run that
completes sent none.
"""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig, evaluate, load_agent
from ppo_envkit.cli import main
from ppo_envkit.environments.checker import check_environment
from ppo_envkit.environments.masks import mask_size, sample_legal, to_flat_mask
from ppo_envkit.errors import ActionMaskError

from .resume import assert_resume_is_exact

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def config(env_id: str, **extra) -> TrainConfig:
    overrides = {
        "env.id": env_id,
        "env.num_envs": 4,
        "ppo.n_steps": 32,
        "ppo.minibatch_size": 64,
        "ppo.n_epochs": 4,
        "run.seed": 3,
        "run.eval_interval": 0,
        **extra,
    }
    return TrainConfig().with_overrides(overrides)


# ----------------------------------------------------------------------------- the layout


def test_flat_layout_of_each_space():
    assert mask_size(spaces.Discrete(5)) == 5
    assert mask_size(spaces.MultiDiscrete([2, 3])) == 5
    assert mask_size(spaces.MultiBinary(3)) == 6
    assert mask_size(spaces.MultiBinary((2, 2))) == 8
    assert mask_size(spaces.Box(-1, 1, (2,))) is None
    md = spaces.MultiDiscrete([2, 3])
    flat = to_flat_mask([np.array([True, False]), np.array([0, 1, 1])], md, "here")
    assert flat.tolist() == [True, False, False, True, True]
    pairs = to_flat_mask(
        np.array([[True, False], [True, True], [False, True]]), spaces.MultiBinary(3), "here"
    )
    assert pairs.tolist() == [True, False, True, True, False, True]


@pytest.mark.parametrize(
    ("space", "mask", "message"),
    [
        (spaces.Discrete(3), np.zeros(3, bool), "allows no action"),
        (spaces.Discrete(3), np.ones(4, bool), r"shape \(4,\).*needs 3 values"),
        (spaces.Discrete(3), np.ones(3, np.float32), "dtype float32; it must hold booleans"),
        (spaces.Discrete(3), np.array([0, 2, 1]), "integers other than 0 and 1"),
        (spaces.MultiDiscrete([2, 2]), np.array([True, True, False, False]), "no action in dimension 1"),
        (spaces.MultiBinary(2), np.array([True, True, False, False]), "no action in dimension 1"),
        (spaces.Box(-1, 1, (2,)), np.ones(2, bool), "cannot be masked"),
    ],
)
def test_bad_masks_are_one_line_errors(space, mask, message):
    with pytest.raises(ActionMaskError, match=message) as info:
        to_flat_mask(mask, space, "after step 3")
    assert "\n" not in str(info.value) and "after step 3" in str(info.value)


@pytest.mark.parametrize(
    "space", [spaces.Discrete(6, start=2), spaces.MultiDiscrete([3, 4], start=[1, 0]), spaces.MultiBinary(4)]
)
def test_sample_legal_only_draws_legal_actions(space):
    rng = np.random.default_rng(0)
    groups = {spaces.Discrete: [6], spaces.MultiDiscrete: [3, 4], spaces.MultiBinary: [2] * 4}[type(space)]
    for _ in range(200):
        parts = []
        for n in groups:
            m = rng.random(n) < 0.4
            m[rng.integers(n)] = True
            parts.append(m)
        mask = np.concatenate(parts)
        action = sample_legal(space, mask, rng)
        assert space.contains(action)
        if isinstance(space, spaces.Discrete):
            assert mask[action - space.start]
        elif isinstance(space, spaces.MultiDiscrete):
            idx = np.asarray(action) - space.start + np.array([0, 3])
            assert mask[idx].all()
        else:
            assert mask.reshape(-1, 2)[np.arange(4), action].all()


# ----------------------------------------------------------------------------- training


@pytest.mark.slow  # 6k-step learning runs
@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("pick", {}),
        ("pick_info", {}),
        ("multi", {}),
        ("binary", {}),
        ("pick", {"env.vectorization": "async", "env.num_envs": 2}),
        ("multi", {"env.vectorization": "async", "env.num_workers": 2}),
    ],
    ids=["discrete-method", "discrete-info", "multidiscrete-list", "multibinary", "async", "sharded"],
)
def test_masked_training_never_sends_an_illegal_action_and_learns(masked_env_ids, name, extra):
    """Each of these environments raises on an illegal action; random legal play scores about 0."""
    agent = PPO(config=config(masked_env_ids[name], **extra))
    before = evaluate(agent, 40, seed=100).mean_return
    agent.learn(6000)
    assert agent.state.action_masks  # the copies gave masks, and the rollouts stored them
    after = evaluate(agent, 40, seed=100).mean_return
    agent.close()
    assert after > before + 1.0, (before, after)


def test_masks_can_be_turned_off(masked_env_ids):
    agent = PPO(config=config(masked_env_ids["pick"], **{"env.action_masks": "off"}))
    with pytest.raises(Exception, match="illegal action"):  # the environment's own error
        agent.learn(2000)
    agent.close()


@pytest.mark.parametrize("kind", ["empty", "size", "float"])
def test_a_bad_mask_stops_training_with_one_line_naming_the_step(masked_env_ids, kind):
    agent = PPO(config=config(masked_env_ids[f"bad_{kind}"]))
    with pytest.raises(
        ActionMaskError,
        match=r"at training step [0-9,]+: action mask from action_masks\(\) after step\(\) \(step 3 of",
    ) as info:
        agent.learn(1000)
    agent.close()
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_mask_in_one_line(masked_env_ids, tmp_path, capsys):
    code = main(
        ["train", masked_env_ids["bad_empty"], "--total-timesteps", "500", "--run-dir", str(tmp_path / "r"),
         "--no-progress", "--set", "run.eval_interval=0"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "allows no action" in err and "Traceback" not in err


def test_predict_respects_masks_single_and_batched(masked_env_ids):
    agent = PPO(config=config(masked_env_ids["pick"]))
    obs = np.zeros((8, 12), np.float32)
    rng = np.random.default_rng(0)
    masks = rng.random((8, 6)) < 0.3
    masks[np.arange(8), rng.integers(0, 6, 8)] = True
    for deterministic in (True, False):
        actions = agent.predict(obs, deterministic=deterministic, action_mask=masks)
        assert masks[np.arange(8), actions].all()
        single = agent.predict(obs[0], deterministic=deterministic, action_mask=masks[0])
        assert masks[0, single]
    with pytest.raises(ActionMaskError, match="allows no action"):
        agent.predict(obs[0], action_mask=np.zeros(6, bool))
    with pytest.raises(ActionMaskError, match="needs 6 values"):
        agent.predict(obs, action_mask=np.ones((8, 5), bool))
    decision = agent.policy_step(obs[0], action_mask=masks[0])
    assert decision["action_mask"].tolist() == masks[0].tolist()
    assert np.all(decision["probs"][~masks[0]] == 0.0)
    agent.close()


def test_resume_with_masks_equals_an_unbroken_run(masked_env_ids, tmp_path):
    assert_resume_is_exact(
        config(masked_env_ids["multi"], **{"run.total_timesteps": 128 * 5}), tmp_path / "r"
    )


def test_saved_masked_agent_evaluates_and_replays_legally(masked_env_ids, tmp_path):
    from ppo_envkit.viewer import Viewer

    agent = PPO(config=config(masked_env_ids["pick"])).learn(1024)
    path = agent.save(tmp_path / "agent")
    agent.close()
    loaded = load_agent(str(path))
    result = evaluate(loaded, 20, deterministic=False, seed=5)  # sampling: any illegal draw would raise
    assert result.episodes == 20
    viewer = Viewer(loaded, headless=True, deterministic=False)
    pane = viewer.panes[0]
    for _ in range(25):  # through episode ends: every decision is legal and carries its mask
        viewer.tick(1)
        if pane.decision is not None:
            mask = pane.decision["action_mask"]
            assert mask is not None and mask[int(pane.decision["action"])]
    frame = viewer.frame_array()
    viewer.close()
    assert frame.ndim == 3


def test_checker_finds_mask_mistakes_and_steps_legally(masked_env_ids):
    for name in ("pick", "pick_info", "multi", "binary"):
        report = check_environment(masked_env_ids[name], steps=300)
        assert not [f for f in report.findings if f.severity == "error"], (name, report.findings)
        assert report.steps == 300  # no illegal action sent (they raise)
    for kind, text in (("empty", "allows no action"), ("size", "needs 6 values"), ("float", "dtype float32")):
        report = check_environment(masked_env_ids[f"bad_{kind}"])
        found = [f for f in report.findings if f.code == "action-mask"]
        assert found and text in found[0].what and "step 3" in found[0].where, report.findings
        assert not [f for f in report.findings if f.code == "step-exception"], "stepped on with a bad mask"


def test_overlay_shows_legal_actions_and_greys_or_counts_the_masked_ones():
    from ppo_envkit.viewer.decision import decision_view
    from ppo_envkit.viewer.overlay import MAX_BARS, _bar_rows

    mask = np.zeros(25, bool)
    mask[[3, 17]] = True
    probs = np.where(mask, 0.5, 0.0)
    decision = {"action": 17, "probs": probs, "action_mask": mask}
    _, groups, _ = decision_view(decision, spaces.Discrete(25))
    assert groups[0].legal.tolist() == mask.tolist()
    assert _bar_rows(groups[0]) == ([3, 17], 23)  # many actions: the legal ones, and a count
    few = {"action": 1, "probs": np.array([0.0, 1.0, 0.0]), "action_mask": np.array([False, True, True])}
    group = decision_view(few, spaces.Discrete(3))[1][0]
    assert _bar_rows(group) == ([0, 1, 2], 0) and not group.legal[0]  # few: all, the masked greyed
    assert MAX_BARS < 25
