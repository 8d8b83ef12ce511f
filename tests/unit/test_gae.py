"""GAE against a naive per-episode reference, on real rollouts with termination and truncation."""

from __future__ import annotations

import numpy as np
import torch

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.algo.collector import Collector
from ppo_envkit.algo.context import RankContext
from ppo_envkit.algo.rollout import compute_gae
from ppo_envkit.parallel.collectives import SingleProcess

GAMMA, LAM = 0.9, 0.8


def naive_advantages(rewards, values, next_values, terminated, ended, gamma, lam):
    """Per copy, per episode segment: A_t = sum_l (gamma*lam)^l delta_{t+l}, written without recursion."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for i in range(N):
        # split copy i's steps into segments that end at an episode end or the rollout end
        segments, start = [], 0
        for t in range(T):
            if ended[t, i] or t == T - 1:
                segments.append(range(start, t + 1))
                start = t + 1
        for seg in segments:
            deltas = {
                t: rewards[t, i] + gamma * (0.0 if terminated[t, i] else next_values[t, i]) - values[t, i]
                for t in seg
            }
            for t in seg:
                adv[t, i] = sum((gamma * lam) ** (k - t) * deltas[k] for k in seg if k >= t)
    return adv


def test_compute_gae_matches_reference_on_random_data():
    rng = np.random.default_rng(0)
    T, N = 13, 4
    rewards, values, next_values = (rng.normal(size=(T, N)) for _ in range(3))
    terminated = rng.random((T, N)) < 0.15
    truncated = (rng.random((T, N)) < 0.15) & ~terminated
    ended = terminated | truncated
    adv, ret = compute_gae(
        *(torch.tensor(x, dtype=torch.float64) for x in (rewards, values, next_values)),
        torch.tensor(terminated),
        torch.tensor(ended),
        GAMMA,
        LAM,
    )
    expected = naive_advantages(rewards, values, next_values, terminated, ended, GAMMA, LAM)
    np.testing.assert_allclose(adv.numpy(), expected, rtol=1e-10)
    np.testing.assert_allclose(ret.numpy(), expected + values, rtol=1e-10)


def test_gae_terminal_does_not_bootstrap_and_truncation_does():
    rewards = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[0.5, 0.5]])
    next_values = torch.tensor([[10.0, 10.0]])
    terminated = torch.tensor([[True, False]])
    ended = torch.tensor([[True, True]])  # copy 0 terminated, copy 1 truncated
    adv, _ = compute_gae(rewards, values, next_values, terminated, ended, 0.5, 1.0)
    assert adv[0, 0].item() == 1.0 - 0.5
    assert adv[0, 1].item() == 1.0 + 0.5 * 10.0 - 0.5


def _collect_countdown(env_id, n_steps=23, num_envs=3, iterations=2, **overrides):
    """Collect rollouts on the Countdown env with a Collector, keeping what each one recorded."""
    config = TrainConfig().with_overrides(
        {
            "env.id": env_id,
            "env.num_envs": num_envs,
            "ppo.n_steps": n_steps,
            "ppo.gamma": GAMMA,
            "ppo.gae_lambda": LAM,
            "run.seed": 3,
            "env.normalize_obs": False,  # the checks read raw observations
            **overrides,
        }
    )
    agent = PPO(config=config)
    collector = Collector(RankContext(agent.policy, config, agent.generator, SingleProcess()))
    collector.start(iteration=0, num_timesteps=0)
    results = []
    for i in range(iterations):
        start_obs_norm = collector.next_obs.clone()
        rollout = collector.collect(num_timesteps=i * n_steps * num_envs)
        fields = ("obs", "values", "rewards", "terminated", "episode_end", "truncated", "truncated_values")
        recorded = {k: getattr(rollout, k).clone() for k in fields}
        results.append((start_obs_norm, recorded, rollout.last_values.clone()))
        rollout.compute_advantages(GAMMA, LAM)
        recorded["advantages"] = rollout.advantages.clone()
    return agent.policy, collector, results


def test_rollout_gae_matches_reference_with_termination_truncation_and_boundary(toy_env_ids):
    _, collector, results = _collect_countdown(toy_env_ids["countdown"])
    collector.close()
    assert collector.time_limit.value == "bootstrap"  # the default (auto) for a Gymnasium environment
    seen_term = seen_trunc = 0
    for start_obs, buf, last_values in results:
        # each rollout starts from the observation the previous one ended on
        assert torch.equal(buf["obs"][0], start_obs)
        terminated, ended, truncated = buf["terminated"], buf["episode_end"], buf["truncated"]
        seen_term += int(terminated.sum())
        seen_trunc += int(truncated.sum())
        # truncation flags are exactly the episode ends that are not terminations
        assert torch.equal(truncated, ended & ~terminated)
        # the Countdown obs after an episode's last step is [steps/10, tag]; truncation happens at 6 steps
        for t, n in torch.nonzero(truncated):
            assert abs(buf["obs"][t, n, 0].item() - 0.5) < 1e-6, "truncation must come after 6 steps"
        T = buf["values"].shape[0]
        # naive next values: V(next obs in the buffer), V(last obs) at the end, V(final obs) when truncated
        next_values = torch.cat([buf["values"][1:], last_values[None]], 0)
        next_values = torch.where(truncated, buf["truncated_values"], next_values)
        expected = naive_advantages(
            buf["rewards"].numpy(),
            buf["values"].numpy(),
            next_values.numpy(),
            terminated.numpy(),
            ended.numpy(),
            GAMMA,
            LAM,
        )
        np.testing.assert_allclose(buf["advantages"].numpy(), expected, rtol=1e-5, atol=1e-5)
        assert T == 23
    assert seen_term > 0 and seen_trunc > 0, "the rollout must contain both kinds of episode end"


def test_truncation_bootstraps_from_the_final_observation_not_the_reset_one(toy_env_ids):
    """V(final obs) is stored for truncated steps; it differs from V(reset obs) on this env."""
    policy, collector, results = _collect_countdown(toy_env_ids["countdown"], iterations=1)
    collector.close()
    _, buf, _ = results[0]
    truncated = buf["truncated"]
    assert truncated.any()
    with torch.inference_mode():
        for t, n in torch.nonzero(truncated):
            final_obs = torch.tensor([0.6, buf["obs"][t, n, 1].item()])  # one step after [0.5, tag]
            expected = policy.value(final_obs[None])[0]
            torch.testing.assert_close(buf["truncated_values"][t, n], expected, atol=1e-4, rtol=1e-4)
            if t + 1 < buf["obs"].shape[0]:
                reset_value = buf["values"][t + 1, n]
                assert not torch.isclose(reset_value, expected, atol=1e-6)


def test_time_limit_terminal_ends_truncated_episodes_without_bootstrap(toy_env_ids):
    """``env.time_limit=terminal``: the same episodes, but a time limit ends the task: every
    episode end is a termination, nothing is bootstrapped, GAE matches the reference so."""
    _, collector, results = _collect_countdown(toy_env_ids["countdown"], **{"env.time_limit": "terminal"})
    collector.close()
    _, bootstrap_collector, bootstrap_results = _collect_countdown(toy_env_ids["countdown"])
    bootstrap_collector.close()
    for (_, buf, last_values), (_, other, _) in zip(results, bootstrap_results, strict=True):
        ended = buf["episode_end"]
        assert torch.equal(ended, other["episode_end"])  # the same episodes
        assert bool((other["truncated"]).any()), "the rollout must contain time limits"
        assert torch.equal(buf["terminated"], ended) and not buf["truncated"].any()
        next_values = torch.cat([buf["values"][1:], last_values[None]], 0)
        expected = naive_advantages(
            buf["rewards"].numpy(),
            buf["values"].numpy(),
            next_values.numpy(),
            ended.numpy(),
            ended.numpy(),
            GAMMA,
            LAM,
        )
        np.testing.assert_allclose(buf["advantages"].numpy(), expected, rtol=1e-5, atol=1e-5)
