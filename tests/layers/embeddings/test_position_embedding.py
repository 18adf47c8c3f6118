import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import PositionEmbedding
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def test_conformance(rng):
    run_layer_test(
        PositionEmbedding,
        init_kwargs={"sequence_length": 8},
        input_data=rng.normal(size=(2, 5, 4)).astype("float32"),
        expected_output_shape=(2, 5, 4),
        bad_inputs=[
            BadInput("sequence_length=0", init_kwargs={"sequence_length": 0}),
            BadInput(
                "sequence_length=None", init_kwargs={"sequence_length": None}
            ),
            BadInput("inputs.shape", input_data=np.zeros((4,), "float32")),
            BadInput(
                "sequence_length=8",
                input_data=np.zeros((2, 9, 4), "float32"),
            ),
            BadInput(
                "positions",
                call_kwargs={"positions": np.zeros((5,), "bool")},
            ),
        ],
    )


def _pair(sequence_length, x):
    ours = PositionEmbedding(sequence_length)
    theirs = keras_hub.layers.PositionEmbedding(sequence_length)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [w.path.split("/")[-1] for w in ours.weights] == [
        w.path.split("/")[-1] for w in theirs.weights
    ]
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"start_index": 3},
        {"positions": np.array([6, 0, 2, 2])},
        {"positions": np.array([[1, 2, 3, 4], [7, 6, 5, 4]])},
    ],
    ids=["default", "start_index", "positions", "batched_positions"],
)
def test_matches_keras_hub(rng, call_kwargs):
    x = rng.normal(size=(2, 4, 3)).astype("float32")
    ours, theirs = _pair(8, x)
    np.testing.assert_allclose(
        _np(ours(x, **call_kwargs)), _np(theirs(x, **call_kwargs)), atol=1e-5
    )


def test_short_inputs_take_first_rows(rng):
    layer = PositionEmbedding(6)
    out = _np(layer(np.zeros((1, 4, 3), "float32")))
    np.testing.assert_allclose(
        out[0], _np(layer.position_embeddings)[:4], atol=0
    )


def test_decoding_step_equals_slice_of_full(rng):
    x = np.zeros((2, 6, 3), "float32")
    layer = PositionEmbedding(6)
    full = _np(layer(x))
    for i in (0, 2, 5):
        step = _np(layer(x[:, :1], start_index=i))
        np.testing.assert_allclose(step, full[:, i : i + 1], atol=0)


def test_initializer_config():
    layer = PositionEmbedding(4, initializer="ones")
    out = _np(layer(np.zeros((1, 2, 3), "float32")))
    np.testing.assert_array_equal(out, np.ones((1, 2, 3)))
    config = layer.get_config()
    assert keras.initializers.get(config["initializer"]).__class__ is (
        keras.initializers.Ones
    )
