"""Checking a PettingZoo environment (several agents) in plain words, at the environments level.

``ppo-envkit envs check ID`` comes here when ``ID``'s entry point returns a PettingZoo
environment. The raw environment is built by calling the registered entry point itself (not
``gym.make``, which would adapt it), so the check sees what the user wrote:

* PettingZoo's own ``api_test`` / ``parallel_api_test`` and ``seed_test`` /
  ``parallel_seed_test``, run quietly; an assertion they raise becomes a finding with the
  failed check and a fix line;
* ppo-envkit's findings: agents whose observation or action spaces differ (training refuses
  them: one policy is shared by every agent), masks that allow no action, observations out of
  their space (non-finite values included), non-finite rewards; and notes for what is fine
  but worth knowing: the ``observation`` + ``action_mask`` dict convention, agents that leave
  or join mid-episode.
"""

from __future__ import annotations

import contextlib
import functools
import io
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from . import findings
from .checks import observation_problems, reward_problems
from .findings import CheckReport, EnvCallTimeout, Findings, exception_finding, time_limit
from .masks import sample_legal
from .multiagent import non_gymnasium_creator, pettingzoo_kind, split_observation
from .registry import ensure_registered

__all__ = ["AgentsSummary", "check_pettingzoo", "pettingzoo_creator", "summarize_agents"]

#: How many of the checker's per-call limits one phase (the random steps, one PettingZoo test)
#: may take before the environment counts as hung, as for the Gymnasium checker's phases.
PHASE_LIMIT = 4

KIND_NAMES = {"parallel": "parallel", "aec": "turn-based"}
AEC_DOCS = "https://pettingzoo.farama.org/api/aec/"
PARALLEL_DOCS = "https://pettingzoo.farama.org/api/parallel/"


def pettingzoo_creator(env_id: str, kwargs: Mapping[str, Any] | None = None) -> Callable[..., Any] | None:
    """A constructor of ``env_id``'s raw environment (its registered entry point with the
    registered and given ``kwargs``), or None when the entry point is a Gymnasium ``Env`` class
    (nothing of several agents to check; saves building it)."""
    spec = gym.spec(ensure_registered(env_id))
    creator = non_gymnasium_creator(spec)
    if creator is None:
        return None
    return functools.partial(creator, **{**spec.kwargs, **dict(kwargs or {})})


@dataclass(frozen=True)
class AgentsSummary:
    """What ``envs list`` shows of a PettingZoo environment: its kind and agents, and the first
    agent's spaces (its ``observation`` part under the dict convention)."""

    kind: str  # "parallel" | "aec"
    agents: list[str]
    observation_space: gym.Space
    action_space: gym.Space
    masked: bool  # observations follow the {"observation", "action_mask"} convention

    def text(self) -> str:
        names = self.agents if len(self.agents) <= 4 else [*self.agents[:2], "...", self.agents[-1]]
        return f"{KIND_NAMES[self.kind]}, {len(self.agents)}: {', '.join(names)}"


def summarize_agents(env_id: str) -> AgentsSummary | None:
    """``env_id``'s kind and agents when it builds a PettingZoo environment, else None (it is
    built once, and closed)."""
    creator = pettingzoo_creator(env_id)
    if creator is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = creator()
    try:
        kind = pettingzoo_kind(env)
        if kind is None:
            return None
        agents = list(env.possible_agents)
        obs_space = env.observation_space(agents[0])
        masked = _dict_convention(obs_space)
        if masked:
            obs_space = obs_space["observation"]
        return AgentsSummary(kind, agents, obs_space, env.action_space(agents[0]), masked)
    finally:
        env.close()


def _dict_convention(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Dict) and {"observation", "action_mask"} <= set(space.spaces)


def check_pettingzoo(
    env_id: str,
    kwargs: Mapping[str, Any] | None = None,
    *,
    steps: int = 1000,
    seed: int = 0,
) -> CheckReport | None:
    """Check ``env_id`` as a PettingZoo environment; None when it is not one (then the Gymnasium
    checker applies). Never raises for problems of the environment."""
    kwargs = dict(kwargs or {})
    report = CheckReport(env_id, kwargs)
    found = Findings()
    try:
        creator = pettingzoo_creator(env_id, kwargs)
    except Exception:  # the entry point does not import: the Gymnasium checker names it and the fix
        return None
    if creator is None:
        return None
    try:
        with warnings.catch_warnings(), time_limit(findings.CALL_TIME_LIMIT_S, "building the environment"):
            warnings.simplefilter("ignore")
            env = creator()
    except Exception as exc:
        exception_finding(
            found, "hang" if isinstance(exc, EnvCallTimeout) else "make", "creating the environment", exc
        )
        report.findings = found.items
        return report
    kind = pettingzoo_kind(env)
    if kind is None:
        env.close()
        return None
    report.notes.append(
        f"a {KIND_NAMES[kind]} PettingZoo environment with agents {list(env.possible_agents)}"
    )
    hung = False
    try:
        if _check_spaces(found, report, env):
            with time_limit(PHASE_LIMIT * findings.CALL_TIME_LIMIT_S, "stepping the environment"):
                _rollout(found, report, env, kind, steps, seed)
    except _NoLegalAction:
        pass  # the finding says so; there is nothing legal to step with
    except EnvCallTimeout as exc:
        hung = True
        exception_finding(found, "hang", "the environment", exc)
    except Exception as exc:
        exception_finding(found, "exception", "the environment", exc)
    finally:
        env.close()
    if not hung:  # a hung environment would hang PettingZoo's tests too
        _pettingzoo_tests(found, creator, kind, steps)
    report.findings = found.items
    return report


def _check_spaces(found: Findings, report: CheckReport, env: Any) -> bool:
    """Every agent has the same spaces (one shared policy); notes the dict convention."""
    agents = list(env.possible_agents)
    if not agents:
        found.add(
            "error",
            "no-agents",
            "possible_agents is empty",
            "possible_agents",
            "list every agent that can take part in possible_agents",
        )
        return False
    first = agents[0]
    for what in ("observation", "action"):
        space_of = getattr(env, f"{what}_space")
        other = next((a for a in agents[1:] if space_of(a) != space_of(first)), None)
        if other is not None:
            found.add(
                "error",
                f"{what}-spaces-differ",
                f"agents have different {what} spaces: {first} {space_of(first)}, {other} {space_of(other)}; "
                "ppo-envkit trains one policy shared by every agent, so it refuses this environment",
                f"{what}_space(agent)",
                f"give every agent the same {what} space (pad the smaller ones, as SuperSuit's "
                f"pad_{'observations' if what == 'observation' else 'action_space'}_v0 does)",
            )
    if _dict_convention(env.observation_space(first)):
        report.notes.append(
            "observations follow PettingZoo's dict convention: the policy sees 'observation', "
            "and 'action_mask' restricts the actions it may take"
        )
    return not found.items


class _NoLegalAction(Exception):
    """An agent must act but its mask allows nothing (a finding says so)."""


def _rollout(found: Findings, report: CheckReport, env: Any, kind: str, steps: int, seed: int) -> None:
    """Random legal actions for ``steps`` agent steps, counted in ``report`` as they go."""
    rng = np.random.default_rng(seed)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)
    if kind == "aec":
        _rollout_aec(found, report, env, steps, seed, rng)
    else:
        _rollout_parallel(found, report, env, steps, seed, rng)


def _observe(found: Findings, env: Any, agent: str, obs: Any, info: Any, where: str) -> np.ndarray | None:
    """Check one agent's observation; its action mask (dict convention or ``info``), or None."""
    found.problems(observation_problems(obs, env.observation_space(agent), f"{agent}'s observation"), where)
    _, mask = split_observation(obs)
    if mask is None and isinstance(info, Mapping) and info.get("action_mask") is not None:
        mask = np.asarray(info["action_mask"]).astype(bool)
    if mask is not None and not mask.any():
        found.add(
            "error",
            "mask-allows-nothing",
            f"the action mask of {agent} allows no action",
            where,
            "allow at least one action to every agent that must act (end its turn or episode otherwise)",
        )
        raise _NoLegalAction
    return mask


def _membership_note(report: CheckReport, before: set[str], after: set[str]) -> None:
    """Agents that leave while others play on, or join: fine (training skips absent agents)."""
    if not after:
        return
    left, joined = before - after, after - before
    for what, names in (("left", left), ("joined", joined)):
        said = f"agents {what} mid-episode"
        if names and not any(n.startswith(said) for n in report.notes):
            report.notes.append(f"{said} (e.g. {sorted(names)[0]}): fine, absent agents are skipped")


def _rollout_aec(
    found: Findings, report: CheckReport, env: Any, steps: int, seed: int, rng: np.random.Generator
) -> None:
    env.reset(seed=seed)
    agents = set(env.agents)
    while report.steps < steps:
        if not env.agents:
            report.episodes += 1
            env.reset(seed=seed + report.episodes)
            agents = set(env.agents)
            continue
        agent = env.agent_selection
        obs, reward, terminated, truncated, info = env.last()
        where = f"env.last() for {agent}, step {report.steps} of episode {report.episodes + 1}"
        found.problems(reward_problems(reward), where)
        if terminated or truncated:
            env.step(None)
        else:
            mask = _observe(found, env, agent, obs, info, where)
            env.step(sample_legal(env.action_space(agent), mask, rng))
        report.steps += 1
        # Agents removed one by one after the game ended is the normal end, not leaving mid-episode
        playing = {a for a in env.agents if not (env.terminations.get(a) or env.truncations.get(a))}
        _membership_note(report, agents, set(env.agents) if playing else set())
        agents = set(env.agents)


def _rollout_parallel(
    found: Findings, report: CheckReport, env: Any, steps: int, seed: int, rng: np.random.Generator
) -> None:
    observations, infos = env.reset(seed=seed)
    while report.steps < steps:
        if not env.agents:
            report.episodes += 1
            observations, infos = env.reset(seed=seed + report.episodes)
            continue
        where = f"step {report.steps} of episode {report.episodes + 1}"
        actions = {}
        for agent in env.agents:
            mask = _observe(found, env, agent, observations.get(agent), infos.get(agent, {}), where)
            actions[agent] = sample_legal(env.action_space(agent), mask, rng)
        before = set(env.agents)
        observations, rewards, _, _, infos = env.step(actions)
        for agent, reward in rewards.items():
            found.problems(reward_problems(reward), f"the reward of {agent} at {where}")
        report.steps += 1
        _membership_note(report, before, set(env.agents))


def _pettingzoo_tests(found: Findings, creator: Callable[..., Any], kind: str, steps: int) -> None:
    """PettingZoo's API and seeding tests, quietly; a failure becomes a finding."""
    from pettingzoo.test import api_test, parallel_api_test, parallel_seed_test, seed_test

    cycles = max(min(steps, 1000), 10)
    api = parallel_api_test if kind == "parallel" else api_test
    seeding = parallel_seed_test if kind == "parallel" else seed_test
    docs = PARALLEL_DOCS if kind == "parallel" else AEC_DOCS
    runs = (
        ("pettingzoo-api", api.__name__, lambda: api(creator(), num_cycles=cycles)),
        ("pettingzoo-seed", seeding.__name__, lambda: seeding(creator, num_cycles=min(cycles, 500))),
    )
    for code, name, run in runs:
        limit = time_limit(PHASE_LIMIT * findings.CALL_TIME_LIMIT_S, f"PettingZoo's {name}")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), limit:
            warnings.simplefilter("ignore")  # its warnings (all-zero observations, ...) are advice
            try:
                run()
            except AssertionError as exc:
                _assertion_finding(found, code, name, exc, docs)
            except Exception as exc:
                hang = isinstance(exc, EnvCallTimeout)
                exception_finding(found, "hang" if hang else code, f"PettingZoo's {name}", exc)


def _assertion_finding(found: Findings, code: str, test: str, exc: AssertionError, docs: str) -> None:
    """What PettingZoo's test asserted, in its words, and the line that checks it."""
    frames = traceback.extract_tb(exc.__traceback__)
    checked = next(
        (f for f in reversed(frames) if "pettingzoo" in f.filename), frames[-1] if frames else None
    )
    line = (checked.line or "").strip() if checked else ""
    said = str(exc).strip() or (f"this check failed: {line}" if line else "an assertion failed")
    seeding = code == "pettingzoo-seed"
    found.add(
        "warning" if seeding else "error",
        code,
        f"PettingZoo's {test} failed: {said}",
        f"{test} ({checked.filename.split('site-packages/')[-1]}:{checked.lineno})" if checked else test,
        "seed every random source from reset(seed=...) (self.np_random, the spaces' seeds) so that the "
        "same seed and actions give the same episode"
        if seeding
        else f"make the environment do what the check asks ({line}); the API is described at {docs}",
        source="pettingzoo",
        details="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )
