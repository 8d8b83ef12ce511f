"""Collection that steps half of the copies while the policy chooses the other half's actions.

With the ALE's vector (``env.vectorization=ale``) the copies step in C++ threads that release
the GIL, so stepping can overlap the policy's forward passes. The copies are in two halves,
A and B, one step apart in time but not in the rollout::

    choose A(t); send A(t)
    choose B(t); send B(t)        (while A steps)
    receive A(t); choose A(t+1); send A(t+1)   (while B steps)
    receive B(t); store step t of every copy
    ...

Everything stored is what the plain loop stores (:meth:`Collector.store_step` of both halves
at once, in the same order), so GAE, the episodes and reward scaling see one step of every copy
at a time; only the forward passes run on half batches, and each half's observations are
normalized with the statistics as they stand when they arrive (the plain loop updates them
once per step with every copy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .backend import Backend
from .rollout import RolloutBuffer

if TYPE_CHECKING:
    from .collector import Collector

__all__ = ["collect_pipelined"]


def collect_pipelined(collector: Collector, backend: Backend, num_timesteps: int) -> RolloutBuffer:
    """One rollout from ``collector``'s copies, whose vector steps halves (``parts``, ``send``,
    ``recv``: :class:`~ppo_envkit.parallel.ale_vector.AleVectorEnv`). For policies without
    memory and environments without action masks."""
    policy, envs, buf = collector.policy, collector.envs, collector.rollout
    assert envs is not None and buf is not None and collector.next_obs is not None
    head, gen = policy.head, collector.context.generator
    parts: list[tuple[int, int]] = envs.parts
    n = collector.num_envs
    obs = [collector.next_obs[first:end] for first, end in parts]
    raws: list[torch.Tensor | None] = [None] * len(parts)
    chosen: list[Any] = [None] * len(parts)  # each half's (obs, action, log-prob, value, env action)
    ended: list[tuple[int, int, int, float, int]] = []

    def choose_and_send(k: int, step: int) -> None:
        action, logp, value = backend.act(obs[k], gen)
        env_action = head.to_env(action)
        chosen[k] = (obs[k], action, logp, value, env_action)
        collector.env_call(step, envs.send, k, env_action)

    def receive(k: int, step: int) -> tuple[Any, ...]:
        result = collector.env_call(step, envs.recv, k)
        raw = collector._obs_tensor(result[0], step)
        collector._add_obs_stats(raw)
        raws[k], obs[k] = raw, policy.obs_norm(raw)
        return result

    last = buf.n_steps - 1
    choose_and_send(0, num_timesteps)
    for t in range(buf.n_steps):
        step = num_timesteps + (t + 1) * n * collector.context.collectives.size  # all ranks' copies
        choose_and_send(1, step)
        at_t = list(chosen)  # (step t's decisions, before A's next one replaces its own)
        results = [receive(0, step)]
        if t < last:
            choose_and_send(0, step)
        results.append(receive(1, step))
        decision = tuple(torch.cat([c[i] for c in at_t]) for i in range(4))
        env_action = np.concatenate([c[4] for c in at_t])
        collector.store_step(t, decision, env_action, envs.join(results), None, step, ended)
    collector.next_masks = None
    collector.finish_rollout(torch.cat([r for r in raws if r is not None]), ended)
    return buf
