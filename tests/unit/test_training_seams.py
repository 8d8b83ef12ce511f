"""The training parts through their own interfaces: Collector, Learner, Trainer state, Collectives."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.algo.collector import Collector
from ppo_envkit.algo.context import RankContext
from ppo_envkit.algo.learner import Learner, UpdateStats
from ppo_envkit.errors import NonFiniteError
from ppo_envkit.parallel.collectives import Collectives, SingleProcess

from ..trainers import unit_trainer

AGENTS = Path(__file__).resolve().parents[2] / "agents"


def _context(**overrides) -> tuple[PPO, RankContext]:
    settings = {"env.id": "CartPole-v1", "env.num_envs": 3, "ppo.n_steps": 32, "run.seed": 5, **overrides}
    config = TrainConfig().with_overrides(settings)
    agent = PPO(config=config)
    return agent, RankContext(agent.policy, config, agent.generator, SingleProcess())


def test_collector_fills_a_rollout_and_counts_episodes():
    _, context = _context()
    collector = Collector(context)
    collector.start(iteration=0, num_timesteps=0)
    rollout = collector.collect(num_timesteps=0)
    assert rollout.size == 3 * 32 and rollout.obs.shape == (32, 3, 4)
    assert set(torch.unique(rollout.actions).tolist()) <= {0.0, 1.0}
    # every value stored is the critic's value of the stored observation, at collection time
    with torch.no_grad():
        torch.testing.assert_close(rollout.values, context.policy.value(rollout.obs))
    metrics = collector.episode_metrics()
    assert metrics["episodes"] == collector.episodes.finished
    collector.close()


def test_a_collector_restored_from_state_replays_the_same_episodes():
    """The seam of exact resume: state() of one collector, load_state() into a fresh one."""
    agent, context = _context()
    first = Collector(context)
    first.start(0, 0)
    first.collect(0)
    meta, tensors = first.state()
    generator_state = agent.generator.get_state()
    policy_state = {k: v.clone() for k, v in agent.policy.state_dict().items()}  # statistics too
    expected = first.collect(96).obs.clone()
    first.close()

    agent.generator.set_state(generator_state)
    agent.policy.load_state_dict(policy_state)
    second = Collector(context)
    second.load_state(meta, tensors)
    second.start(1, 96)
    torch.testing.assert_close(second.next_obs, expected[0])
    torch.testing.assert_close(second.collect(96).obs, expected)
    second.close()


def test_learner_update_returns_typed_statistics_and_moves_the_weights():
    agent, context = _context(**{"ppo.n_epochs": 2, "ppo.minibatch_size": 32})
    collector = Collector(context)
    collector.start(0, 0)
    rollout = collector.collect(0)
    rollout.compute_advantages(0.99, 0.95)
    before = [p.detach().clone() for p in agent.policy.parameters()]
    stats = Learner(context).update(rollout, progress=0.0, where="in a test")
    collector.close()
    assert isinstance(stats, UpdateStats)
    assert stats.gradient_steps == 2 * 3 and stats.stopped_early == 0.0
    assert all(math.isfinite(v) for v in (stats.policy_loss, stats.value_loss, stats.entropy, stats.loss))
    assert stats.action_std is None and "action_std" not in stats.metrics()
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.policy.parameters(), strict=True))


def test_target_kl_stops_the_epochs_without_taking_that_step():
    _, context = _context(**{"ppo.n_epochs": 10, "ppo.minibatch_size": 16, "ppo.target_kl": 1e-6})
    collector = Collector(context)
    collector.start(0, 0)
    rollout = collector.collect(0)
    rollout.compute_advantages(0.99, 0.95)
    stats = Learner(context).update(rollout, progress=0.0, where="in a test")
    collector.close()
    # the first minibatch has ratio 1 (KL 0) and is taken; a later one exceeds 1e-6 and stops
    assert stats.stopped_early == 1.0 and 1 <= stats.gradient_steps < 10 * 6


def test_trainer_state_round_trips_counters_optimizer_and_episodes():
    agent = PPO.from_preset("cartpole", overrides={"env.num_envs": 2, "ppo.n_steps": 16})
    trainer = unit_trainer(agent)
    trainer.plan(64)
    trainer.train()
    meta, tensors = trainer.resume_state()
    other = PPO.from_preset("cartpole", overrides={"env.num_envs": 2, "ppo.n_steps": 16})
    restored = unit_trainer(other)
    restored.load_resume_state(meta, tensors)
    assert (other.num_timesteps, other.iteration, other.target_timesteps) == (64, 2, 64)
    assert torch.equal(other.generator.get_state(), agent.generator.get_state())
    for state, loaded in zip(
        trainer.learner.optimizer.state_dict()["state"].values(),
        restored.learner.optimizer.state_dict()["state"].values(),
        strict=True,
    ):
        assert torch.equal(state["exp_avg_sq"], loaded["exp_avg_sq"])
    assert restored.collector.episodes.finished == trainer.collector.episodes.finished
    trainer.close()
    restored.close()


def test_acting_creates_no_optimizer():
    """Creating Adam imports torch._dynamo (~0.8 s); loading and acting must not pay for it."""
    script = (
        "import sys, numpy as np; from ppo_envkit import load_agent; "
        f"agent = load_agent({str(AGENTS / 'lunarlander')!r}); agent.predict(np.zeros(8, np.float32)); "
        "assert 'torch._dynamo' not in sys.modules, 'acting imported torch._dynamo'"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


class _Mirror(Collectives):
    """Two ranks holding the same data, simulated in one process: sums double, rows repeat."""

    rank, size = 0, 2

    def all_reduce(self, tensor, op="sum"):
        return tensor.mul_(2.0) if op == "sum" else tensor

    def broadcast(self, tensor):
        pass

    def gather_rows(self, tensor):
        return torch.cat([tensor, tensor])


def test_collectives_built_on_the_primitives():
    mirror, local = _Mirror(), SingleProcess()
    adv = torch.randn(50, generator=torch.Generator().manual_seed(0))
    twice = torch.cat([adv, adv])
    expected = (adv - twice.mean()) / (twice.std() + 1e-8)  # the combined minibatch's moments
    torch.testing.assert_close(mirror.normalize_advantages(adv), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(local.normalize_advantages(adv), (adv - adv.mean()) / (adv.std() + 1e-8))
    grads = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0])  # three gradients and two spare slots
    loss, kl = mirror.average_gradients(grads, (4.0, 0.5))
    torch.testing.assert_close(grads[:3], torch.tensor([1.0, 2.0, 3.0]))  # the mean of equal gradients
    assert (loss, kl) == (4.0, 0.5)
    assert mirror.sum(torch.tensor([1.0])).item() == 2.0
    assert mirror.rank0_decides(True) and not mirror.rank0_decides(False)
    assert mirror.weights_identical(torch.nn.Linear(2, 2))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # numpy, on the inf targets
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_loss_names_the_update(value):
    _, context = _context()
    collector = Collector(context)
    collector.start(0, 0)
    rollout = collector.collect(0)
    rollout.compute_advantages(0.99, 0.95)
    rollout.packed[:, -2] = value  # the value targets
    with pytest.raises(NonFiniteError, match="non-finite loss in update 7"):
        Learner(context).update(rollout, progress=0.0, where="in update 7 (after 10 steps)")
    collector.close()


def test_a_new_learning_rate_reaches_the_existing_optimizer():
    """With ``ppo.anneal_lr`` off, a ``ppo.learning_rate`` changed between training calls is
    the one the next update steps with (the optimizer exists by then)."""
    agent, _ = _context(**{"ppo.anneal_lr": False, "ppo.learning_rate": 1e-3, "run.eval_interval": 0})
    seen: list[float] = []

    def record(_agent, metrics):
        seen.append(metrics["learning_rate"])

    agent.learn(96, callback=record)
    agent.config = agent.config.with_overrides({"ppo.learning_rate": 0.02})
    agent.learn(96, callback=record)
    assert seen == [1e-3, 0.02]
