"""The agents shipped in agents/ load and score what their agent.json says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ppo_envkit import evaluate, load_agent

AGENTS = Path(__file__).resolve().parents[2] / "agents"


@pytest.mark.parametrize("name", ["lunarlander", "lunarlander-continuous"])
def test_shipped_agent_scores_its_recorded_evaluation(name):
    meta = json.loads((AGENTS / name / "agent.json").read_text())
    assert meta["provenance"]["command"].startswith("ppo-envkit train LunarLander-v3")
    assert meta["provenance"]["seed"] == 0
    recorded = meta["evaluation"]
    assert recorded["episodes"] == 100 and recorded["deterministic"]
    agent = load_agent(str(AGENTS / name))
    result = evaluate(agent, recorded["episodes"], seed=recorded["seed"])
    # same seeds, deterministic actions: equal up to floating-point differences between machines
    assert result.mean_return == pytest.approx(recorded["mean_return"], abs=5.0)
    assert result.mean_return >= 200
