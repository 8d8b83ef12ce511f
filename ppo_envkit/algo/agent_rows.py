"""Several agents as rows of one shared policy: the collector's side of
:class:`~ppo_envkit.environments.agent_stack.AgentStack`.

The vector of copies steps ``n`` copies whose observations and actions stack ``A`` agents
(``[n, A, ...]``); the policy and the rollout see ``n * A`` rows (copy-major: row ``i * A + k``
is agent ``k`` of copy ``i``). Each row is one agent's own trajectory: its reward, its
termination (death) and truncation, and whether it was live for the observation it acted on
(``valid``). Rows that were not live (an agent gone or not joined yet) are padding: their
step is marked terminated and ended, so GAE neither bootstraps from them nor carries
advantages across them, and the learner never draws them into a minibatch.

Episodes, seeds and exact-resume replay stay per copy (the collector's
:class:`~ppo_envkit.environments.episodes.EpisodeTracker` records each copy's ``[A, ...]``
actions and its mean-over-agents reward).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    from .collector import Collector
    from .rollout import RolloutBuffer

#: The per-agent info keys an AgentStack gives with every reset and step.
AGENT_KEYS = ("agent_rewards", "agent_terminated", "agent_truncated")


def to_rows(x: Any, num_agents: int) -> Any:
    """``[n, A, ...]`` (an array, or a dict/tuple of them) as ``[n * A, ...]``."""
    if isinstance(x, dict):
        return {key: to_rows(value, num_agents) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(to_rows(value, num_agents) for value in x)
    x = np.asarray(x)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def to_copies(x: Any, num_agents: int) -> Any:
    """``[n * A, ...]`` rows back as ``[n, A, ...]`` (the inverse of :func:`to_rows`)."""
    if isinstance(x, dict):
        return {key: to_copies(value, num_agents) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(to_copies(value, num_agents) for value in x)
    x = np.asarray(x)
    return x.reshape(x.shape[0] // num_agents, num_agents, *x.shape[1:])


class StepRows(NamedTuple):
    """One vector step, per row (numpy ``[n * A]``)."""

    rewards: np.ndarray  # float32, each agent's own reward
    terminated: np.ndarray  # the agent terminated (died) at this step
    truncated: np.ndarray  # the agent's trajectory was cut (its own truncation, or its copy's end)
    active: np.ndarray  # live for the returned observation (acts next)


def step_rows(
    info: dict[str, Any], done: np.ndarray, live: np.ndarray, num_agents: int, time_limit_ends: bool = False
) -> StepRows:
    """Per-row results of a vector step. ``live``: rows live before the step; ``done``: copies
    whose episode ended (their step's info is in ``info["final_info"]``, same-step autoreset).

    A row live before the step whose copy ended is truncated unless it terminated (a time
    limit outside the AgentStack, say: it bootstraps from its final observation).
    ``time_limit_ends`` (``env.time_limit`` resolved to ``terminal``): truncated rows count as
    terminated."""
    n = len(done)
    values = {}
    for key in AGENT_KEYS:
        value = np.asarray(info[key]).copy() if key in info else np.zeros((n, num_agents))
        if done.any():
            final = info["final_info"]
            value[done] = np.asarray(final[key])[done]
        values[key] = value.reshape(-1)
    active = np.asarray(info["agent_active"], bool).reshape(-1)
    copy_done = np.repeat(done, num_agents)
    terminated = live & values["agent_terminated"].astype(bool)
    truncated = live & ~terminated & (values["agent_truncated"].astype(bool) | copy_done)
    if time_limit_ends:
        terminated, truncated = terminated | truncated, np.zeros_like(truncated)
    rewards = np.where(live, values["agent_rewards"], 0.0).astype(np.float32)
    return StepRows(rewards, terminated, truncated, active)


def final_rows(
    next_obs: Any, info: dict[str, Any], done: np.ndarray, rows: np.ndarray, num_agents: int
) -> Any:
    """The observations ``rows`` ended on: their row of the step's observation, or of
    ``info["final_obs"]`` where their copy's episode ended (the step returned a reset's)."""
    out = []
    for r in rows.tolist():
        i, k = divmod(r, num_agents)
        source = info["final_obs"][i] if done[i] else _index(next_obs, i)
        out.append(_index(source, k))
    return out


def _index(x: Any, i: int) -> Any:
    if isinstance(x, dict):
        return {key: _index(value, i) for key, value in x.items()}
    if isinstance(x, tuple):
        return tuple(_index(value, i) for value in x)
    return x[i]


def collect_rows(c: Collector, num_timesteps: int) -> RolloutBuffer:
    """:meth:`Collector.collect` for an environment of several agents (``c.agents`` of them):
    one rollout of ``ppo.n_steps`` steps per copy, ``n * A`` rows per step."""
    policy, envs, buf, episodes = c.policy, c.envs, c.rollout, c.episodes
    assert envs is not None and buf is not None and episodes is not None and c.next_obs is not None
    assert c.agents is not None and c.next_valid is not None and buf.valid is not None
    head, gen, device = policy.head, c.context.generator, policy.device
    n, agents = c.num_envs, c.agents
    obs, masks, live = c.next_obs, c.next_masks, c.next_valid
    gather = c.context.collectives.gather_rows
    buf.truncated.zero_()
    first_copy = c.context.collectives.rank * n
    ended: list[tuple[int, int, int, float, int]] = []
    backend = c.context.backend()
    time_limit_ends = c.time_limit.ends_task  # env.time_limit, resolved when the copies were built
    for t in range(buf.n_steps):
        action, logp, value = backend.act(obs, gen, masks, None)
        env_rows = head.to_env(action)
        env_action = to_copies(env_rows, agents)
        # training steps count agent-steps (rows, padding included: A per copy and step), as SB3 does
        # with SuperSuit's vector of agents
        step = num_timesteps + (t + 1) * n * agents * c.context.collectives.size
        next_obs, reward, terminated, truncated, info = c.step_envs(env_action, step)
        done = terminated | truncated
        c.record_step(to_copies(head.history_rows(env_rows), agents), reward, done, step, ended)
        rows = step_rows(info, done, live, agents, time_limit_ends)
        raw = c._obs_tensor(to_rows(next_obs, agents), step)
        active_t = torch.from_numpy(rows.active).to(device)
        if rows.active.any():
            c._add_obs_stats(raw[active_t])  # padding rows say nothing about observations
        live_t = torch.from_numpy(live).to(device)
        end = rows.terminated | rows.truncated | ~live
        end_t = torch.from_numpy(end).to(device)
        masks = c.store_decision(buf, t, (obs, action, logp, value), masks, info, step)
        buf.valid[t] = live_t
        reward_t = torch.from_numpy(rows.rewards).to(device)
        buf.rewards[t] = policy.reward_scaler(reward_t, c.reward_returns, end_t, gather, valid=live_t)
        buf.terminated[t] = torch.from_numpy(rows.terminated | ~live).to(device)  # padding: no bootstrap
        buf.episode_end[t] = end_t
        if rows.truncated.any():
            idx = np.flatnonzero(rows.truncated)
            final = c._stack_agent_obs(final_rows(next_obs, info, done, idx, agents))
            final_t = c._obs_tensor(final, step)
            idx_t = torch.from_numpy(idx).to(device)
            buf.truncated[t, idx_t] = True
            buf.truncated_values[t, idx_t] = policy.value(policy.obs_norm(final_t), None)
        live = rows.active
        obs = policy.obs_norm(raw)
    if c._obs_sync is not None:
        c._obs_sync.merge()
        obs = policy.obs_norm(raw)
    c.next_obs, c.next_masks, c.next_valid = obs, masks, live
    buf.last_values.copy_(policy.value(obs, None))
    c._finish_episodes(ended, first_copy)
    return buf


__all__ = ["AGENT_KEYS", "StepRows", "collect_rows", "final_rows", "step_rows", "to_copies", "to_rows"]
