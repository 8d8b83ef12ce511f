"""Evaluation during training: it changes nothing in the run, logs, keeps the best agent, stops."""

from __future__ import annotations

import csv

import pytest
import torch

from ppo_envkit import PPO, TrainConfig, load_agent
from ppo_envkit.algo.evaluation import MIN_AUTO_INTERVAL, EvalSchedule
from ppo_envkit.io.runlog import RunLogger


def _config(**overrides) -> TrainConfig:
    settings = {
        "env.id": "CartPole-v1",
        "env.num_envs": 4,
        "ppo.n_steps": 32,
        "ppo.minibatch_size": 64,
        "run.seed": 2,
        "run.eval_episodes": 3,
        **overrides,
    }
    return TrainConfig().with_overrides(settings)


def _weights(agent: PPO) -> torch.Tensor:
    return torch.cat([t.reshape(-1).double() for t in agent.policy.state_dict().values()])


def test_evaluations_do_not_change_the_run():
    without = PPO(config=_config(**{"run.eval_interval": 0})).learn(1024)
    with_evals = PPO(config=_config(**{"run.eval_interval": 256})).learn(1024)
    assert torch.equal(_weights(without), _weights(with_evals))
    assert "eval_return" not in without.last_metrics
    assert with_evals.last_metrics["eval_return"] > 0


def test_stochastic_evaluate_between_learn_calls_changes_nothing_and_repeats():
    """``agent.evaluate(deterministic=False)`` drew from the training generator: evaluating
    between two ``learn`` calls changed the weights after it, and the same call gave another
    result the next time."""
    plain = PPO(config=_config(**{"run.eval_interval": 0}))
    plain.learn(512)
    plain.learn(512)
    evaluated = PPO(config=_config(**{"run.eval_interval": 0}))
    evaluated.learn(512)
    first = evaluated.evaluate(3, deterministic=False, seed=7)
    again = evaluated.evaluate(3, deterministic=False, seed=7)
    other = evaluated.evaluate(3, deterministic=False, seed=8)
    evaluated.learn(512)
    assert torch.equal(_weights(plain), _weights(evaluated))
    assert first.returns == again.returns and first.returns != other.returns


def _rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "progress.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluations_are_logged_and_the_best_agent_kept(tmp_path):
    run = tmp_path / "run"
    agent = PPO(config=_config(**{"run.eval_interval": 384}))
    agent.learn(1280, logger=RunLogger(run, progress=False, tensorboard=False))
    evaluated = [r for r in _rows(run) if r["eval_return"]]
    # every 384 steps (three 128-step iterations) and at the end
    assert [int(r["timesteps"]) for r in evaluated] == [384, 768, 1152, 1280]
    assert all(float(r["eval_length"]) > 0 for r in evaluated)
    best = load_agent(str(run / "best"))
    best_return = max(float(r["eval_return"]) for r in evaluated)
    best_step = next(int(r["timesteps"]) for r in evaluated if float(r["eval_return"]) == best_return)
    assert best.num_timesteps == best_step


def test_stop_at_ends_training_at_the_evaluation_that_reaches_it():
    agent = PPO(config=_config(**{"run.eval_interval": 256, "run.stop_at": -1.0}))
    agent.learn(10_000)
    assert agent.num_timesteps == 256  # the first evaluation reaches any return above -1
    assert agent.last_metrics["eval_return"] >= -1.0


def test_stop_at_threshold_needs_a_reward_threshold(toy_env_ids):
    config = _config(**{"env.id": toy_env_ids["reach"], "run.stop_at": "threshold"})
    with pytest.raises(ValueError, match="declares no reward_threshold"):
        PPO(config=config).learn(128)


def test_auto_interval_keeps_evaluation_steps_near_two_and_a_half_percent():
    schedule = EvalSchedule(_config(**{"run.eval_episodes": 10}), None, start_step=0)
    assert schedule.next_at == MIN_AUTO_INTERVAL
    # 10 evaluation episodes of 500 steps: the next evaluation 40 x 5,000 steps later.
    assert schedule._interval(500.0) == 40 * 10 * 500
    assert schedule._interval(3.0) == MIN_AUTO_INTERVAL


def test_auto_interval_follows_the_evaluation_episodes():
    agent = PPO(config=_config(**{"run.eval_episodes": 2}))
    schedule = EvalSchedule(agent.config, None, start_step=0)
    metrics = schedule.after_iteration(agent.policy, agent.generator, MIN_AUTO_INTERVAL, final=False)
    assert metrics["eval_length"] > 0
    expected = max(MIN_AUTO_INTERVAL, int(40 * 2 * metrics["eval_length"]))
    assert schedule.next_at == MIN_AUTO_INTERVAL + expected
    schedule.close()
