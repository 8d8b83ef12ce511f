"""Text in observations (issue 23, item 3): named in findings, encoded as a bag of hashed words
in the flat row, recorded by the agent file, exported, and learned from."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit import PPO, TrainConfig
from ppo_envkit.cli import main
from ppo_envkit.spaces import (
    FreeText,
    ObsFlattener,
    UnsupportedSpaceError,
    describe_space,
    encode_text,
    space_from_data,
    space_to_data,
    spaces_match,
)

from . import text_envs


@pytest.fixture
def text_ids():
    ids = text_envs.register_all()
    yield ids
    text_envs.unregister_all()


def _dict_with_text() -> spaces.Dict:
    # Gymnasium sorts a Dict's keys: k, mission, pos
    return spaces.Dict(
        {
            "pos": spaces.Box(-1.0, 1.0, (2,), np.float32),
            "mission": text_envs.MissionLike(),
            "k": spaces.Discrete(3),
        }
    )


def test_encode_text_is_a_bag_of_words_stable_across_processes():
    code = encode_text("Go to the RED ball, then go!", 64)
    assert code.dtype == np.float32 and code.shape == (64,)
    assert code.sum() == 7  # go, to, the, red, ball, then, go: case and punctuation dropped
    assert np.array_equal(code, encode_text("go go to the red ball then", 64))  # order is lost
    # CRC-32, not hash(): the same columns in every process (the value is fixed here)
    assert int(np.flatnonzero(encode_text("red", 128))[0]) == __import__("zlib").crc32(b"red") % 128
    # the example that runs an exported model without ppo-envkit encodes text alike
    pytest.importorskip("onnxruntime")
    example = runpy.run_path(str(Path(__file__).resolve().parent.parent / "examples" / "onnx_inference.py"))
    texts = ["Go to the RED ball, then go!", "pick up a key"]
    assert np.array_equal(example["bag_of_words"](texts, 64), np.stack([encode_text(t, 64) for t in texts]))


def test_flattener_on_a_dict_with_text():
    space = _dict_with_text()
    flat = ObsFlattener(space, text_hash_size=16)
    assert flat.flat_dim == 2 + 16 + 3
    assert [p.kind for p in flat.parts] == ["onehot", "text", "box"]
    text = slice(3, 19)
    assert not flat.normalize_mask[text].any() and flat.normalize_mask[19:].all()  # counts keep their scale
    one = {"pos": np.array([0.5, -0.5], np.float32), "mission": "press the red button", "k": 2}
    assert not flat.is_batched(one) and flat.batch_size(one) == 1
    row = flat(one, batched=False)
    assert row.shape == (1, 21)
    assert np.array_equal(row[0, text], encode_text("press the red button", 16))
    assert np.array_equal(row[0, :3], [0, 0, 1]) and np.array_equal(row[0, 19:], [0.5, -0.5])
    # batched as Gymnasium's vector environments give it: a tuple of strings (or an array of them)
    for missions in (("a b", "press the blue button"), np.array(["a b", "press the blue button"])):
        batch = {"pos": np.zeros((2, 2), np.float32), "mission": missions, "k": np.array([0, 1])}
        assert flat.is_batched(batch) and flat.batch_size(batch) == 2
        rows = flat(batch)
        assert np.array_equal(rows[1, text], encode_text("press the blue button", 16))
        assert rows[0, text].sum() == 2
    with pytest.raises(UnsupportedSpaceError, match=r"observation\['mission'\] is text") as err:
        ObsFlattener(space, text_hash_size=0)
    assert err.value.path == ("mission",) and " at 0x" not in str(err.value)


def test_text_spaces_serialize_without_the_function():
    space = _dict_with_text()
    data = space_to_data(space)
    assert data["spaces"]["mission"] == {"type": "Text"}
    loaded = space_from_data(json.loads(json.dumps(data)))
    assert isinstance(loaded["mission"], FreeText) and spaces_match(loaded, space)
    assert "0x" not in describe_space(space) and "mission: Text (MissionLike)" in describe_space(space)
    text = spaces.Text(8, min_length=1, charset="abc ")
    again = space_from_data(space_to_data(text))
    assert again == text and spaces_match(again, text)


def test_findings_name_the_entry_and_the_fixes(text_ids, capsys):
    assert main(["envs", "check", text_ids["press"], "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "observation['mission'] is text (MissionLike)" in out
    assert "policy.text_hash_size" in out
    assert "gymnasium.wrappers.FilterObservation(env, filter_keys=['noise'])" in out
    assert " at 0x" not in out

    assert main(["envs", "check", text_ids["unusable"], "--steps", "5"]) == 1
    out = capsys.readouterr().out
    assert "error: observation['trail'] is Sequence(Discrete(3)" in out
    assert "which no observation encoder reads" in out
    assert "FilterObservation(env, filter_keys=['pos'])" in out and "ObservationWrapper" in out


def _agent(env_id: str, **overrides) -> PPO:
    settings = {"env.id": env_id, "policy.hidden_sizes": [16], "policy.text_hash_size": 32, **overrides}
    return PPO(config=TrainConfig().with_overrides(settings))


def test_text_agent_round_trips_through_save_load_and_export(text_ids, tmp_path):
    pytest.importorskip("onnxruntime")
    agent = _agent(text_ids["press"], **{"env.num_envs": 2, "ppo.n_steps": 16})
    agent.learn(32)
    path = agent.save(tmp_path / "agent")
    stored = json.loads((path / "agent.json").read_text())
    assert "Text" in json.dumps(stored)  # the space, as plain data
    loaded = PPO.load(path)
    assert loaded.config.policy.text_hash_size == 32 and loaded.policy.flattener.flat_dim == 2 + 32
    env = text_envs.PressButton()
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        assert agent.predict(obs) == loaded.predict(obs)
    out = tmp_path / "press.onnx"
    assert main(["export", str(path), "-o", str(out), "--check", "--check-steps", "50"]) == 0
    from ppo_envkit.export.check import OnnxAgent

    onnx = OnnxAgent(out)
    mission = next(i for i in onnx.session.get_inputs() if i.name == "mission")
    assert mission.shape[1:] == [32] and mission.type == "tensor(float)"


def test_plain_text_observation_acts(text_ids):
    agent = _agent(text_ids["plain"])
    assert agent.predict("ab ca") in (0, 1)
    assert list(agent.predict(np.array(["ab", "c a b"]))) in ([0, 0], [0, 1], [1, 0], [1, 1])


def test_a_text_conditioned_task_is_learned(text_ids):
    """The mission alone says which of four buttons pays: 0.25 without reading it."""
    settings = {
        "env.num_envs": 8,
        "ppo.n_steps": 32,
        "ppo.minibatch_size": 64,
        "ppo.n_epochs": 4,
        "ppo.learning_rate": 3e-3,
        "run.seed": 3,
    }
    agent = _agent(text_ids["press"], **settings)
    agent.learn(6144)
    assert agent.evaluate(40, seed=1).mean_return >= 0.9
