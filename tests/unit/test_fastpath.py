"""The two backends of the hot path agree: the written-out numpy PPO gradient equals autograd's
on the same loss, setting by setting, and both act alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from ppo_envkit import PPO
from ppo_envkit.algo.backend import AutogradBackend, Backend
from ppo_envkit.algo.context import Backends
from ppo_envkit.algo.fastpath import NumpyBackend
from ppo_envkit.algo.losses import LossSettings
from ppo_envkit.algo.optim import FlatAdam
from ppo_envkit.algo.policy import ActorCritic
from ppo_envkit.algo.rollout import Minibatch, RolloutBuffer
from ppo_envkit.config import EnvConfig, PolicyConfig, RunConfig
from ppo_envkit.parallel.collectives import Collectives, SingleProcess

supports = NumpyBackend.supports
LOCAL = SingleProcess()


class Mirror(Collectives):
    """Two ranks holding the same data, in one process: advantages pooled over both."""

    rank, size = 0, 2

    def all_reduce(self, tensor, op="sum"):
        return tensor.mul_(2.0) if op == "sum" else tensor

    def broadcast(self, tensor):
        pass

    def gather_rows(self, tensor):
        return torch.cat([tensor, tensor])


DISCRETE = spaces.Discrete(4)
BOX = spaces.Box(-1.0, 1.0, (3,))
MULTI = spaces.MultiDiscrete([2, 3, 4])
BINARY = spaces.MultiBinary(3)
HEADS = [DISCRETE, BOX, MULTI, BINARY]
HEAD_IDS = ["categorical", "gaussian", "multicategorical", "bernoulli"]


def make_policy(action_space, **policy):
    torch.manual_seed(0)
    obs_space = spaces.Box(-5.0, 5.0, (6,))
    config = PolicyConfig(**{"hidden_sizes": [16, 12], **policy})
    return ActorCritic(obs_space, action_space, config, EnvConfig(), 0.99)


def make_batch(policy, n=64):
    """A minibatch whose ratios fall inside, at and beyond the clip range, with exact ties."""
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(n, 6, generator=g) * 2
    with torch.no_grad():
        actions, logp, values, _ = policy.act(obs, generator=g)
    shift = torch.randn(n, generator=g) * 0.3
    shift[::5] = 0.0  # ratio exactly 1: both clip branches tie
    old_logp = logp + shift
    old_values = values + torch.randn(n, generator=g) * 0.4
    old_values[::7] = values[::7]  # value-clip branches tie
    advantages = torch.randn(n, generator=g)
    returns = values + torch.randn(n, generator=g)
    return Minibatch(obs, actions, old_logp, advantages, returns, old_values)


def as_rollout(batch: Minibatch) -> RolloutBuffer:
    """A rollout holding exactly ``batch``'s rows (one environment copy), packed for training."""
    n = batch.obs.shape[0]
    mask_dim = 0 if batch.masks is None else batch.masks.shape[1]
    rollout = RolloutBuffer(n, 1, batch.obs.shape[1], batch.actions.shape[1], torch.device("cpu"), mask_dim)
    c = rollout.columns
    rollout.packed[:, c.obs] = batch.obs
    rollout.packed[:, c.actions] = batch.actions
    for column, values in zip(c[2:6], batch[2:6], strict=True):
        rollout.packed[:, column] = values
    if batch.masks is not None:
        rollout.packed[:, c.masks] = batch.masks.to(torch.float32)
    return rollout


def backend_step(make_backend, policy, batch, collectives=LOCAL, **kw):
    """One gradient step of a backend (built after the optimizer: it holds the parameters) on
    ``batch``: its losses and the gradients it left in the optimizer's buffer."""
    optimizer = FlatAdam(policy, lr=1e-3, eps=1e-5)
    backend: Backend = make_backend(policy)
    rows = torch.arange(batch.obs.shape[0])
    gen = torch.Generator().manual_seed(0)
    stats = backend.gradients(as_rollout(batch), rows, LossSettings(**kw), collectives, gen, optimizer)
    assert all(type(v) is float for v in stats)
    return [torch.tensor(v, dtype=torch.float64) for v in stats], [
        p.grad.clone() for p in policy.parameters()
    ]


def autograd_step(policy, batch, collectives=LOCAL, **kw):
    return backend_step(AutogradBackend, policy, batch, collectives, **kw)


def analytic_step(policy, batch, collectives=LOCAL, **kw):
    return backend_step(NumpyBackend, policy, batch, collectives, **kw)


def assert_fast_path_matches_autograd(policy, batch, kw) -> None:
    """The numpy fast path's losses and gradients equal autograd's (each parameter named)."""
    want_losses, want_grads = autograd_step(policy, batch, **kw)
    got_losses, got_grads = analytic_step(policy, batch, **kw)
    names = [name for name, _ in policy.named_parameters()]
    for name, want, got in zip(names, want_grads, got_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
    for want, got in zip(want_losses, got_losses, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


SETTINGS = [
    {"clip": 0.2, "vclip": None, "ent_coef": 0.01, "vf_coef": 0.5, "norm_adv": True},
    {"clip": 0.1, "vclip": 0.2, "ent_coef": 0.0, "vf_coef": 1.0, "norm_adv": False},
    {"clip": 0.3, "vclip": 0.05, "ent_coef": 0.05, "vf_coef": 0.25, "norm_adv": True},
]


@pytest.mark.parametrize("space", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("policy_kw", [{}, {"activation": "relu"}, {"shared_trunk": True}])
@pytest.mark.parametrize("kw", SETTINGS)
def test_analytic_gradient_matches_autograd(space, policy_kw, kw):
    policy = make_policy(space, **policy_kw)
    assert supports(policy)
    batch = make_batch(policy)
    assert_fast_path_matches_autograd(policy, batch, kw)


def test_analytic_gradient_matches_autograd_in_normalized_box_coordinates():
    space = spaces.Box(np.array([0.0, -2.0, -1.0], np.float32), np.array([1.0, 6.0, 1.0], np.float32))
    policy = make_policy(space, box_coords="normalized")
    assert supports(policy) and policy.head.normalized
    batch = make_batch(policy)
    assert_fast_path_matches_autograd(policy, batch, SETTINGS[0])


def test_advantages_normalized_over_the_ranks_the_same_way():
    """Pooled over ranks (the combined minibatch's moments), both backends agree, and the
    normalization differs from the single-process one."""
    policy = make_policy(DISCRETE)
    batch = make_batch(policy)
    batch = batch._replace(advantages=batch.advantages * 3 + 1)
    _, want = autograd_step(policy, batch, Mirror(), **SETTINGS[0])
    _, got = analytic_step(policy, batch, Mirror(), **SETTINGS[0])
    for w, g in zip(want, got, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)
    _, local = analytic_step(policy, batch, **SETTINGS[0])
    assert any(not torch.allclose(a, b) for a, b in zip(got, local, strict=True))


@pytest.mark.parametrize(
    "space, policy_kw",
    [(BOX, {"squash": True}), (DISCRETE, {"activation": "elu"}), (BOX, {"box_distribution": "beta"})],
    ids=["squashed", "elu", "beta"],
)
def test_other_policies_fall_back_to_autograd(space, policy_kw):
    policy = make_policy(space, **policy_kw)
    assert not supports(policy)
    # asked for analytic gradients, such a policy still gets autograd (it has no registered formula)
    assert isinstance(Backends(policy).select(RunConfig(analytic_gradients=True)), AutogradBackend)


def test_training_takes_the_same_steps_either_way():
    """A few updates with analytic gradients stay within float rounding of autograd's."""
    weights = []
    for analytic in (True, False):
        agent = PPO.from_preset(
            "cartpole",
            overrides={"run.analytic_gradients": analytic, "ppo.n_steps": 64, "env.num_envs": 4},
        )
        agent.learn(4 * 64 * 3)
        weights.append(torch.cat([p.detach().reshape(-1) for p in agent.policy.parameters()]))
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("space", HEADS, ids=HEAD_IDS)
@pytest.mark.parametrize("policy_kw", [{}, {"activation": "relu"}, {"shared_trunk": True}])
def test_numpy_forward_acts_like_the_module(space, policy_kw):
    policy = make_policy(space, **policy_kw)
    obs = make_batch(policy).obs
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with torch.no_grad():
        want = policy.act(obs, generator=g1)[:3]
    got = NumpyBackend(policy).act(obs, g2)
    torch.testing.assert_close(got[0], want[0])  # same noise, same actions
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-5)


def test_numpy_views_follow_the_parameters():
    """In-place updates (the optimizer) are seen at once; moved memory at the next select()."""
    policy = make_policy(DISCRETE)
    obs = make_batch(policy).obs
    backends = Backends(policy)

    def values_agree():
        with torch.no_grad():
            want = policy.act(obs)[2]
        backend = backends.select(RunConfig(analytic_gradients=True))
        assert isinstance(backend, NumpyBackend)
        torch.testing.assert_close(backend.act(obs)[2], want, rtol=1e-5, atol=1e-5)

    values_agree()
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(1.5)
    values_agree()
    for p in policy.parameters():
        p.data = p.data.clone() * 0.5
    values_agree()


def test_fast_path_off_or_unsupported_means_autograd():
    """One place decides: numpy when asked for and supported, else autograd (compiled if asked)."""
    on, off = RunConfig(analytic_gradients=True), RunConfig(analytic_gradients=False)
    assert isinstance(Backends(make_policy(DISCRETE)).select(on), NumpyBackend)
    assert type(Backends(make_policy(DISCRETE)).select(off)) is AutogradBackend
    assert type(Backends(make_policy(DISCRETE, activation="elu")).select(on)) is AutogradBackend
    assert type(Backends(make_policy(BOX, squash=True)).select(on)) is AutogradBackend
