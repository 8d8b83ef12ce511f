"""Property-based fuzzing (Hypothesis): settings, config files and agent files from anyone.

The property everywhere: the input is accepted, or refused with the library's one error
type for that input (ConfigError, AgentFileError), in one line. Never another exception,
never a hang, never an allocation sized by the input.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppo_envkit import PPO, TrainConfig, load_agent
from ppo_envkit.config import load_config
from ppo_envkit.errors import AgentFileError, ConfigError

# Seeded (derandomize): the same examples on every run, so a CI failure reproduces.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

SETTINGS = [
    f"{section}.{name}"
    for section, model in TrainConfig.model_fields.items()
    for name in model.annotation.model_fields
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _one_line(exc: BaseException) -> None:
    assert str(exc) and "\n" not in str(exc), repr(exc)


@FUZZ
@given(key=st.sampled_from(SETTINGS) | st.text(max_size=20), value=st.text(max_size=30))
def test_set_values_are_accepted_or_a_config_error(key, value):
    try:
        TrainConfig().with_overrides([f"{key}={value}"])
    except ConfigError as exc:
        _one_line(exc)


@FUZZ
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_config_files_are_accepted_or_a_config_error(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        load_config(path)
    except ConfigError as exc:
        _one_line(exc)


@FUZZ
@given(
    sections=st.dictionaries(st.sampled_from(["env", "policy", "ppo", "run", "x"]), json_values, max_size=4)
)
def test_config_structures_are_accepted_or_a_config_error(tmp_path, sections):
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(sections))  # JSON is YAML
    try:
        load_config(path)
    except ConfigError as exc:
        _one_line(exc)


@pytest.fixture(scope="module")
def agent_dir(tmp_path_factory) -> Path:
    config = TrainConfig().with_overrides({"env.num_envs": 2, "ppo.n_steps": 16, "ppo.minibatch_size": 32})
    agent = PPO(config=config)
    agent.learn(32)
    agent.close()
    return agent.save(tmp_path_factory.mktemp("fuzz") / "agent")


def _paths(data, prefix=()):
    """Every path into a JSON document (keys and list indices)."""
    yield prefix
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, (*prefix, i))


def _load_refused_or_accepted(path: Path) -> None:
    try:
        load_agent(str(path))
    except (AgentFileError, ConfigError) as exc:
        _one_line(exc)


@FUZZ
@given(data=st.data())
def test_agent_json_fields_are_loaded_or_refused(agent_dir, tmp_path, data):
    meta = json.loads((agent_dir / "agent.json").read_text())
    paths = [p for p in _paths(meta) if p]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(json_values)
    changed = copy.deepcopy(meta)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    copy_dir = tmp_path / "agent"
    shutil.copytree(agent_dir, copy_dir, dirs_exist_ok=True)
    (copy_dir / "agent.json").write_text(json.dumps(changed, allow_nan=True))
    _load_refused_or_accepted(copy_dir)


@FUZZ
@given(data=st.data())
def test_safetensors_headers_and_payloads_are_loaded_or_refused(agent_dir, tmp_path, data):
    raw = bytearray((agent_dir / "model.safetensors").read_bytes())
    header_end = 8 + int.from_bytes(raw[:8], "little")
    how = data.draw(st.sampled_from(["header", "payload", "length", "truncate"]))
    if how == "header":  # change characters of the JSON header (dtypes, shapes, offsets)
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(8, header_end - 1))] = data.draw(st.integers(32, 126))
    elif how == "payload":
        positions = st.lists(st.integers(header_end, len(raw) - 1), min_size=1, max_size=64, unique=True)
        for position in data.draw(positions):  # distinct bytes: two flips of one byte would undo it
            raw[position] ^= data.draw(st.integers(1, 255))
    elif how == "length":  # the header's stated length
        raw[:8] = data.draw(st.integers(0, 2**64 - 1)).to_bytes(8, "little")
    else:
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    copy_dir = tmp_path / "agent"
    shutil.copytree(agent_dir, copy_dir, dirs_exist_ok=True)
    (copy_dir / "model.safetensors").write_bytes(bytes(raw))
    try:
        load_agent(str(copy_dir))
    except (AgentFileError, ConfigError) as exc:
        _one_line(exc)
    else:  # accepted: only if the tensors are exactly the recorded ones
        assert how == "header"  # e.g. a changed character inside a metadata string
