"""Action heads against torch.distributions, and the stored-vs-sent action contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import distributions as D

from ppo_envkit.algo.heads import (
    BernoulliHead,
    BetaHead,
    CategoricalHead,
    CensoredGaussianHead,
    GaussianHead,
    MultiCategoricalHead,
    SquashedGaussianHead,
    make_head,
)
from ppo_envkit.errors import ConfigError
from ppo_envkit.spaces import UnsupportedSpaceError

torch.manual_seed(0)


def _params(head, batch=64, scale=2.0):
    return head(torch.randn(batch, 8) * scale)


def test_make_head_dispatches_on_space():
    assert isinstance(make_head(spaces.Discrete(4), 8), CategoricalHead)
    assert isinstance(make_head(spaces.Box(-1, 1, (2,)), 8), GaussianHead)
    assert isinstance(make_head(spaces.Box(-1, 1, (2,)), 8, squash=True), SquashedGaussianHead)
    assert isinstance(make_head(spaces.MultiDiscrete([3, 2]), 8), MultiCategoricalHead)
    assert isinstance(make_head(spaces.MultiBinary(3), 8), BernoulliHead)


def test_unsupported_space_names_supported_ones():
    with pytest.raises(UnsupportedSpaceError, match="Discrete, Box"):
        make_head(spaces.Text(5), 8)
    with pytest.raises(UnsupportedSpaceError, match="finite Box bounds"):
        make_head(spaces.Box(-np.inf, np.inf, (2,)), 8, squash=True)


def test_categorical_matches_torch():
    head = make_head(spaces.Discrete(5), 8)
    params = _params(head)
    ref = D.Categorical(logits=params)
    actions = ref.sample()[:, None].float()
    torch.testing.assert_close(head.log_prob(params, actions), ref.log_prob(actions[:, 0].long()))
    torch.testing.assert_close(head.entropy(params), ref.entropy())


def test_categorical_sampling_frequencies():
    head = make_head(spaces.Discrete(3), 8)
    logits = torch.tensor([[0.0, 1.0, 2.0]]).expand(60000, 3)
    gen = torch.Generator().manual_seed(1)
    samples = head.sample(logits, gen)[:, 0].long()
    freq = torch.bincount(samples, minlength=3).float() / len(samples)
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.01, rtol=0)


def test_multidiscrete_matches_product_of_torch_categoricals():
    space = spaces.MultiDiscrete([3, 2, 4], start=[1, 0, -2])
    head = make_head(space, 8)
    params = _params(head)
    parts = params.split([3, 2, 4], -1)
    dists = [D.Categorical(logits=p) for p in parts]
    actions = torch.stack([d.sample() for d in dists], -1).float()
    expected_lp = sum(d.log_prob(actions[:, i].long()) for i, d in enumerate(dists))
    torch.testing.assert_close(head.log_prob(params, actions), expected_lp)
    torch.testing.assert_close(head.entropy(params), sum(d.entropy() for d in dists))
    env_actions = head.to_env(actions)
    assert env_actions.shape == (64, 3)
    assert all(space.contains(a) for a in env_actions)


def test_multibinary_matches_torch_bernoulli():
    space = spaces.MultiBinary([2, 3])
    head = make_head(space, 8)
    params = _params(head)
    ref = D.Independent(D.Bernoulli(logits=params), 1)
    actions = ref.sample()
    torch.testing.assert_close(head.log_prob(params, actions), ref.log_prob(actions))
    torch.testing.assert_close(head.entropy(params), ref.entropy())
    env_actions = head.to_env(actions)
    assert env_actions.shape == (64, 2, 3)
    assert all(space.contains(a) for a in env_actions)


def test_gaussian_matches_torch_normal():
    head = make_head(spaces.Box(-1, 1, (3,)), 8, log_std_init=-0.3)
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-0.5, 0.0, 0.7]))
    params = _params(head)
    ref = D.Independent(D.Normal(params, head.log_std.exp()), 1)
    actions = ref.sample()
    torch.testing.assert_close(head.log_prob(params, actions), ref.log_prob(actions))
    torch.testing.assert_close(head.entropy(params), ref.entropy())


def test_gaussian_stores_raw_sample_and_clips_only_for_env():
    space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    head = make_head(space, 8, log_std_init=1.5)  # wide: many samples fall outside the bounds
    params = torch.zeros(2000, 2)
    raw = head.sample(params, torch.Generator().manual_seed(0))
    assert (raw.abs() > 1).any(), "the stored sample must not be clipped"
    env_actions = head.to_env(raw)
    assert env_actions.dtype == np.float32
    assert np.all(env_actions <= 1.0) and np.all(env_actions >= -1.0)
    np.testing.assert_allclose(env_actions, np.clip(raw.detach().numpy(), -1, 1))
    # the log-prob is that of the raw sample, not the clipped one
    ref = D.Independent(D.Normal(params, head.log_std.exp()), 1)
    torch.testing.assert_close(head.log_prob(params, raw), ref.log_prob(raw))
    assert torch.equal(head.mode(params), params)


#: a box [0, 1], one [-2, 6], and a dimension without bounds (kept in its own units)
UNEVEN = spaces.Box(np.array([0.0, -2.0, -np.inf], np.float32), np.array([1.0, 6.0, np.inf], np.float32))


def test_normalized_box_coordinates_map_to_the_env_units_exactly():
    head = make_head(UNEVEN, 8, box_coords="normalized")
    assert head.normalized
    u = torch.tensor([[-1.0, -1.0, -3.0], [0.0, 0.0, 0.0], [1.0, 1.0, 3.0], [0.5, -0.5, 1.5]])
    env = head.to_env(u)
    np.testing.assert_array_equal(env[:3], [[0.0, -2.0, -3.0], [0.5, 2.0, 0.0], [1.0, 6.0, 3.0]])
    np.testing.assert_array_equal(env[3], np.array([0.75, 0.0, 1.5], np.float32))
    clipped = head.to_env(torch.tensor([[-3.0, 2.0, 0.0]]))[0]
    np.testing.assert_array_equal(clipped, [0.0, 6.0, 0.0])


def test_normalized_gaussian_is_the_gaussian_of_the_env_units_action():
    """Log-probabilities and entropies are those of the action in the environment's units
    (the affine map's log-determinant is a constant: it cancels in the PPO ratio)."""
    head = make_head(UNEVEN, 8, box_coords="normalized")
    with torch.no_grad():
        head.log_std.copy_(torch.tensor([-0.5, 0.0, 0.7]))
    params = _params(head)
    half, centre = torch.tensor([0.5, 4.0, 1.0]), torch.tensor([0.5, 2.0, 0.0])
    ref = D.Independent(D.Normal(centre + half * params, half * head.log_std.exp()), 1)
    u = head.sample(params, torch.Generator().manual_seed(3))
    torch.testing.assert_close(head.log_prob(params, u), ref.log_prob(centre + half * u))
    torch.testing.assert_close(head.entropy(params), ref.entropy())
    described = head.describe(params)
    np.testing.assert_allclose(described["mean"], (centre + half * params).detach().numpy(), rtol=1e-6)
    std = (half * head.log_std.exp()).expand_as(params)
    np.testing.assert_allclose(described["std"], std.detach().numpy())


def test_in_normalized_coordinates_the_deterministic_action_starts_at_the_box_centre():
    torch.manual_seed(0)
    head = make_head(UNEVEN, 8, box_coords="normalized")
    env = head.to_env(head.mode(_params(head, scale=1.0)))
    np.testing.assert_allclose(env, np.broadcast_to([0.5, 2.0, 0.0], env.shape), atol=0.1)


def test_a_box_of_minus_one_to_one_is_the_same_in_either_coordinates():
    space = spaces.Box(-1.0, 1.0, (2,))
    heads = []
    for coords in ("env", "normalized"):
        torch.manual_seed(0)
        heads.append(make_head(space, 8, box_coords=coords))
    params = [h(torch.ones(16, 8)) for h in heads]
    assert torch.equal(params[0], params[1])
    u = heads[0].sample(params[0], torch.Generator().manual_seed(1)) * 2
    assert torch.equal(heads[0].log_prob(params[0], u), heads[1].log_prob(params[1], u))
    assert torch.equal(heads[0].entropy(params[0]), heads[1].entropy(params[1]))
    np.testing.assert_array_equal(heads[0].to_env(u), heads[1].to_env(u))


def test_squashed_log_prob_matches_transformed_distribution():
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    head = make_head(spaces.Box(low, high, dtype=np.float32), 8, squash=True)
    params = _params(head, scale=0.5)
    u = head.sample(params, torch.Generator().manual_seed(3))
    base = D.Independent(D.Normal(params, head.log_std.exp()), 1)
    scale = torch.tensor((high - low) / 2, dtype=torch.float32)
    loc = torch.tensor((high + low) / 2, dtype=torch.float32)
    ref = D.TransformedDistribution(
        base, [D.transforms.TanhTransform(), D.transforms.AffineTransform(loc, scale, event_dim=1)]
    )
    a = head.squash(u)
    torch.testing.assert_close(head.log_prob(params, u), ref.log_prob(a), atol=1e-4, rtol=1e-4)
    env = head.to_env(u)
    assert np.all(env >= low) and np.all(env <= high)


def test_squashed_density_matches_sampled_histogram():
    """exp(log_prob) of the squashed action agrees with a histogram of many samples."""
    head = make_head(spaces.Box(-3.0, 3.0, (1,), np.float32), 4, squash=True)
    with torch.no_grad():
        head.log_std.fill_(math.log(0.8))
    mean = torch.full((400_000, 1), 0.4)
    u = head.sample(mean, torch.Generator().manual_seed(0))
    a = head.squash(u)[:, 0].detach().numpy()
    counts, edges = np.histogram(a, bins=40, range=(-2.9, 2.9))
    density = counts / (len(a) * np.diff(edges))
    centers = (edges[:-1] + edges[1:]) / 2
    c = torch.tensor(centers, dtype=torch.float32)[:, None]
    u_centers = torch.atanh(c / 3.0)
    predicted = head.log_prob(torch.full((40, 1), 0.4), u_centers).exp().detach().numpy()
    np.testing.assert_allclose(density, predicted, rtol=0.06, atol=0.004)


def test_squashed_entropy_estimate_is_unbiased():
    head = make_head(spaces.Box(-1.0, 1.0, (1,), np.float32), 4, squash=True)
    params = torch.full((200_000, 1), 0.3)
    estimate = head.entropy(params, torch.Generator().manual_seed(0)).mean().item()
    # numerical entropy of a = tanh(u), u ~ N(0.3, 1): H = -∫ p(a) log p(a) da
    grid = torch.linspace(-8, 8, 200_001)[:, None]
    logp = head.log_prob(torch.full_like(grid, 0.3), grid)
    normal = D.Normal(0.3, 1.0)
    du = (grid[1] - grid[0]).item()
    exact = -(normal.log_prob(grid[:, 0]).exp() * logp).sum().item() * du
    assert abs(estimate - exact) < 0.01


_SPACES = [
    spaces.Discrete(4),
    spaces.Discrete(3, start=-1),
    spaces.Box(-1.0, 1.0, (2,), np.float32),
    spaces.Box(-1.0, 1.0, (2, 2), np.float64),
    spaces.Box(-np.inf, np.inf, (3,), np.float32),
    spaces.MultiDiscrete([2, 5]),
    spaces.MultiBinary(4),
]
_CASES = [(s, False) for s in _SPACES] + [
    (s, True) for s in _SPACES if isinstance(s, spaces.Box) and np.all(np.isfinite(s.low))
]


@pytest.mark.parametrize(("space", "squash"), _CASES, ids=lambda v: str(v))
def test_every_space_round_trips_through_act_and_evaluate(space, squash):
    head = make_head(space, 8, squash=squash)
    params = _params(head, batch=16)
    actions = head.sample(params, torch.Generator().manual_seed(0))
    assert actions.shape == (16, head.storage_dim) and actions.dtype == torch.float32
    logp = head.log_prob(params, actions)
    assert logp.shape == (16,) and torch.isfinite(logp).all()
    assert head.entropy(params, torch.Generator().manual_seed(0)).shape == (16,)
    env_actions = head.to_env(actions)
    assert len(env_actions) == 16
    assert all(space.contains(a) for a in env_actions), env_actions[:3]
    mode = head.mode(params)
    assert all(space.contains(a) for a in head.to_env(mode))
    assert head.describe(params)


# --------------------------------------------------------------------------- Beta

#: a box with bounds of different widths and centres, and one [-1, 1]
BETA_BOX = spaces.Box(np.array([0.0, -2.0, -1.0], np.float32), np.array([1.0, 6.0, 1.0], np.float32))


BETA_SETTINGS = ["beta", "beta-softplus"]


def _beta_of(head: BetaHead, params: torch.Tensor) -> D.Distribution:
    """torch's Beta of the concentrations the docstring of :class:`BetaHead` gives."""
    o1, o2 = params.split(head.storage_dim, -1)
    if head.parametrization == "softplus":
        softplus = torch.nn.functional.softplus
        alpha, beta = 1 + softplus(o1), 1 + softplus(o2)
    else:
        mode, concentration = torch.sigmoid(o1), o2.clamp(-10, 10).exp()
        alpha, beta = 1 + mode * concentration, 1 + (1 - mode) * concentration
    return D.Independent(D.Beta(alpha, beta), 1)


@pytest.mark.parametrize("dist", BETA_SETTINGS)
def test_beta_matches_torch_beta_of_the_box(dist):
    """log_prob and entropy are torch's Beta's, of the action in the environment's units: the
    density of ``low + width * x`` (divided by the widths) and the entropy plus their logs."""
    head = make_head(BETA_BOX, 8, box_distribution=dist)
    assert isinstance(head, BetaHead) and head.out.out_features == 6
    params = _params(head, batch=512, scale=10.0).detach()
    actions = head.sample(params, torch.Generator().manual_seed(0))
    ref = _beta_of(head, params)
    log_widths = torch.log(torch.tensor([1.0, 8.0, 2.0])).sum()
    torch.testing.assert_close(head.log_prob(params, actions), ref.log_prob(actions) - log_widths)
    torch.testing.assert_close(head.entropy(params), ref.entropy() + log_widths)
    # the stored action is the draw in (0, 1); to_env maps it to the box
    assert (actions > 0).all() and (actions < 1).all()
    low, width = torch.tensor([0.0, -2.0, -1.0]), torch.tensor([1.0, 8.0, 2.0])
    np.testing.assert_allclose(head.to_env(actions), (low + width * actions).numpy(), rtol=1e-6, atol=1e-6)
    # the gradient reaches both concentrations
    params.requires_grad_(True)
    head.log_prob(params, actions).sum().backward()
    assert (params.grad != 0).all()


@pytest.mark.parametrize("dist", BETA_SETTINGS)
def test_beta_greedy_action_is_its_mode_or_its_mean(dist):
    head = make_head(BETA_BOX, 8, box_distribution=dist)
    params = _params(head, batch=256, scale=10.0)
    ref = _beta_of(head, params).base_dist
    alpha, beta = ref.concentration1, ref.concentration0
    torch.testing.assert_close(head.mode(params), (alpha - 1) / (alpha + beta - 2))
    if dist == "beta":  # the mode is the first output's sigmoid
        torch.testing.assert_close(head.mode(params), torch.sigmoid(params[:, :3]))
    head.greedy = "mean"
    torch.testing.assert_close(head.mode(params), alpha / (alpha + beta))
    del head.greedy
    if dist == "beta-softplus":  # outputs far below 0: alpha = beta = 1 in float32, the uniform
        assert head.mode(torch.full((2, 6), -200.0)).tolist() == [[0.5] * 3] * 2  # its centre, not 0 / 0


def test_beta_samples_follow_its_density():
    head = make_head(spaces.Box(0.0, 1.0, (1,)), 8, box_distribution="beta")
    params = torch.tensor([[1.5, 1.0]]).expand(200_000, 2)  # alpha 3.22, beta 1.50
    x = head.sample(params, torch.Generator().manual_seed(3))[:, 0]
    ref = _beta_of(head, params[:1])
    assert abs(x.mean().item() - ref.mean.item()) < 0.003
    assert abs(x.var().item() - ref.variance.item()) < 0.002


@pytest.mark.parametrize("dist", BETA_SETTINGS)
def test_beta_starts_centred_on_the_box_with_its_spread_per_state(dist):
    head = make_head(BETA_BOX, 8, box_distribution=dist)
    params = _params(head, batch=64)
    np.testing.assert_allclose(head.mode(params).detach(), 0.5, atol=0.03)  # the box's centre
    np.testing.assert_allclose(head.to_env(torch.full((1, 3), 0.5)), [[0.5, 2.0, 0.0]])
    std = head.describe(params)["std"]
    # about a quarter of each box's width (alpha = beta = 1.5 or 1.69), and not one number
    np.testing.assert_allclose(std / np.array([1.0, 8.0, 2.0]), 0.24, atol=0.02)
    assert std.shape == (64, 3) and len(np.unique(std[:, 1].round(6))) > 1


def test_beta_needs_finite_bounds_and_is_not_squashed():
    with pytest.raises(UnsupportedSpaceError, match="finite Box bounds"):
        make_head(spaces.Box(-np.inf, 1.0, (2,)), 8, box_distribution="beta")
    for dist in BETA_SETTINGS:
        with pytest.raises(ConfigError, match="squash"):
            make_head(BETA_BOX, 8, box_distribution=dist, squash=True)
    # a Box action space on its own keeps the Gaussian unless it asks for the Beta
    assert type(make_head(BETA_BOX, 8)) is GaussianHead
    assert type(make_head(BETA_BOX, 8, box_distribution="gaussian")) is GaussianHead


def test_a_beta_part_without_parameters_has_none():
    """A choice without parameters (Moving's break: a Box of shape (0,)) samples, scores and
    maps nothing."""
    space = spaces.Tuple((spaces.Discrete(2), spaces.Tuple((spaces.Box(0, 1, (1,)), spaces.Box(0, 1, (0,))))))
    head = make_head(space, 8, box_distribution="beta")
    assert isinstance(head.parts[2], BetaHead) and head.param_sizes == [2, 2, 0]
    params = _params(head, batch=4)
    actions = head.sample(params, torch.Generator().manual_seed(0))
    assert actions.shape == (4, 2) and torch.isfinite(head.log_prob(params, actions)).all()
    assert torch.isfinite(head.entropy(params)).all()
    assert all(space.contains(head.row(head.to_env(actions), i)) for i in range(4))


@pytest.mark.parametrize("normalized", [False, True])
def test_censored_gaussian_scores_clipped_draws_by_their_tails(normalized):
    """Inside the box the density of torch's Normal; a draw clipped to a bound the log of the
    tail's probability (torch's Normal.cdf) in the environment's units; finite gradients on
    every side, also for an unbounded dimension."""
    space = spaces.Box(np.array([0.0, -2.0, -np.inf]), np.array([1.0, 2.0, np.inf]))
    coords = "normalized" if normalized else "env"
    head = make_head(space, 8, box_distribution="gaussian-censored", box_coords=coords, log_std_init=0.3)
    assert isinstance(head, CensoredGaussianHead)
    params = _params(head, batch=256).detach().requires_grad_(True)
    stored = head.sample(params, torch.Generator().manual_seed(1))
    mean, std = head.env_mean_std(params)
    x = head.to_env_units(stored)
    normal = D.Normal(mean, std)
    low, high = (
        torch.as_tensor(space.low, dtype=torch.float32),
        torch.as_tensor(space.high, dtype=torch.float32),
    )
    expected = torch.where(
        x <= low,
        normal.cdf(low).log(),
        torch.where(x >= high, (1 - normal.cdf(high)).log(), normal.log_prob(x)),
    )
    log_det = head.log_det if normalized else 0.0  # (stored units: a constant for bounded dimensions)
    got = head.log_prob(params, stored)
    assert (x <= low).any() and (x >= high).any() and ((x > low) & (x < high)).any()
    inside = (x > low) & (x < high)
    shift = torch.where(inside, torch.log(head.half_width) if normalized else torch.zeros(3), torch.zeros(3))
    torch.testing.assert_close(got, (expected + shift).sum(-1) - log_det, rtol=1e-4, atol=1e-4)
    got.sum().backward()
    assert torch.isfinite(params.grad).all()
    # the greedy action and the environment's action are the plain Gaussian's
    plain = make_head(space, 8, box_coords=coords)
    assert np.array_equal(head.to_env(stored.detach()), plain.to_env(stored.detach()))
    with pytest.raises(ConfigError, match="squash"):
        make_head(space, 8, box_distribution="gaussian-censored", squash=True)
