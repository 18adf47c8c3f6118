import keras
import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import TokenAndPositionEmbedding
from tests.conformance import BadInput
from tests.conformance import run_layer_test

INIT = {"vocabulary_size": 20, "sequence_length": 8, "embedding_dim": 6}


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _ids(rng, shape=(2, 5)):
    return rng.integers(0, 20, size=shape).astype("int32")


def test_conformance(rng):
    run_layer_test(
        TokenAndPositionEmbedding,
        init_kwargs=INIT,
        input_data=_ids(rng),
        expected_output_shape=(2, 5, 6),
        bad_inputs=[
            BadInput("vocabulary_size=0", init_kwargs={"vocabulary_size": 0}),
            BadInput("embedding_dim=-2", init_kwargs={"embedding_dim": -2}),
            BadInput(
                "sequence_length=None", init_kwargs={"sequence_length": None}
            ),
            BadInput("inputs.shape", input_data=np.zeros((2, 5, 3), "int32")),
            BadInput("dtype=bool", input_data=np.zeros((2, 5), "bool")),
        ],
    )


def _pair(x, **kwargs):
    ours = TokenAndPositionEmbedding(**INIT, **kwargs)
    theirs = keras_hub.layers.TokenAndPositionEmbedding(**INIT, **kwargs)
    ours.build(x.shape)
    theirs.build(x.shape)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in theirs.weights
    ]
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize("tie_weights", [True, False])
@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"start_index": 2},
        {"positions": np.array([7, 1, 0, 3, 3])},
        {"positions": np.arange(10).reshape(2, 5) % 8},
    ],
    ids=["default", "start_index", "positions", "batched_positions"],
)
def test_matches_keras_hub(rng, tie_weights, call_kwargs):
    x = _ids(rng)
    ours, theirs = _pair(x, tie_weights=tie_weights)
    np.testing.assert_allclose(
        _np(ours(x, **call_kwargs)), _np(theirs(x, **call_kwargs)), atol=1e-5
    )
    # The reverse projection to logits, through the same sublayer name.
    hidden = rng.normal(size=(2, 5, 6)).astype("float32")
    np.testing.assert_allclose(
        _np(ours.token_embedding(hidden, reverse=True)),
        _np(theirs.token_embedding(hidden, reverse=True)),
        atol=1e-5,
    )


def test_values_are_token_plus_position(rng):
    x = _ids(rng)
    layer = TokenAndPositionEmbedding(**INIT)
    out = _np(layer(x))
    tokens = _np(layer.token_embedding.embeddings)
    positions = _np(layer.position_embedding.position_embeddings)
    np.testing.assert_allclose(out, tokens[x] + positions[None, :5], atol=1e-6)
    hidden = rng.normal(size=(2, 5, 6)).astype("float32")
    np.testing.assert_allclose(
        _np(layer.token_embedding(hidden, reverse=True)),
        hidden @ tokens.T,
        atol=1e-5,
    )


def test_mask_propagates(rng):
    x = np.array([[3, 4, 0, 0], [5, 0, 0, 0]], "int32")
    layer = TokenAndPositionEmbedding(**INIT, mask_zero=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer.compute_mask(x)), x != 0
    )
    # In a model: a masked average over time sees the mask.
    inputs = keras.Input((4,), dtype="int32")
    hidden = layer(inputs)
    pooled = keras.layers.GlobalAveragePooling1D()(hidden)
    model = keras.Model(inputs, pooled)
    out = _np(model(x))
    full = _np(layer(x))
    np.testing.assert_allclose(out[0], full[0, :2].mean(0), atol=1e-6)
    np.testing.assert_allclose(out[1], full[1, :1].mean(0), atol=1e-6)
    assert TokenAndPositionEmbedding(**INIT).compute_mask(x) is None


def test_decoding_step_equals_slice_of_full(rng):
    x = _ids(rng, (2, 8))
    layer = TokenAndPositionEmbedding(**INIT)
    full = _np(layer(x))
    for i in (0, 3, 7):
        step = _np(layer(x[:, i : i + 1], start_index=i))
        np.testing.assert_allclose(step, full[:, i : i + 1], atol=1e-6)
