"""Several agents (PettingZoo parallel environments) as rows of one shared policy:
AgentStack, per-agent GAE with deaths and joins, padding kept out of the loss, masks per row,
learning, exact resume, several ranks and vectorizations."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo")

from gymnasium import spaces
from pettingzoo import ParallelEnv

from ppo_envkit import PPO, TrainConfig, make_env, register_env
from ppo_envkit.algo.collector import Collector
from ppo_envkit.algo.context import RankContext
from ppo_envkit.algo.evaluator import Evaluator
from ppo_envkit.algo.learner import Learner, valid_minibatches
from ppo_envkit.environments.registry import unregister_env
from ppo_envkit.errors import ConfigError
from ppo_envkit.parallel.collectives import SingleProcess

from .resume import assert_resume_is_exact

GAMMA, LAM = 0.9, 0.8
LENGTH = 7  # steps of a scripted episode (then every agent left is truncated)
#: agent -> (step it joins, step it is gone by): a0 is truncated at LENGTH, a1 dies at step 3,
#: a2 joins after step 2 and dies at step 5
SCRIPT = {"a0": (0, LENGTH), "a1": (0, 3), "a2": (2, 5)}
NAMES = list(SCRIPT)
#: every agent live for the whole episode and all truncated at once at LENGTH (as MPE's
#: simple_spread at max_cycles): each row must bootstrap from its own agent's final observation
TOGETHER = {a: (0, LENGTH) for a in NAMES}


def script_obs(k: int, s: int) -> np.ndarray:
    return np.array([k, s / 10, 1.0], np.float32)


def script_reward(k: int, s: int) -> float:
    """Agent ``k``'s reward for the action it took at episode step ``s``."""
    return 0.1 * (k + 1) + 0.05 * s


def legal(k: int, s: int) -> int:
    return (k + s) % 2


class Scripted(ParallelEnv):
    """Agents that join and die at scripted steps; refuses actions for agents that are not live
    and (``masked``) illegal ones."""

    metadata = {"name": "scripted_v0", "render_modes": []}

    def __init__(self, masked: bool = False, render_mode: str | None = None, script: dict | None = None):
        self.possible_agents = list(NAMES)
        self.masked = masked
        self.script = SCRIPT if script is None else script
        box = spaces.Box(-10, 10, (3,), np.float32)
        self._obs_space = (
            spaces.Dict({"observation": box, "action_mask": spaces.Box(0, 1, (2,), np.int8)})
            if masked
            else box
        )
        self.agents: list[str] = []

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return spaces.Discrete(2)

    def _obs(self, agent: str) -> Any:
        k = NAMES.index(agent)
        obs = script_obs(k, self.s)
        if not self.masked:
            return obs
        mask = np.zeros(2, np.int8)
        mask[legal(k, self.s)] = 1
        return {"observation": obs, "action_mask": mask}

    def _live(self) -> list[str]:
        return [a for a, (join, gone) in self.script.items() if join <= self.s < gone]

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.s = 0
        self.agents = self._live()
        return {a: self._obs(a) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)}, live {self.agents}"
        if self.masked:
            for a, act in actions.items():
                if int(act) != legal(NAMES.index(a), self.s):
                    raise ValueError(f"illegal action {act} of {a} at step {self.s}")
        before = self.agents
        rewards = {a: script_reward(NAMES.index(a), self.s) for a in before}
        self.s += 1
        terminations = {a: self.script[a][1] == self.s and self.s < LENGTH for a in before}
        truncations = {a: self.s >= LENGTH and not terminations[a] for a in before}
        live = [] if self.s >= LENGTH else self._live()
        obs = {a: self._obs(a) for a in set(before) | set(live)}
        self.agents = live
        return obs, rewards, terminations, truncations, {a: {} for a in obs}


class Different(ParallelEnv):
    metadata = {"name": "different_v0"}
    possible_agents = ["x", "y"]

    def observation_space(self, agent):
        return spaces.Box(0, 1, (2 if agent == "x" else 3,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)


@pytest.fixture
def scripted_ids():
    ids = {
        "plain": "ScriptedAgents-v0",
        "masked": "ScriptedAgentsMasked-v0",
        "together": "ScriptedAgentsTogether-v0",
    }
    register_env(ids["plain"], lambda **kw: Scripted(**kw), overwrite=True)
    register_env(ids["masked"], lambda **kw: Scripted(masked=True, **kw), overwrite=True)
    register_env(ids["together"], lambda **kw: Scripted(script=TOGETHER, **kw), overwrite=True)
    yield ids
    for env_id in ids.values():
        unregister_env(env_id)


def _config(env_id: str, **overrides: Any) -> TrainConfig:
    base = {
        "env.id": env_id,
        "env.num_envs": 2,
        "ppo.n_steps": 16,
        "ppo.gamma": GAMMA,
        "ppo.gae_lambda": LAM,
        "ppo.minibatch_size": 16,
        "env.normalize_obs": False,
        "env.normalize_reward": False,
        "run.seed": 5,
    }
    return TrainConfig().with_overrides({**base, **overrides})


def _collector(agent: PPO) -> Collector:
    collector = Collector(RankContext(agent.policy, agent.config, agent.generator, SingleProcess()))
    collector.start(iteration=0, num_timesteps=0)
    return collector


# ------------------------------------------------------------------------------ the adapter


def test_agent_stack_spaces_and_infos(scripted_ids):
    env = make_env(scripted_ids["plain"])
    assert env.observation_space.shape == (3, 3) and env.action_space.nvec.tolist() == [2, 2, 2]
    assert env.unwrapped.agent_observation_space.shape == (3,)
    obs, info = env.reset(seed=0)
    assert info["agent_active"].tolist() == [True, True, False]
    assert np.all(obs[2] == 0)  # not joined yet: zeros
    rewards = []
    for s in range(LENGTH):
        obs, reward, terminated, truncated, info = env.step(np.zeros(3, np.int64))
        rewards.append(info["agent_rewards"])
        assert reward == pytest.approx(info["agent_rewards"].mean())
        if s + 1 == 3:  # a1 dies: its row is its final observation, no longer active
            assert info["agent_terminated"].tolist() == [False, True, False]
            assert np.allclose(obs[1], script_obs(1, 3)) and not info["agent_active"][1]
        if s + 1 == 4:
            assert np.all(obs[1] == 0)
    assert truncated and not terminated
    assert info["agent_truncated"].tolist() == [True, False, False]


def test_agents_with_different_spaces_are_refused_in_one_line():
    from ppo_envkit.environments.agent_stack import AgentStack

    with pytest.raises(ConfigError) as err:
        AgentStack(Different())
    assert "\n" not in str(err.value) and "agents x and y have different observation spaces" in str(err.value)


def test_agent_id_appends_one_hot(scripted_ids):
    agent = PPO(config=_config(scripted_ids["plain"], **{"env.agent_id": True}))
    assert agent.observation_space.shape == (6,)
    collector = _collector(agent)
    rows = collector.rollout
    collector.collect(0)
    collector.close()
    ids = rows.obs[0, :, 3:]  # rows: copy-major, agent k of copy i is row 3 i + k
    assert torch.equal(ids, torch.eye(3).repeat(2, 1))


# ------------------------------------------------------------------------------ GAE per agent


@pytest.mark.parametrize("time_limit", ["bootstrap", "terminal", "auto"])
@pytest.mark.parametrize("kind, script", [("plain", SCRIPT), ("together", TOGETHER)])
def test_per_agent_gae_with_deaths_and_joins_matches_a_naive_reference(
    scripted_ids, kind, script, time_limit
):
    """Each agent's advantages, step by step, against a reference written per agent; with
    ``env.time_limit=terminal`` an agent truncated at the time limit is not bootstrapped, and
    so with ``auto``, since the environment is a PettingZoo one."""
    agent = PPO(config=_config(scripted_ids[kind], **{"env.time_limit": time_limit}))
    collector = _collector(agent)
    ends = time_limit != "bootstrap"
    assert collector.time_limit.ends_task == ends
    policy = agent.policy
    value = {}  # V of each scripted observation, computed one by one
    with torch.no_grad():
        for k in range(3):
            for s in range(LENGTH + 1):
                value[k, s] = float(policy.value(torch.from_numpy(script_obs(k, s))[None], None)[0])
    T, n = 16, 2
    checked = 0
    for r in range(3):  # rollouts (episodes of 7 steps cross their boundaries)
        buf = collector.collect(r * T * n)
        buf.compute_advantages(GAMMA, LAM)
        for i in range(n):
            for k in range(3):
                row = 3 * i + k
                join, gone = script[NAMES[k]]
                # the agent's own steps in this rollout: (t, episode step s)
                steps = [(t, (r * T + t) % LENGTH) for t in range(T)]
                live = [(t, s) for t, s in steps if join <= s < gone]
                assert buf.valid[:, row].tolist() == [join <= s < gone for _, s in steps]
                expected = {}
                following = 0.0
                for j in range(len(live) - 1, -1, -1):  # backwards over the agent's own steps
                    t, s = live[j]
                    if s + 1 == gone and gone < LENGTH:  # died
                        nxt, carry = 0.0, 0.0
                    elif s + 1 == LENGTH:  # truncated: bootstrap from its final observation, unless
                        nxt, carry = (0.0 if ends else value[k, s + 1]), 0.0
                    elif t == T - 1:  # the rollout ends: bootstrap from the next observation
                        nxt, carry = value[k, s + 1], 0.0
                    else:
                        nxt, carry = value[k, s + 1], 1.0
                    delta = script_reward(k, s) + GAMMA * nxt - value[k, s]
                    following = delta + GAMMA * LAM * carry * following
                    expected[t] = following
                for t, adv in expected.items():
                    assert buf.advantages[t, row].item() == pytest.approx(adv, abs=1e-5), (r, t, i, k)
                    checked += 1
    collector.close()
    assert checked > 100


# ------------------------------------------------------------------------------ padding rows


def test_minibatches_cover_valid_samples_in_the_same_number_whatever_their_count():
    gen = torch.Generator().manual_seed(0)
    for count, units, per in [(100, 160, 32), (7, 160, 32), (3, 160, 32), (159, 160, 16)]:
        valid = torch.sort(torch.randperm(units, generator=gen)[:count]).values
        chunks = valid_minibatches(valid, units, per, gen)
        assert len(chunks) == -(-units // per)
        joined = torch.cat(chunks)
        assert set(joined.tolist()) == set(valid.tolist())
        if count >= len(chunks):
            assert sorted(joined.tolist()) == valid.tolist()
            assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def _update_after_poison(env_id: str, poison: bool, **overrides: Any) -> tuple[dict[str, torch.Tensor], Any]:
    agent = PPO(config=_config(env_id, **overrides))
    collector = _collector(agent)
    buf = collector.collect(0)
    buf.compute_advantages(GAMMA, LAM)
    collector.close()
    invalid = ~buf.valid.reshape(-1)
    assert invalid.any()
    if poison:  # whatever padding rows hold must not matter
        buf.packed[invalid] = float("nan")
        buf.values.reshape(-1)[invalid] = float("nan")
        buf.returns.reshape(-1)[invalid] = float("nan")
    context = RankContext(agent.policy, agent.config, agent.generator, SingleProcess())
    stats = Learner(context).update(buf, 0.0, "in a test")
    return copy.deepcopy(agent.policy.state_dict()), stats


@pytest.mark.parametrize("analytic", [True, False], ids=["fastpath", "autograd"])
def test_padding_rows_never_reach_the_loss(scripted_ids, analytic):
    env_id = scripted_ids["plain"]
    clean, stats = _update_after_poison(env_id, False, **{"run.analytic_gradients": analytic})
    poisoned, poisoned_stats = _update_after_poison(env_id, True, **{"run.analytic_gradients": analytic})
    assert np.isfinite(poisoned_stats.loss) and np.isfinite(poisoned_stats.explained_variance)
    for name, value in clean.items():
        assert torch.isfinite(poisoned[name]).all(), name
        assert torch.equal(value, poisoned[name]), name
    assert stats.loss == poisoned_stats.loss


def test_reward_scaling_statistics_ignore_padding_rows():
    from ppo_envkit.algo.normalize import RewardScaler

    gen = torch.Generator().manual_seed(1)
    valid = torch.tensor([True, False, True, True, False, True])
    with_padding, live_only = RewardScaler(0.9, 10.0, True), RewardScaler(0.9, 10.0, True)
    returns_a, returns_b = torch.zeros(6), torch.zeros(4)
    for _ in range(20):
        rewards = torch.randn(6, generator=gen) * valid
        scaled = with_padding(rewards, returns_a, ~valid, valid=valid)
        expected = live_only(rewards[valid], returns_b, torch.zeros(4, dtype=torch.bool))
        assert torch.allclose(scaled[valid], expected)
    assert torch.allclose(with_padding.rms.var, live_only.rms.var)
    assert with_padding.rms.count == live_only.rms.count


# ------------------------------------------------------------------------------ masks


def test_masks_are_respected_per_row(scripted_ids):
    agent = PPO(config=_config(scripted_ids["masked"]))
    collector = _collector(agent)
    for r in range(2):
        buf = collector.collect(r * 32)
        for t in range(16):
            s = (r * 16 + t) % LENGTH
            for row in range(6):
                k = row % 3
                if buf.valid[t, row]:
                    expected = [legal(k, s) == a for a in range(2)]
                    assert buf.masks[t, row].tolist() == expected
                    assert int(buf.actions[t, row].item()) == legal(k, s)
                else:
                    assert buf.masks[t, row].all()  # padding: anything goes, nothing is sent
    collector.close()
    agent.learn(200)  # the environment raises on an illegal action or one for an agent not live
    result = agent.evaluate(3)
    assert result.episodes == 3


# ------------------------------------------------------------------------------ training


def test_evaluation_reports_the_mean_per_agent_return(scripted_ids):
    agent = PPO(config=_config(scripted_ids["plain"]))
    result = agent.evaluate(2)
    per_agent = [sum(script_reward(k, s) for s in range(*SCRIPT[a])) for k, a in enumerate(NAMES)]
    assert result.mean_return == pytest.approx(np.mean(per_agent), rel=1e-5)
    assert result.mean_length == LENGTH


def _foragers(**overrides: Any) -> TrainConfig:
    base = {"env.id": "Foragers-v0", "env.num_envs": 4, "ppo.n_steps": 64, "ppo.minibatch_size": 128}
    return TrainConfig().with_overrides({**base, **overrides})


def _random_return(seed: int) -> float:
    evaluator = Evaluator(_foragers().env, 30)
    rng = np.random.default_rng(seed)
    try:
        result = evaluator.play(lambda obs, masks, starts: rng.integers(0, 5, obs.shape[:2]), seed=seed)
    finally:
        evaluator.close()
    return result.mean_return


@pytest.mark.slow  # (about a minute on 2 busy cores)
def test_foragers_learn_beyond_a_random_policy():
    random = [_random_return(seed) for seed in range(3)]
    trained = []
    for seed in range(2):
        agent = PPO(config=_foragers(**{"run.seed": seed}))
        agent.learn(36_000)
        trained.append(agent.evaluate(30, seed=100).mean_return)
        agent.close()
    # measured: a random policy 0.01 to 0.07 per agent over these seeds (pits and hunger kill it),
    # trained foragers 11.0 to 11.5 with env.time_limit=bootstrap (three seeds; stochastic play
    # 12.4 to 13.3), 13.2 and 11.0 with the default auto (terminal here; seeds 0 and 1): the bar
    # is the best random seed plus 5, under half of what training reaches
    print(f"random {random}, trained {trained}")
    assert min(trained) > max(random) + 5.0, (trained, random)


@pytest.mark.parametrize(
    "overrides", [{}, {"env.vectorization": "async", "env.num_workers": 2}], ids=["sync", "sharded"]
)
def test_foragers_resume_is_exact(tmp_path, overrides):
    config = _foragers(**{"run.total_timesteps": 5 * 768, "run.seed": 2, **overrides})  # (agent-steps)
    assert_resume_is_exact(config, tmp_path / "run")


@pytest.mark.parametrize(
    "overrides",
    [{"env.vectorization": "async"}, {"run.processes": 2}],
    ids=["async", "processes2"],
)
def test_foragers_train_with_other_vectorizations_and_ranks(overrides):
    agent = PPO(config=_foragers(**overrides))
    agent.learn(4 * 768)
    assert agent.num_timesteps == 4 * 768  # agent-steps: 64 steps x 4 copies x 3 agents per iteration
    assert np.isfinite(agent.last_metrics["loss"])
    agent.close()


@pytest.mark.parametrize("kind", ["plain", "masked", "together"])
def test_sharded_workers_train_as_one_process(scripted_ids, kind):
    """``env.num_workers=2``: a worker process steps a shard of the copies and sends the agents'
    infos (rewards, deaths, truncations, who is live, of the ended episodes too) through shared
    memory; deaths, joins, padding and masks give the weights of one process, bit for bit."""
    weights, returns = [], []
    for overrides in ({}, {"env.vectorization": "async", "env.num_workers": 2}):
        agent = PPO(config=_config(scripted_ids[kind], **{"env.num_envs": 3, **overrides}))
        agent.learn(3 * 16 * 3 * 3)  # 3 iterations of 16 steps x 3 copies x 3 agents
        weights.append(torch.cat([p.detach().flatten() for p in agent.policy.parameters()]))
        returns.append(agent.last_metrics["episode_return"])
        agent.close()
    assert torch.equal(weights[0], weights[1])
    assert returns[0] == returns[1] and np.isfinite(returns[0])


def test_simple_spread_trains():
    pytest.importorskip("mpe2")
    config = TrainConfig().with_overrides(
        {
            "env.id": "mpe2.simple_spread_v3:parallel_env",
            "env.kwargs": {"N": 3, "max_cycles": 25},
            "env.num_envs": 4,
            "ppo.n_steps": 128,
        }
    )
    agent = PPO(config=config)
    agent.learn(6 * 3 * 512)  # agent-steps: 6 iterations
    assert np.isfinite(agent.last_metrics["loss"])
    result = agent.evaluate(2)
    assert np.isfinite(result.mean_return) and result.mean_length == 25
    agent.close()


def test_onnx_export_of_the_shared_policy_agrees(tmp_path):
    pytest.importorskip("onnxruntime")
    agent = PPO(config=_foragers(**{"env.agent_id": True}))
    agent.learn(768)
    path = agent.export_onnx(tmp_path / "foragers.onnx")
    result = agent.check_onnx(path, steps=300)
    assert result.observations >= 300 and result.mismatches == 0
    agent.close()
