"""Tests of `keras_attn.layers.FeedForward` against NumPy written here."""

import math

import numpy as np
import pytest
from keras import ops

from keras_attn.layers import FeedForward
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np_act(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu":
        # keras' default gelu is the exact (erf) one.
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    raise ValueError(name)


def _np_feed_forward(x, weights, activation, gated):
    w = [np.asarray(v, "float64") for v in weights]
    hidden = _np_act(activation, x @ w[0] + w[1])
    if gated:
        hidden = hidden * (x @ w[2] + w[3])
        w = w[:2] + w[4:]
    return hidden @ w[2] + w[3]


def test_conformance():
    run_layer_test(
        FeedForward,
        {"intermediate_dim": 8, "activation": "silu", "gated": True},
        np.random.default_rng(0).random((2, 3, 4), "float32"),
        expected_output_shape=(2, 3, 4),
        bad_inputs=[
            BadInput("intermediate_dim=0", init_kwargs={"intermediate_dim": 0}),
            BadInput("dropout=1.5", init_kwargs={"dropout": 1.5}),
            BadInput("output_dim=-1", init_kwargs={"output_dim": -1}),
            BadInput("inputs.shape", input_data=np.zeros((4,), "float32")),
        ],
    )


@pytest.mark.parametrize(
    "activation, gated",
    [("relu", False), ("silu", True), ("gelu", True), ("gelu", False)],
)
def test_matches_numpy(rng, activation, gated):
    layer = FeedForward(16, activation=activation, gated=gated)
    x = rng.standard_normal((2, 5, 6)).astype("float32")
    layer.build(x.shape)
    # Non-zero biases, so that a dropped bias would show.
    layer.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in layer.weights]
    )
    expected = _np_feed_forward(
        x.astype("float64"), layer.get_weights(), activation, gated
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer(x)), expected, rtol=1e-4, atol=1e-4
    )
    assert len(layer.weights) == (6 if gated else 4)


def test_output_dim_and_dropout(rng):
    layer = FeedForward(8, dropout=0.5, output_dim=3)
    x = rng.standard_normal((4, 6)).astype("float32")
    eval_out = ops.convert_to_numpy(layer(x))
    assert eval_out.shape == (4, 3)
    expected = _np_feed_forward(
        x.astype("float64"), layer.get_weights(), "relu", False
    )
    np.testing.assert_allclose(eval_out, expected, rtol=1e-4, atol=1e-5)
    # Dropout acts on the hidden units in training only.
    train_out = ops.convert_to_numpy(layer(x, training=True))
    assert not np.allclose(train_out, eval_out)
