"""Running statistics and their use at eval time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ppo_envkit.algo.normalize import ObsNormalizer, RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 3))
    rms = RunningMeanStd((3,), epsilon=0.0)
    rms.count.fill_(0)
    for chunk in np.array_split(data, 7):
        rms.update(torch.tensor(chunk))
    np.testing.assert_allclose(rms.mean.numpy(), data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var.numpy(), data.var(0), rtol=1e-10)


def test_numpy_and_torch_merges_agree():
    """The CPU path merges in numpy, GPU tensors in torch (run on the CPU here): same statistics."""
    data = torch.tensor(np.random.default_rng(1).normal(-1.0, 4.0, size=(500, 2)))
    in_numpy, in_torch = RunningMeanStd((2,)), RunningMeanStd((2,))
    for chunk in data.split(64):
        in_numpy.update(chunk.float())
        in_torch._merge(chunk.float().to(torch.float64), in_torch.mean, in_torch.var, in_torch.count)
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(in_numpy, name), getattr(in_torch, name), rtol=1e-12, atol=0)
    np.testing.assert_allclose(in_numpy.var.numpy(), data.numpy().var(0), rtol=1e-6)


def test_obs_normalizer_only_touches_continuous_columns_and_clips():
    norm = ObsNormalizer(3, torch.tensor([True, True, False]), clip=2.0, enabled=True)
    norm.update(torch.tensor([[0.0, 10.0, 1.0], [2.0, 30.0, 0.0]]))
    out = norm(torch.tensor([[1.0, 100.0, 1.0]]))
    assert abs(out[0, 0].item()) < 1e-3  # mean 1
    assert out[0, 1].item() == 2.0  # clipped
    assert out[0, 2].item() == 1.0  # one-hot column untouched


def test_obs_normalizer_statistics_take_effect_on_load():
    a = ObsNormalizer(2, torch.tensor([True, True]), clip=10.0, enabled=True)
    a.update(torch.tensor([[5.0, -5.0], [7.0, -9.0]]))
    b = ObsNormalizer(2, torch.tensor([True, True]), clip=10.0, enabled=True)
    b.load_state_dict(a.state_dict())
    x = torch.tensor([[6.0, -7.0]])
    torch.testing.assert_close(a(x), b(x))


def test_reward_scaler_divides_by_return_std_and_resets_at_episode_end():
    scaler = RewardScaler(gamma=0.9, clip=100.0, enabled=True)
    returns = torch.zeros(2)
    r = torch.tensor([1.0, 2.0])
    scaler(r, returns, torch.tensor([False, True]))
    assert returns[0].item() == 1.0 and returns[1].item() == 0.0
    scaled = scaler(r, returns, torch.tensor([False, False]))
    std = float(torch.sqrt(scaler.rms.var + 1e-8))
    torch.testing.assert_close(scaled, r / std)
    assert returns[0].item() == pytest.approx(1.9)


def test_merging_moments_equals_the_statistics_of_all_rows():
    """What ranks do at the end of a rollout: shared base + each rank's new rows = all rows."""
    import torch

    from ppo_envkit.algo.normalize import RunningMeanStd

    g = torch.Generator().manual_seed(0)
    first, a, b = (torch.randn(n, 3, generator=g, dtype=torch.float64) * 3 + 1 for n in (50, 20, 7))
    base, ranks = RunningMeanStd((3,)), [RunningMeanStd((3,), epsilon=0.0) for _ in range(2)]
    base.update(first)
    ranks[0].update(a)
    ranks[1].update(b[:4])
    ranks[1].update(b[4:])
    merged = RunningMeanStd((3,))
    merged.set_merged(base.moments(), torch.stack([r.moments() for r in ranks]))
    everything = RunningMeanStd((3,))
    everything.update(torch.cat([first, a, b]))
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(getattr(merged, name), getattr(everything, name))
    empty = RunningMeanStd((3,), epsilon=0.0)
    merged.set_merged(base.moments(), empty.moments()[None])  # a rank that saw nothing
    torch.testing.assert_close(merged.mean, base.mean)
