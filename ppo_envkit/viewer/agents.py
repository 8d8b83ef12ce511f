"""Several agents in one replay: which agent's decision the overlay shows (key A cycles them).

A PettingZoo parallel environment reaches the viewer as one Gymnasium environment whose
observation and action stack the agents (``[num_agents, ...]``, ``AgentStack``), with the
attributes ``agent_names``, ``num_agents``, ``agent_observation_space`` and
``agent_action_space``, and ``info["agent_active"]`` / ``info["agent_rewards"]``. The policy
is one agent's (it acts on one row), so every agent's action comes from its own row, and the
overlay shows the full decision of the selected one.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np


def _attr(env: Any, name: str) -> Any:
    """An attribute of the environment under any wrappers (None when absent)."""
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return None


class AgentSelection:
    """The agent whose decision is shown, in an environment that stacks several (else inactive)."""

    def __init__(self, env: Any):
        names = _attr(env, "agent_names")
        self.names: list[str] = [str(n) for n in names] if names is not None else []
        self.observation_space = _attr(env, "agent_observation_space")
        self.action_space = _attr(env, "agent_action_space")
        self.index = 0

    @property
    def active(self) -> bool:
        """Whether the environment stacks several agents."""
        return bool(self.names)

    @property
    def name(self) -> str | None:
        return self.names[self.index] if self.names else None

    def one_agent(self, env: Any) -> Any:
        """What the agent's spaces must match: one agent's spaces when the environment stacks
        several (the policy acts on one row), else the environment itself."""
        if not self.active:
            return env
        return SimpleNamespace(observation_space=self.observation_space, action_space=self.action_space)

    def cycle(self, step: int = 1) -> str | None:
        """Show the next agent (the previous one with ``step=-1``); returns its name."""
        if self.names:
            self.index = (self.index + step) % len(self.names)
        return self.name

    def label(self, info: dict[str, Any] | None = None) -> str:
        """``agent_1 (2/3)``, with ``· inactive`` while it is out of the episode."""
        if not self.names:
            return ""
        text = f"{self.name} ({self.index + 1}/{len(self.names)})"
        active = (info or {}).get("agent_active")
        if active is not None and not bool(np.asarray(active)[self.index]):
            text += " · inactive"
        return text

    def reward(self, info: dict[str, Any], fallback: float) -> float:
        """The selected agent's reward of the step (``info["agent_rewards"]``), else ``fallback``."""
        rewards = info.get("agent_rewards")
        return fallback if rewards is None else float(np.asarray(rewards)[self.index])

    def row(self, stacked: Any) -> Any:
        """The selected agent's row of a stacked observation or mask (None stays None)."""
        return None if stacked is None else np.asarray(stacked)[self.index]

    def decide(
        self, agent: Any, obs: Any, mask: Any, deterministic: bool
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """(every agent's action, stacked; the selected agent's ``policy_step`` decision). The
        selected row's action is the one the decision shows, so the overlay tells what is sent."""
        obs = np.asarray(obs)
        masks = None if mask is None else np.asarray(mask)
        actions = np.asarray(agent.predict(obs, deterministic=deterministic, action_mask=masks))
        decision = agent.policy_step(
            obs[self.index], deterministic=deterministic, action_mask=self.row(masks)
        )
        actions = actions.copy()
        actions[self.index] = decision["action"]
        return actions, decision


__all__ = ["AgentSelection"]
