"""The PPO loss: ratio from log-probabilities, entropy as a bonus, clipping that blocks gains."""

from __future__ import annotations

import math

import pytest
import torch
from gymnasium import spaces

from ppo_envkit.algo.losses import LossSettings, LossTerms
from ppo_envkit.algo.losses import ppo_losses as _ppo_losses
from ppo_envkit.algo.policy import ActorCritic
from ppo_envkit.algo.rollout import Minibatch
from ppo_envkit.config import EnvConfig, PolicyConfig
from ppo_envkit.parallel.collectives import SingleProcess


def ppo_losses(policy, obs, actions, old_logp, adv, ret, old_values, **settings) -> LossTerms:
    """The loss of one minibatch given as tensors, with one process's advantage normalization."""
    batch = Minibatch(obs, actions, old_logp, adv, ret, old_values)
    return _ppo_losses(policy, batch, LossSettings(**settings), SingleProcess().normalize_advantages)


def make_policy(action_space=None, seed=0):
    torch.manual_seed(seed)
    obs_space = spaces.Box(-1.0, 1.0, (4,))
    return ActorCritic(obs_space, action_space or spaces.Discrete(3), PolicyConfig(), EnvConfig(), 0.99)


def batch(policy, n=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(n, 4, generator=g) * 2 - 1
    with torch.no_grad():
        actions, logp, values, _ = policy.act(obs, generator=g)
    adv = torch.randn(n, generator=g)
    returns = values + torch.randn(n, generator=g)
    return obs, actions, logp, adv, returns, values


KW = {"clip": 0.2, "vclip": None, "ent_coef": 0.0, "vf_coef": 0.5, "norm_adv": False}


def test_ratio_comes_from_log_probabilities():
    policy = make_policy()
    obs, actions, logp, adv, ret, val = batch(policy)
    # pretend the old policy gave each action half the probability: ratio must be exactly 2
    old_logp = logp - math.log(2.0)
    pg, _, _, kl, clipfrac, _ = ppo_losses(
        policy, obs, actions, old_logp, adv, ret, val, **{**KW, "clip": 10.0}
    )
    torch.testing.assert_close(pg, (-adv * 2.0).mean())
    assert clipfrac.item() == 0.0
    # approx-KL uses the (r - 1) - log r estimator
    torch.testing.assert_close(kl, torch.tensor(1.0 - math.log(2.0)))
    # a ratio of probabilities would give exp(p_new - p_old) != 2
    p_new, p_old = logp.exp(), old_logp.exp()
    assert not torch.allclose((p_new - p_old).exp(), torch.full_like(p_new, 2.0))


def test_total_loss_adds_value_and_subtracts_entropy():
    policy = make_policy()
    obs, actions, logp, adv, ret, val = batch(policy)
    kw = {**KW, "ent_coef": 0.3, "vf_coef": 0.7}
    pg, vl, ent, _, _, loss = ppo_losses(policy, obs, actions, logp, adv, ret, val, **kw)
    torch.testing.assert_close(loss, pg - 0.3 * ent + 0.7 * vl)
    _, _, new_values = policy.evaluate(obs, actions)
    torch.testing.assert_close(vl, 0.5 * (new_values - ret).square().mean())


@pytest.mark.parametrize("space", [spaces.Discrete(4), spaces.Box(-1.0, 1.0, (2,))], ids=str)
def test_a_gradient_step_on_the_entropy_term_alone_raises_entropy(space):
    policy = make_policy(space)
    with torch.no_grad():  # start away from maximal entropy (the 0.01 init gives near-uniform logits)
        policy.head.out.weight.mul_(300.0)
        if hasattr(policy.head, "log_std"):
            policy.head.log_std.fill_(-1.0)
    obs, actions, logp, adv, ret, val = batch(policy)
    zero = torch.zeros_like(adv)
    kw = {**KW, "ent_coef": 1.0, "vf_coef": 0.0}
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    before = policy.evaluate(obs, actions)[1].mean().item()
    for _ in range(3):
        loss = ppo_losses(policy, obs, actions, logp, zero, ret, val, **kw)[-1]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = policy.evaluate(obs, actions)[1].mean().item()
    assert after > before + 1e-4


def test_clipping_blocks_gains_beyond_one_plus_eps():
    policy = make_policy()
    obs, actions, logp, _, ret, val = batch(policy, n=8)
    adv = torch.ones(8)
    # ratio already 1.5 > 1 + 0.2 with positive advantage: the objective is flat, no gradient
    old_logp = logp - math.log(1.5)
    pg = ppo_losses(policy, obs, actions, old_logp, adv, ret, val, **KW)[0]
    policy.zero_grad()
    pg.backward()
    grads = [p.grad for p in policy.head.parameters() if p.grad is not None]
    assert all(torch.count_nonzero(g) == 0 for g in grads)
    torch.testing.assert_close(pg, torch.tensor(-1.2))
    # ratio 0.5 < 1 - 0.2 with negative advantage: equally flat
    old_logp = logp - math.log(0.5)
    pg = ppo_losses(policy, obs, actions, old_logp, -adv, ret, val, **KW)[0]
    torch.testing.assert_close(pg, torch.tensor(0.8))
    # inside the trust region the gradient flows
    pg = ppo_losses(policy, obs, actions, logp, adv, ret, val, **KW)[0]
    policy.zero_grad()
    pg.backward()
    assert any(torch.count_nonzero(p.grad) > 0 for p in policy.head.parameters())


def test_value_clipping_takes_the_pessimistic_loss():
    policy = make_policy()
    obs, actions, logp, adv, ret, val = batch(policy)
    old_values = val + 5.0  # far from the new values: the clipped prediction is old_v - 0.2
    kw = {**KW, "vclip": 0.2}
    _, vl, _, _, _, _ = ppo_losses(policy, obs, actions, logp, adv, ret, old_values, **kw)
    _, _, new_v = policy.evaluate(obs, actions)
    clipped = old_values + (new_v - old_values).clamp(-0.2, 0.2)
    expected = 0.5 * torch.max((new_v - ret).square(), (clipped - ret).square()).mean()
    torch.testing.assert_close(vl, expected)


def test_advantages_normalized_per_minibatch():
    policy = make_policy()
    obs, actions, logp, adv, ret, val = batch(policy)
    pg = ppo_losses(policy, obs, actions, logp, adv * 100 + 7, ret, val, **{**KW, "norm_adv": True})[0]
    norm = (adv - adv.mean()) / (adv.std() + 1e-8)
    torch.testing.assert_close(pg, (-norm).mean(), atol=1e-5, rtol=1e-5)


def test_orthogonal_init_gains():
    policy = make_policy(spaces.Box(-1.0, 1.0, (2,)))
    w = policy.actor_trunk[0].weight  # [64, 4], gain sqrt(2): orthogonal columns of norm sqrt(2)
    torch.testing.assert_close(w.T @ w, 2.0 * torch.eye(4), atol=1e-4, rtol=0)
    w = policy.actor_trunk[2].weight
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(64), atol=1e-4, rtol=0)
    out = policy.head.out.weight  # gain 0.01
    torch.testing.assert_close(out @ out.T, 1e-4 * torch.eye(2), atol=1e-7, rtol=0)
    v = policy.value_out.weight  # gain 1
    torch.testing.assert_close((v @ v.T).squeeze(), torch.tensor(1.0))
    assert torch.count_nonzero(policy.value_out.bias) == 0
