import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import AlibiBias
from keras_attn.ops import causal_mask
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def test_conformance(rng):
    run_layer_test(
        AlibiBias,
        init_kwargs={"alibi_bias_max": 8},
        input_data=rng.normal(size=(2, 4, 5, 5)).astype("float32"),
        expected_output_shape=(2, 4, 5, 5),
        sequence_axes=(2, 3),
        bad_inputs=[
            BadInput(
                "attention_scores.shape",
                input_data=np.zeros((2, 5, 5), "float32"),
            ),
            BadInput("alibi_bias_max=0", init_kwargs={"alibi_bias_max": 0}),
            BadInput(
                "attention_scores with dtype=int32",
                input_data=np.zeros((2, 4, 5, 5), "int32"),
            ),
        ],
    )


@pytest.mark.parametrize("num_heads", [4, 8, 6, 12])
@pytest.mark.parametrize("alibi_bias_max", [8, 4])
def test_matches_keras_hub(rng, num_heads, alibi_bias_max):
    scores = rng.normal(size=(2, num_heads, 3, 7)).astype("float32")
    ours = AlibiBias(alibi_bias_max)(scores)
    theirs = keras_hub.layers.AlibiBias(alibi_bias_max)(scores)
    np.testing.assert_allclose(_np(ours), _np(theirs), atol=1e-5)


def test_added_bias_against_paper():
    # 8 heads: slopes 1/2 ... 1/256; bias slope * (j - (S - 1)).
    scores = np.zeros((1, 8, 2, 5), "float32")
    got = _np(AlibiBias()(scores))
    slopes = 2.0 ** -np.arange(1, 9)
    expected = slopes[:, None] * (np.arange(5) - 4)[None, :]
    np.testing.assert_allclose(
        got, np.broadcast_to(expected[None, :, None], got.shape), rtol=1e-6
    )


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("query_length", [6, 2])
def test_compute_bias_same_softmax_as_keras_hub_under_causal_mask(
    rng, query_length
):
    # The paper's bias and keras-hub's differ by a per-row constant.
    scores = rng.normal(size=(2, 4, query_length, 6)).astype("float32")
    allowed = ops.convert_to_numpy(causal_mask(query_length, 6))
    layer = AlibiBias()
    bias = _np(layer.compute_bias(4, query_length, 6))
    assert bias.shape == (1, 4, query_length, 6)
    ours = _softmax(np.where(allowed, scores + bias, -1e9))
    theirs = _np(keras_hub.layers.AlibiBias()(scores))
    theirs = _softmax(np.where(allowed, theirs, -1e9))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    # Zero on the diagonal (each query's own key position).
    diagonal = np.arange(query_length) + 6 - query_length
    np.testing.assert_array_equal(
        bias[0][:, np.arange(query_length), diagonal], 0
    )
