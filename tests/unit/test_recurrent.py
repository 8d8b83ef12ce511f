"""Recurrent policies: the sequence forward equals the cell stepped one step at a time with
resets; a rollout's stored states and episode starts reproduce, sequence by sequence, the
log-probabilities and values computed while collecting; the truncation bootstrap reads the
memory that saw the episode; predict carries the state in and out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.algo.fastpath import NumpyBackend
from ppo_envkit.algo.recurrent import Memory, RecurrentCore

from ..trainers import unit_trainer


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_sequence_equals_stepping_the_cell_with_resets(kind):
    torch.manual_seed(0)
    core = RecurrentCore(kind, 5, 7)
    batch, length = 4, 9
    x = torch.randn(batch, length, 5)
    state0 = torch.randn(batch, core.state_size)
    starts = torch.zeros(batch, length, dtype=torch.bool)
    starts[0, 0] = starts[1, 4] = starts[2, 4] = starts[2, 7] = True
    out = core.sequence(x, state0, starts)
    # the reference: torch's own cell, one step at a time, state zeroed by hand at episode starts
    for b in range(batch):
        h = state0[b : b + 1, : core.hidden]
        c = state0[b : b + 1, core.hidden :]
        for t in range(length):
            if starts[b, t]:
                h, c = torch.zeros_like(h), torch.zeros_like(c)
            if kind == "lstm":
                h, c = core.cell(x[b : b + 1, t], (h, c))
            else:
                h = core.cell(x[b : b + 1, t], h)
            torch.testing.assert_close(out[b, t], h[0], rtol=1e-5, atol=1e-6)


def recurrent_agent(kind="lstm", **extra) -> PPO:
    overrides = {
        "env.id": "CartPole-v1",
        "env.num_envs": 4,
        "ppo.n_steps": 64,
        "ppo.sequence_length": 16,
        "ppo.minibatch_size": 64,
        "ppo.n_epochs": 2,
        "policy.recurrent": kind,
        "policy.recurrent_size": 16,
        "env.max_episode_steps": 30,  # truncations inside the rollout
        "run.eval_interval": 0,
        "run.seed": 2,
        **extra,
    }
    return PPO(config=TrainConfig().with_overrides(overrides))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_stored_sequences_reproduce_what_collection_computed(kind):
    agent = recurrent_agent(kind)
    assert not NumpyBackend.supports(agent.policy)  # recurrent: autograd
    trainer = unit_trainer(agent)
    trainer.prepare()
    rollout = trainer.collector.collect(0)
    assert rollout.episode_end.any() and rollout.truncated.any()
    rollout.compute_advantages(0.99, 0.95)
    rows = rollout.sequence_rows(torch.arange(rollout.num_sequences))
    batch = rollout.minibatch(rows)
    assert batch.states.shape == (rollout.num_sequences, agent.policy.state_size)
    with torch.no_grad():
        logp, _, values = agent.policy.evaluate(
            batch.obs, batch.actions, None, None, batch.states, batch.starts
        )
    torch.testing.assert_close(logp, batch.old_logprobs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(values, batch.old_values, rtol=1e-5, atol=1e-5)
    # shuffled sequences too: each sequence carries its own initial state
    perm = torch.randperm(rollout.num_sequences, generator=torch.Generator().manual_seed(0))[:3]
    part = rollout.minibatch(rollout.sequence_rows(perm))
    with torch.no_grad():
        logp, _, _ = agent.policy.evaluate(part.obs, part.actions, None, None, part.states, part.starts)
    torch.testing.assert_close(logp, part.old_logprobs, rtol=1e-5, atol=1e-5)
    agent.close()


def test_truncation_bootstrap_reads_the_memory_that_saw_the_episode(monkeypatch):
    agent = recurrent_agent()
    policy = agent.policy
    seen = []
    original = policy.value

    def recording(obs, memory=None):
        seen.append(None if memory is None else (memory.state.clone(), memory.starts.clone()))
        return original(obs, memory)

    monkeypatch.setattr(policy, "value", recording)
    trainer = unit_trainer(agent)
    trainer.prepare()
    rollout = trainer.collector.collect(0)
    truncated = [tuple(ix) for ix in rollout.truncated.nonzero().tolist()]
    assert truncated
    calls = iter(seen[:-1])  # the last call is the rollout's last values
    for t, i in sorted({(t, i) for t, i in truncated}):
        state, starts = next(calls)  # one call per step with truncations (all its copies)
        copies = rollout.truncated[t].nonzero().squeeze(-1).tolist()
        row = copies.index(i)
        assert not starts[row]  # no reset: the final observation continues its episode
        if t + 1 < rollout.n_steps:  # the state after step t is what step t + 1 stored (pre-reset)
            torch.testing.assert_close(state[row], rollout.states[t + 1, i])
            assert rollout.starts[t + 1, i]
    agent.close()


def test_predict_carries_the_state_and_resets_at_episode_starts():
    agent = recurrent_agent("gru")
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(6, 4)).astype(np.float32)
    # one observation at a time == the same sequence through the policy's own evaluate
    state, actions = None, []
    for obs in observations:
        action, state = agent.predict(obs, state=state)
        actions.append(action)
    assert state.shape == (agent.policy.state_size,)
    again, _ = agent.predict(observations[0])  # state None: a new episode
    assert again == actions[0]
    batch_actions, batch_state = agent.predict(
        observations[:2], state=np.zeros((2, 16)), episode_start=[True, False]
    )
    assert batch_state.shape == (2, 16) and batch_actions.shape == (2,)
    # episode_start resets: the same as a fresh state
    a1, s1 = agent.predict(observations[3], state=state, episode_start=True)
    a2, s2 = agent.predict(observations[3])
    assert a1 == a2 and np.allclose(s1, s2)
    actor = agent.stateful()
    assert [actor(o) for o in observations] == actions
    actor.reset()
    assert actor(observations[0]) == actions[0]
    with pytest.raises(ValueError, match="recurrent states"):
        agent.predict(observations[:3], state=np.zeros((2, 16)))
    plain = PPO(config=TrainConfig().with_overrides({"env.id": "CartPole-v1"}))
    with pytest.raises(ValueError, match="no memory"):
        plain.predict(observations[0], state=np.zeros(4))
    decision = agent.policy_step(observations[0])
    assert decision["state"].shape == (16,) and decision["memory_norm"] > 0
    agent.close()
    plain.close()


def test_sequence_length_must_divide_n_steps():
    with pytest.raises(Exception, match=r"sequence_length=24 must divide ppo\.n_steps=64"):
        recurrent_agent(**{"ppo.sequence_length": 24})


def test_memory_fresh_and_select():
    memory = Memory.fresh(3, 4)
    assert memory.starts.all() and memory.state.abs().sum() == 0
    part = memory.select(torch.tensor([0, 2]))
    assert part.state.shape == (2, 4)
