"""Masked heads: log-probabilities and entropies are those of the renormalised legal set
(checked against ``torch.distributions``), samples and modes are always legal, and the
numpy fast path's gradient equals autograd's with masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.distributions import Bernoulli, Categorical

from ppo_envkit.algo.fastpath import NumpyBackend
from ppo_envkit.algo.heads import make_head
from ppo_envkit.algo.rollout import Minibatch

from .test_fastpath import SETTINGS, analytic_step, autograd_step, make_policy


def random_masks(size_groups: list[int], batch: int, seed: int) -> torch.Tensor:
    """Random masks with at least one legal value per group (often exactly one)."""
    g = np.random.default_rng(seed)
    parts = []
    for n in size_groups:
        m = g.random((batch, n)) < 0.4
        m[np.arange(batch), g.integers(0, n, batch)] = True
        parts.append(m)
    return torch.from_numpy(np.concatenate(parts, 1))


def test_categorical_masked_equals_categorical_over_the_legal_actions():
    head = make_head(spaces.Discrete(7), 8)
    torch.manual_seed(0)
    params = torch.randn(200, 7) * 3
    mask = random_masks([7], 200, 0)
    masked = head.apply_mask(params, mask)
    actions = head.sample(masked, torch.Generator().manual_seed(1))
    logp, entropy = head.log_prob(masked, actions), head.entropy(masked)
    for i in range(200):
        legal = torch.nonzero(mask[i]).squeeze(-1)
        reference = Categorical(logits=params[i, legal])
        chosen = int(actions[i, 0])
        assert mask[i, chosen], "a masked action was sampled"
        position = int((legal == chosen).nonzero())
        torch.testing.assert_close(logp[i], reference.log_prob(torch.tensor(position)))
        torch.testing.assert_close(entropy[i], reference.entropy())
    assert mask.gather(1, head.mode(masked).long()).all()


def test_multidiscrete_masked_equals_product_of_legal_categoricals():
    nvec = [3, 5, 2]
    head = make_head(spaces.MultiDiscrete(nvec), 8)
    torch.manual_seed(1)
    params = torch.randn(100, 10) * 2
    mask = random_masks(nvec, 100, 1)
    masked = head.apply_mask(params, mask)
    actions = head.sample(masked, torch.Generator().manual_seed(2))
    logp, entropy = head.log_prob(masked, actions), head.entropy(masked)
    bounds = np.cumsum([0, *nvec])
    for i in range(100):
        ref_logp, ref_entropy = 0.0, 0.0
        for d in range(3):
            seg_mask, seg_params = mask[i, bounds[d] : bounds[d + 1]], params[i, bounds[d] : bounds[d + 1]]
            legal = torch.nonzero(seg_mask).squeeze(-1)
            chosen = int(actions[i, d])
            assert seg_mask[chosen]
            dist = Categorical(logits=seg_params[legal])
            ref_logp += dist.log_prob(torch.tensor(int((legal == chosen).nonzero())))
            ref_entropy += dist.entropy()
        torch.testing.assert_close(logp[i], ref_logp)
        torch.testing.assert_close(entropy[i], ref_entropy)


def test_multibinary_masked_entries_are_certain_and_free_ones_bernoulli():
    head = make_head(spaces.MultiBinary(5), 8)
    torch.manual_seed(2)
    params = torch.randn(100, 5) * 2
    kind = torch.randint(0, 3, (100, 5), generator=torch.Generator().manual_seed(3))  # 0 only, 1 only, both
    mask = torch.stack([kind != 1, kind != 0], -1).reshape(100, 10)
    masked = head.apply_mask(params, mask)
    actions = head.sample(masked, torch.Generator().manual_seed(4))
    assert torch.equal(actions[kind == 0], torch.zeros_like(actions[kind == 0]))
    assert torch.equal(actions[kind == 1], torch.ones_like(actions[kind == 1]))
    free = kind == 2
    reference = Bernoulli(logits=params)
    ref_logp = (reference.log_prob(actions) * free).sum(-1)
    ref_entropy = (reference.entropy() * free).sum(-1)
    torch.testing.assert_close(head.log_prob(masked, actions), ref_logp)
    torch.testing.assert_close(head.entropy(masked), ref_entropy)


def test_a_gaussian_head_cannot_be_masked():
    from ppo_envkit.errors import ActionMaskError

    head = make_head(spaces.Box(-1.0, 1.0, (2,)), 8)
    assert head.mask_size is None
    with pytest.raises(ActionMaskError, match="cannot be masked"):
        head.apply_mask(torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))


MASKABLE = {
    "categorical": (spaces.Discrete(4), [4]),
    "multicategorical": (spaces.MultiDiscrete([2, 3, 4]), [2, 3, 4]),
    "bernoulli": (spaces.MultiBinary(3), [2, 2, 2]),
}


@pytest.mark.parametrize("name", list(MASKABLE))
@pytest.mark.parametrize("kw", SETTINGS)
def test_fast_path_gradient_equals_autograd_with_masks(name, kw):
    space, groups = MASKABLE[name]
    policy = make_policy(space)
    assert NumpyBackend.supports(policy)
    g = torch.Generator().manual_seed(5)
    n = 64
    obs = torch.randn(n, 6, generator=g) * 2
    masks = random_masks(groups, n, 6)
    with torch.no_grad():
        actions, logp, values, _ = policy.act(obs, generator=g, mask=masks)
    batch = Minibatch(
        obs,
        actions,
        logp + torch.randn(n, generator=g) * 0.3,
        torch.randn(n, generator=g),
        values + torch.randn(n, generator=g),
        values + torch.randn(n, generator=g) * 0.4,
        masks,
    )
    auto_losses, auto_grads = autograd_step(policy, batch, **kw)
    fast_losses, fast_grads = analytic_step(policy, batch, **kw)
    for a, b in zip(auto_losses, fast_losses, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(auto_grads, fast_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    # and the masks matter: without them the gradient differs
    _, unmasked = autograd_step(policy, batch._replace(masks=None), **kw)
    assert any(not torch.allclose(a, b) for a, b in zip(auto_grads, unmasked, strict=True))


def test_fast_path_acting_with_masks_equals_the_policy():
    policy = make_policy(spaces.Discrete(4))
    obs = torch.randn(32, 6, generator=torch.Generator().manual_seed(0))
    masks = random_masks([4], 32, 7)
    a1, l1, v1, _ = policy.act(obs, generator=torch.Generator().manual_seed(9), mask=masks)
    a2, l2, v2 = NumpyBackend(policy).act(obs, torch.Generator().manual_seed(9), masks)
    assert torch.equal(a1, a2)
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(v1, v2)
    assert masks.gather(1, a1.long()).all()
