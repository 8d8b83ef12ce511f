"""The composite head (Tuple/Dict action spaces) against torch.distributions of its parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch import distributions as D

from ppo_envkit.algo.heads import BetaHead, CompositeHead, GaussianHead, make_head
from ppo_envkit.errors import ConfigError
from ppo_envkit.spaces import UnsupportedSpaceError, action_leaves, check_action_space

BOX2 = spaces.Box(-1.0, 1.0, (2,))

SPACES = {
    "tuple-discrete-box": spaces.Tuple((spaces.Discrete(3), BOX2)),
    "dict-discrete-box": spaces.Dict(
        {"move": spaces.Discrete(4, start=1), "power": spaces.Box(0.0, 2.0, (1,))}
    ),
    "tuple-multidiscrete-box": spaces.Tuple((spaces.MultiDiscrete([3, 2]), BOX2)),
    "dict-multibinary-box": spaces.Dict({"keys": spaces.MultiBinary(3), "aim": BOX2}),
    "nested": spaces.Dict(
        {
            "kind": spaces.Discrete(2),
            "params": spaces.Tuple((spaces.Box(-1, 1, (1,)), spaces.Box(-2, 2, (3,)))),
            "extra": spaces.Dict({"b": spaces.MultiBinary(2), "m": spaces.MultiDiscrete([2, 2])}),
        }
    ),
    "parametrized": spaces.Tuple(
        (spaces.Discrete(3), spaces.Tuple((spaces.Box(-1, 1, (1,)), spaces.Box(-1, 1, (2,)), BOX2)))
    ),
}


def _leaf_dists(head: CompositeHead, params, actions):
    """torch.distributions of each part (conditioned means picked by the taken choice)."""
    ps = params.split(head.param_sizes, -1)
    acts = actions.split(head.storage_sizes, -1)
    choice = None if head.choice is None else acts[head.choice][:, 0].long()
    out = []
    for i, (part, p) in enumerate(zip(head.parts, ps, strict=True)):
        space = part.space
        if isinstance(space, spaces.Discrete):
            out.append(D.Independent(D.OneHotCategorical(logits=p), 0))
        elif isinstance(space, spaces.MultiDiscrete):
            out.append([D.Categorical(logits=q) for q in p.split(part.nvec, -1)])
        elif isinstance(space, spaces.MultiBinary):
            out.append(D.Independent(D.Bernoulli(logits=p), 1))
        else:
            if head.conditioned[i]:
                p = p.reshape(len(p), head.choices, -1)[torch.arange(len(p)), choice]
            out.append(_box_dist(part, p))
    return out, acts


class _BoxBeta:
    """torch's Beta of a :class:`BetaHead`'s concentrations (their parametrization is tested in
    test_heads.py), mapped to the box ``low + width * x``: the density of ``y`` is the Beta's at
    ``(y - low) / width`` divided by ``prod(width)``, and the entropy grows by ``sum(log width)``
    (torch's affine transform has no entropy)."""

    def __init__(self, part, p):
        alpha, beta = part.concentrations(p)
        self.beta = D.Independent(D.Beta(alpha, beta), 1)
        self.low, self.width = part.low, part.width

    def log_prob(self, y):
        return self.beta.log_prob((y - self.low) / self.width) - self.width.log().sum()

    def entropy(self):
        return self.beta.entropy() + self.width.log().sum()


def _box_dist(part, p):
    return _BoxBeta(part, p) if isinstance(part, BetaHead) else _normal(part, p)


def _normal(part, p):
    """The Gaussian of a Box part's parameters (``[mean, log_std]`` with a state-dependent std), in
    the environment's units: with normalized coordinates, that of ``centre + half_width * u``."""
    if not part.state_std:
        mean, std = p, part.log_std.exp().expand_as(p)
    else:
        mean, log_std = p.split(part.storage_dim, -1)
        std = log_std.clamp(-5.0, 2.0).exp()
    if part.normalized:
        mean, std = part.centre + part.half_width * mean, part.half_width * std
    return D.Independent(D.Normal(mean, std), 1)


def _ref_log_prob(head, params, actions):
    dists, acts = _leaf_dists(head, params, actions)
    logps = []
    for d, a, part in zip(dists, acts, head.parts, strict=True):
        if isinstance(d, list):
            logps.append(sum(c.log_prob(a[:, j].long()) for j, c in enumerate(d)))
        elif isinstance(part.space, spaces.Discrete):
            logps.append(d.log_prob(torch.nn.functional.one_hot(a[:, 0].long(), part.space.n).float()))
        elif isinstance(part.space, spaces.Box):  # the density in the environment's units (unclipped)
            logps.append(d.log_prob(part.to_env_units(a)))
        else:
            logps.append(d.log_prob(a))
    if not head.group:
        return sum(logps)
    choice = acts[head.choice][:, 0].long()
    rest = sum(lp for i, lp in enumerate(logps) if i not in head.group)
    chosen = torch.stack([logps[i] for i in head.group], -1)[torch.arange(len(choice)), choice]
    return rest + chosen


def _ref_entropy(head, params, actions):
    dists, _ = _leaf_dists(head, params, actions)
    ents = [sum(c.entropy() for c in d) if isinstance(d, list) else d.entropy() for d in dists]
    ps = params.split(head.param_sizes, -1)
    probs = None if head.choice is None else ps[head.choice].softmax(-1)
    for i, part in enumerate(head.parts):
        per_state = isinstance(part, BetaHead) or (isinstance(part, GaussianHead) and part.state_std)
        if not (head.conditioned[i] and per_state):
            continue
        per_choice = ps[i].reshape(len(params), head.choices, -1)
        if i in head.group:  # the parameters of choice c: their distribution for choice c
            ents[i] = _box_dist(part, per_choice[:, head.group.index(i)]).entropy()
        else:  # the expectation under the choice's probabilities of each choice's entropy
            each = torch.stack([_box_dist(part, per_choice[:, c]).entropy() for c in range(head.choices)], -1)
            ents[i] = (probs * each).sum(-1)
    if not head.group:
        return sum(ents)  # (a conditioned fixed-std Gaussian's entropy does not depend on its mean)
    rest = sum(e for i, e in enumerate(ents) if i not in head.group)
    return rest + (probs * torch.stack([ents[i] for i in head.group], -1)).sum(-1)


def _masks(head: CompositeHead, batch: int, gen: torch.Generator) -> torch.Tensor:
    """Random masks leaving at least one legal value in every group of every maskable part."""
    rows = []
    for part, n in zip(head.parts, head.mask_sizes, strict=True):
        if not n:
            continue
        space = part.space
        groups = (
            [int(space.n)]
            if isinstance(space, spaces.Discrete)
            else part.nvec
            if isinstance(space, spaces.MultiDiscrete)
            else [2] * part.storage_dim
        )
        for g in groups:
            m = torch.rand(batch, g, generator=gen) < 0.6
            m[torch.arange(batch), torch.randint(0, g, (batch,), generator=gen)] = True
            rows.append(m)
    return torch.cat(rows, -1)


CASES = [
    (name, composite, chosen)
    for name in SPACES
    for composite in ("independent", "conditional")
    for chosen in (("all", "chosen") if name == "parametrized" else ("all",))
    if not (composite == "conditional" and name in ("tuple-multidiscrete-box", "dict-multibinary-box"))
]


#: (composite_std, box_coords, box_distribution): the Gaussian's settings, and the Beta (which
#: neither of the Gaussian's settings changes)
BOX_SETTINGS = [
    *[(std, coords, "gaussian") for std in ("fixed", "state") for coords in ("env", "normalized")],
    ("auto", "auto", "beta"),
    ("auto", "auto", "beta-softplus"),
]


@pytest.mark.parametrize(("std", "coords", "dist"), BOX_SETTINGS, ids=["-".join(b) for b in BOX_SETTINGS])
@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize(("name", "composite", "params_mode"), CASES)
def test_log_prob_and_entropy_are_sums_of_the_parts(name, composite, params_mode, masked, std, coords, dist):
    torch.manual_seed(1)
    space = SPACES[name]
    head = make_head(
        space,
        8,
        log_std_init=-0.4,
        composite=composite,
        composite_params=params_mode,
        composite_std=std,
        box_coords=coords,
        box_distribution=dist,
    )
    box_parts = [part for part in head.parts if isinstance(part.space, spaces.Box)]
    assert all(isinstance(part, BetaHead) == dist.startswith("beta") for part in box_parts)
    assert isinstance(head, CompositeHead)
    gen = torch.Generator().manual_seed(2)
    params = head(torch.randn(256, 8) * 3)
    if masked:
        mask = _masks(head, 256, gen)
        params = head.apply_mask(params, mask)
    actions = head.sample(params, gen)
    assert actions.shape == (256, head.storage_dim)
    torch.testing.assert_close(head.log_prob(params, actions), _ref_log_prob(head, params, actions))
    torch.testing.assert_close(head.entropy(params, gen), _ref_entropy(head, params, actions))
    if masked:  # sampled and most likely actions are legal in every discrete part
        for acts in (actions, head.mode(params)):
            assert torch.isfinite(head.log_prob(params, acts)).all()
            assert (head.log_prob(params, acts) > -1e6).all()


@pytest.mark.parametrize("dist", ["auto", "beta"])
@pytest.mark.parametrize("name", list(SPACES))
def test_to_env_gives_the_structure_the_space_declares(name, dist):
    space = SPACES[name]
    head = make_head(space, 8, box_distribution=dist)
    params = head(torch.randn(5, 8) * 100)  # Beta draws and modes near the bounds too
    batch = head.to_env(head.sample(params))
    for i in range(5):
        one = head.row(batch, i)
        assert space.contains(one), (one, space)
        if isinstance(space, spaces.Dict):
            assert list(one) == list(space.spaces)  # the space's key order
        # the episode history row turns back into the same action
        flat = head.history_rows(batch)[i]
        back = spaces.unflatten(space, flat)
        assert spaces.flatten(space, back).tolist() == flat.tolist()
    one = head.row(head.to_env(head.mode(params)), 0)
    assert space.contains(one)


def test_conditional_mean_follows_the_choice():
    space = spaces.Tuple((spaces.Discrete(3), BOX2))
    head = make_head(space, 8, composite="conditional")
    params = head(torch.randn(4, 8))
    per_choice = params[:, 3:].reshape(4, 3, 2)
    for c in range(3):
        actions = torch.cat([torch.full((4, 1), float(c)), per_choice[:, c]], -1)
        mode_logp = head.log_prob(params, actions)
        # the mode of the Gaussian given choice c is per_choice[:, c]: its density is the peak
        shifted = actions.clone()
        shifted[:, 1:] += 0.1
        assert (head.log_prob(params, shifted) < mode_logp).all()
    mode = head.mode(params)
    choice = params[:, :3].argmax(-1)
    torch.testing.assert_close(mode[:, 1:], per_choice[torch.arange(4), choice])


@pytest.mark.parametrize("dist", ["auto", "beta"])
def test_chosen_params_get_no_gradient_from_unchosen_choices(dist):
    space = SPACES["parametrized"]
    head = make_head(space, 8, composite_params="chosen", box_distribution=dist)
    params = head(torch.randn(6, 8)).detach().requires_grad_(True)
    actions = head.sample(params).detach()
    actions[:, 0] = 1.0  # choice 1 everywhere: parameters of choices 0 and 2 do not count
    head.log_prob(params, actions).sum().backward()
    grad = params.grad.split(head.param_sizes, -1)
    assert (grad[1] == 0).all() and (grad[3] == 0).all() and (grad[2] != 0).any()


def test_settings_that_need_a_choice_or_a_parametrized_space_say_so():
    with pytest.raises(ConfigError, match="needs a Discrete part"):
        make_head(spaces.Tuple((BOX2, BOX2)), 8, composite="conditional")
    with pytest.raises(ConfigError, match="parametrized action space"):
        make_head(spaces.Tuple((spaces.Discrete(3), BOX2)), 8, composite_params="chosen")


def test_check_action_space_names_the_unsupported_part():
    check_action_space(SPACES["nested"])
    with pytest.raises(UnsupportedSpaceError, match="part b is Text"):
        check_action_space(spaces.Dict({"a": spaces.Discrete(2), "b": spaces.Text(4)}))
    with pytest.raises(UnsupportedSpaceError, match="no parts"):
        check_action_space(spaces.Tuple(()))


def test_mask_layout_is_the_maskable_parts_concatenated():
    head = make_head(SPACES["nested"], 8)
    assert head.mask_size == 2 + 4 + 4  # Discrete(2), MultiBinary(2) (2 each), MultiDiscrete([2, 2])
    assert make_head(spaces.Tuple((BOX2, BOX2)), 8).mask_size is None
    params = head(torch.randn(3, 8))
    keeps = head.mask_keeps(torch.ones(3, head.mask_size, dtype=torch.bool))
    assert keeps.shape == params.shape and keeps.all()
    assert np.asarray(head.describe(params)["kind.probs"]).shape == (3, 2)


def _leaf_strategy():
    from hypothesis import strategies as st

    return st.one_of(
        st.integers(1, 5).map(spaces.Discrete),
        st.lists(st.integers(1, 4), min_size=1, max_size=3).map(spaces.MultiDiscrete),
        st.integers(1, 3).map(spaces.MultiBinary),
        st.integers(1, 3).map(lambda n: spaces.Box(-1.0, 1.0, (n,))),
    )


def _composite_strategy():
    from hypothesis import strategies as st

    def wrap(children):
        tuples = st.lists(children, min_size=1, max_size=3).map(lambda parts: spaces.Tuple(tuple(parts)))
        dicts = st.dictionaries(st.sampled_from("abcde"), children, min_size=1, max_size=3).map(spaces.Dict)
        return st.one_of(tuples, dicts)

    return wrap(st.recursive(_leaf_strategy(), wrap, max_leaves=6))


@pytest.mark.slow  # 30 random spaces: tens of seconds under load
def test_random_composite_spaces_match_torch_distributions():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        space=_composite_strategy(), conditional=st.booleans(), masked=st.booleans(), seed=st.integers(0, 99)
    )
    def check(space, conditional, masked, seed):
        head_kind = "independent"
        if conditional and any(isinstance(leaf, spaces.Discrete) for _, leaf in action_leaves(space)):
            head_kind = "conditional"
        torch.manual_seed(seed)
        head = make_head(space, 8, composite=head_kind)
        gen = torch.Generator().manual_seed(seed)
        params = head(torch.randn(32, 8) * 3)
        if masked and head.mask_size:
            params = head.apply_mask(params, _masks(head, 32, gen))
        actions = head.sample(params, gen)
        torch.testing.assert_close(head.log_prob(params, actions), _ref_log_prob(head, params, actions))
        torch.testing.assert_close(head.entropy(params, gen), _ref_entropy(head, params, actions))
        batch = head.to_env(actions)
        assert all(space.contains(head.row(batch, i)) for i in range(3))

    check()


def test_a_state_dependent_std_starts_at_log_std_init_and_learns_per_state():
    _check_state_std_learns_per_state(seed=0)


def _check_state_std_learns_per_state(seed: int) -> None:
    torch.manual_seed(seed)
    space = SPACES["parametrized"]
    head = make_head(space, 8, log_std_init=-0.4, composite_std="state")
    assert all(part.state_std for part in head.parts[1:]) and head.param_sizes == [3, 2, 4, 4]
    features = torch.randn(64, 8)
    # feature 0 positive in half of the states, negative in the other half: the objective below
    # then leaves the shared bias alone and moves the std mostly through feature 0's weight
    features[:, 0] = features[:, 0].abs() * torch.tensor([1.0, -1.0]).repeat(32)
    stds = head.describe(head(features))
    np.testing.assert_allclose(stds["1/0.std"], np.exp(-0.4), rtol=0.05)  # small weights: about the init
    # one small step that widens the std where feature 0 is positive, and narrows it elsewhere
    log_std = head.parts[1].mean_log_std(head(features).split(head.param_sizes, -1)[1])[1]
    (-(log_std.squeeze(-1) * features[:, 0].sign()).sum()).backward()
    with torch.no_grad():
        for p in head.parameters():
            p -= 0.01 * p.grad
    after = head.describe(head(features))["1/0.std"][:, 0]
    assert after[features[:, 0] > 0].mean() > np.exp(-0.4) > after[features[:, 0] < 0].mean()
    # a Box action space on its own keeps one learned log-std per dimension, whatever the setting
    plain = make_head(spaces.Box(-1, 1, (2,)), 8, composite_std="state")
    assert not plain.state_std and plain.out.out_features == 2


def test_by_default_composite_box_parts_are_normalized_and_a_box_action_space_is_not():
    space = SPACES["dict-discrete-box"]  # power: a box [0, 2]
    head = make_head(space, 8)
    power = head.parts[1]
    assert power.normalized and not make_head(space, 8, box_coords="env").parts[1].normalized
    np.testing.assert_array_equal(power.to_env(torch.zeros(1, 1)), [[1.0]])  # mean 0: the centre
    assert not make_head(spaces.Box(0.0, 2.0, (1,)), 8).normalized
    assert make_head(spaces.Box(0.0, 2.0, (1,)), 8, box_coords="normalized").normalized
