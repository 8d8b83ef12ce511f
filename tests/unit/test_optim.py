"""FlatAdam: the arithmetic of torch.optim.Adam and clip_grad_norm_, over one flat buffer."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from ppo_envkit.algo.optim import FlatAdam, load_optimizer_state, optimizer_state


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 3))


def _gradients(net: nn.Module, step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=g) * (3.0 if step % 2 else 0.1) for p in net.parameters()]


@pytest.mark.parametrize("max_norm", [0.5, 1e6])  # clipped, and never clipped
def test_matches_torch_adam_with_gradient_clipping(max_norm):
    mine, reference = _net(), _net()
    flat = FlatAdam(mine, lr=3e-3, eps=1e-5)
    adam = torch.optim.Adam(reference.parameters(), lr=3e-3, eps=1e-5)
    for step in range(25):
        grads = _gradients(mine, step)
        flat.set_grads(grads)
        flat.clip_grad_norm(max_norm)
        flat.step()
        for p, g in zip(reference.parameters(), grads, strict=True):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm)
        adam.step()
        if step == 10:
            adam.param_groups[0]["lr"] = flat.param_groups[0]["lr"] = 1e-3  # annealing, as the learner does
    for a, b in zip(mine.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameters_and_gradients_are_views_of_the_flat_buffers():
    net = _net()
    before = copy.deepcopy(net.state_dict())
    flat = FlatAdam(net, lr=1e-3, eps=1e-8)
    for name, value in net.state_dict().items():
        assert torch.equal(value, before[name])  # values kept
    with torch.no_grad():
        flat.data.add_(1.0)
    assert torch.equal(net[0].bias, before["0.bias"] + 1.0)
    flat.set_grads([torch.ones_like(p) for p in net.parameters()])
    assert torch.equal(net[2].weight.grad, torch.ones(3, 16)) and flat.grad.sum() == flat.grad.numel()
    net.load_state_dict(before)  # in place: still views
    assert torch.equal(flat.data[: net[0].weight.numel()], before["0.weight"].reshape(-1))


def test_state_dict_has_torch_adams_layout_and_round_trips():
    net = _net()
    flat = FlatAdam(net, lr=1e-3, eps=1e-8)
    assert flat.state_dict()["state"] == {}  # like torch before the first step
    for step in range(3):
        flat.set_grads(_gradients(net, step))
        flat.step()
    saved = flat.state_dict()
    reference = torch.optim.Adam(_net().parameters(), lr=1e-3)
    assert set(saved["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    reference.load_state_dict(saved)  # torch.optim.Adam reads it
    other = FlatAdam(_net(), lr=1e-3, eps=1e-8)
    other.load_state_dict(reference.state_dict())  # and it reads torch.optim.Adam's
    torch.testing.assert_close(other.exp_avg_sq, flat.exp_avg_sq)
    assert float(other.state[other.params[0]]["step"]) == 3.0


def test_checkpoint_form_keeps_its_layout_and_round_trips():
    """The (JSON part, tensors) a checkpoint stores: the layout old checkpoints have."""
    net = _net()
    flat = FlatAdam(net, lr=1e-3, eps=1e-5)
    assert optimizer_state(flat) == (
        {"param_groups": [{**flat.param_groups[0], "params": [0, 1, 2, 3]}], "scalars": {}},
        {},
    )
    for step in range(2):
        flat.set_grads(_gradients(net, step))
        flat.step()
    meta, tensors = optimizer_state(flat)
    assert meta == {
        "param_groups": [
            {
                "lr": 1e-3,
                "betas": (0.9, 0.999),
                "eps": 1e-5,
                "weight_decay": 0.0,
                "amsgrad": False,
                "maximize": False,
                "params": [0, 1, 2, 3],
            }
        ],
        "scalars": {},
    }
    assert sorted(tensors) == sorted(
        f"optim.{i}.{k}" for i in range(4) for k in ("exp_avg", "exp_avg_sq", "step")
    )
    assert tensors["optim.2.exp_avg"].shape == (3, 16) and float(tensors["optim.0.step"]) == 2.0
    other = FlatAdam(_net(), lr=5.0, eps=1.0)
    load_optimizer_state(other, meta, {**tensors, "rng": torch.zeros(3)})  # other tensors are ignored
    assert other.param_groups[0]["lr"] == 1e-3 and other.param_groups[0]["eps"] == 1e-5
    for name in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(getattr(other, name), getattr(flat, name), rtol=0, atol=0)
    assert float(other.state[other.params[3]]["step"]) == 2.0


def test_creating_it_imports_no_dynamo():
    script = (
        "import sys, torch; from ppo_envkit.algo.optim import FlatAdam; "
        "FlatAdam(torch.nn.Linear(3, 2), lr=1e-3, eps=1e-5).step(); "
        "assert 'torch._dynamo' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
