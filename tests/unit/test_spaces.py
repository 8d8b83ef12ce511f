"""Observation flattening and space serialization."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from ppo_envkit.spaces import ObsFlattener, UnsupportedSpaceError, space_from_data, space_to_data

DICT = spaces.Dict(
    {
        "pos": spaces.Box(-1.0, 1.0, (2, 2), np.float32),
        "mode": spaces.Discrete(3, start=1),
        "pair": spaces.Tuple((spaces.MultiBinary(2), spaces.MultiDiscrete([2, 3]))),
    }
)


def test_box_flattens_to_batch_rows():
    f = ObsFlattener(spaces.Box(0, 1, (2, 3)))
    out = f(np.arange(12, dtype=np.float64).reshape(2, 2, 3))
    assert out.dtype == np.float32 and out.shape == (2, 6)
    assert f.is_batched(np.zeros((5, 2, 3))) and not f.is_batched(np.zeros((2, 3)))


def test_dict_tuple_discrete_are_one_hot_and_concatenated():
    f = ObsFlattener(DICT)
    assert f.flat_dim == 4 + 3 + 2 + 5
    obs = {
        "pos": np.ones((2, 2, 2)),
        "mode": np.array([1, 3]),
        "pair": (np.array([[1, 0], [0, 1]]), np.array([[0, 2], [1, 0]])),
    }
    out = f(obs)
    # Dict keys are ordered as the space orders them: mode, pair, pos
    np.testing.assert_array_equal(out[0], [1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(out[1], [0, 0, 1, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(f.normalize_mask, [False] * 10 + [True] * 4)
    single = {"pos": np.ones((2, 2)), "mode": 2, "pair": (np.array([1, 1]), np.array([1, 1]))}
    assert not f.is_batched(single)
    assert f(single, batched=False).shape == (1, 14)


def test_unsupported_observation_space():
    # (Text is encoded since issue 23; a Sequence has no encoder). The entry is named.
    with pytest.raises(
        UnsupportedSpaceError,
        match=r"observation\['name'\] \(Sequence.*supported: Box \(uint8 images.*\), Discrete",
    ):
        ObsFlattener(spaces.Dict({"name": spaces.Sequence(spaces.Discrete(2))}))


@pytest.mark.parametrize(
    "space",
    [
        DICT,
        spaces.Box(low=np.array([-1, -np.inf]), high=np.array([1, np.inf]), dtype=np.float32),
        spaces.Box(0, 255, (4, 4, 3), np.uint8),
        spaces.Discrete(5, start=-2),
        spaces.MultiDiscrete([[2, 3], [4, 5]]),
        spaces.MultiBinary(3),
    ],
    ids=str,
)
def test_space_serialization_round_trip(space):
    import json

    data = json.loads(json.dumps(space_to_data(space)))
    assert space_from_data(data) == space
