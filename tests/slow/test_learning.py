"""Learning tests: short, seeded runs that must reach a return threshold."""

from __future__ import annotations

from ppo_envkit import PPO, TrainConfig, evaluate


def test_cartpole_reaches_475_deterministic():
    """The cartpole preset solves CartPole-v1 (max 500) in 100k steps, about 10 s here."""
    agent = PPO.from_preset("cartpole", overrides={"run.seed": 0})
    before = evaluate(agent, 10).mean_return
    agent.learn(100_000)
    agent.close()
    result = evaluate(agent, 20, seed=100)
    assert before < 100
    assert result.mean_return >= 475, result


def reach_config(env_id: str, **extra):
    return TrainConfig().with_overrides(
        {
            "env.id": env_id,
            "env.num_envs": 8,
            "ppo.n_steps": 64,
            "ppo.minibatch_size": 128,
            "ppo.n_epochs": 10,
            "ppo.learning_rate": 3e-3,
            "ppo.gamma": 0.9,
            "run.seed": 0,
            **extra,
        }
    )


def test_continuous_reach_target_learns(toy_env_ids):
    """ReachTarget: random policy about -16, optimal about -1.0; the threshold -2 needs real control."""
    config = reach_config(toy_env_ids["reach"])
    agent = PPO(config=config)
    before = evaluate(agent, 50, deterministic=False).mean_return
    agent.learn(20_000)
    agent.close()
    after = evaluate(agent, 50, seed=1)
    assert before < -10
    assert after.mean_return >= -2.0, after


def test_squashed_gaussian_learns_too(toy_env_ids):
    config = reach_config(toy_env_ids["reach"], **{"policy.squash": True})
    agent = PPO(config=config).learn(20_000)
    agent.close()
    assert evaluate(agent, 50, seed=1).mean_return >= -2.0


def test_dict_observations_and_multidiscrete_actions_learn(toy_env_ids):
    """DictObs rewards copying the Discrete 'mode' into action[0]: chance is 1/3 per step."""
    config = TrainConfig().with_overrides(
        {
            "env.id": toy_env_ids["dict"],
            "env.num_envs": 8,
            "ppo.n_steps": 32,
            "ppo.minibatch_size": 128,
            "ppo.n_epochs": 8,
            "ppo.learning_rate": 3e-3,
            "ppo.gamma": 0.5,
            "run.seed": 0,
        }
    )
    agent = PPO(config=config).learn(15_000)
    agent.close()
    result = evaluate(agent, 16, seed=1)
    assert result.mean_return >= 0.9 * 16, result  # 16-step episodes, 1 per correct copy
