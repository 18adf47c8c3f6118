"""Tests of LocationSensitiveAttention against its formula in NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import AttentionRNN
from keras_attn.layers import LocationSensitiveAttention

B, S, DQ, DM, U, F, K = 2, 7, 5, 4, 6, 3, 3


def _w(x):
    return ops.convert_to_numpy(x).astype("float64")


def _np_softmax(x, mask):
    x = np.where(mask, x, -np.inf)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_location_step(layer, query, memory, mask, carried):
    """e_s = v^T tanh(W_q q + W_m m_s + U (F * carried)_s + b)."""
    conv = _w(layer.location_conv.kernel)  # (K, 1, F)
    k = conv.shape[0]
    padded = np.pad(carried, ((0, 0), ((k - 1) // 2, k // 2)))  # "same"
    features = np.stack(
        [
            np.einsum("bk,kf->bf", padded[:, s : s + k], conv[:, 0])
            for s in range(carried.shape[1])
        ],
        1,
    )  # (B, S, F)
    hidden = (
        (query @ _w(layer.query_dense.kernel))[:, None]
        + memory @ _w(layer.memory_dense.kernel)
        + features @ _w(layer.location_dense.kernel)
        + _w(layer.attention_b)
    )
    alpha = _np_softmax(np.tanh(hidden) @ _w(layer.attention_v), mask)
    return np.einsum("bs,bsd->bd", alpha, memory), alpha


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    memory = rng.standard_normal((B, S, DM)).astype("float32")
    queries = rng.standard_normal((3, B, DQ)).astype("float32")
    mask = np.ones((B, S), bool)
    mask[1, 5:] = False
    return queries, memory, mask


@pytest.mark.parametrize("cumulative", [True, False])
def test_steps_match_numpy(data, cumulative):
    queries, memory, mask = data
    layer = LocationSensitiveAttention(
        U, filters=F, kernel_size=K, cumulative=cumulative
    )
    layer(queries[0], memory)
    layer.attention_b.assign(np.linspace(-0.5, 0.5, U).astype("float32"))
    carried = layer.initial_alignments(B, S)
    ref_carried = np.zeros((B, S))
    for query in queries:
        context, alignments = layer(
            query,
            memory,
            memory_mask=mask,
            previous_alignments=carried,
            return_attention_scores=True,
        )
        carried = layer.next_alignment_state(carried, alignments)
        ref_context, ref_alpha = _np_location_step(
            layer, query, memory, mask, ref_carried
        )
        ref_carried = ref_carried + ref_alpha if cumulative else ref_alpha
        np.testing.assert_allclose(_w(alignments), ref_alpha, atol=1e-5)
        np.testing.assert_allclose(_w(context), ref_context, atol=1e-5)
    np.testing.assert_allclose(_w(carried), ref_carried, atol=1e-5)
    # The location term matters: without it the last step differs.
    plain = _np_location_step(layer, queries[-1], memory, mask, 0 * ref_carried)
    assert np.abs(plain[1] - ref_alpha).max() > 1e-3


def test_in_attention_rnn_matches_numpy(data):
    queries, memory, mask = data
    inputs = np.transpose(queries, (1, 0, 2))[..., :3]  # (B, T, 3)
    layer = AttentionRNN(
        keras.layers.SimpleRNNCell(DQ),
        LocationSensitiveAttention(U, filters=F, kernel_size=K),
        return_alignments=True,
        return_state=True,
    )
    outputs, state, alignments = layer(inputs, memory, memory_mask=mask)
    attention = layer.attention
    w, u, b = (_w(v) for v in layer.cell.weights)
    h, a, carried = np.zeros((B, DQ)), np.zeros((B, DM)), np.zeros((B, S))
    for t in range(inputs.shape[1]):
        h = np.tanh(np.concatenate([inputs[:, t], a], -1) @ w + h @ u + b)
        a, alpha = _np_location_step(attention, h, memory, mask, carried)
        carried = carried + alpha
        np.testing.assert_allclose(_w(outputs[:, t]), a, atol=1e-5)
        np.testing.assert_allclose(_w(alignments[:, t]), alpha, atol=1e-5)
    np.testing.assert_allclose(_w(state[2]), carried, atol=1e-5)


def test_config_round_trip_and_bad_arguments(data):
    queries, memory, _ = data
    layer = LocationSensitiveAttention(
        U, filters=F, kernel_size=K, cumulative=False, probability_fn="hardmax"
    )
    clone = LocationSensitiveAttention.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.cumulative) == (F, K, False)
    assert clone.probability_fn == "hardmax"
    for name, kwargs in (
        ("units", {"units": 0}),
        ("filters", {"units": U, "filters": 0}),
        ("kernel_size", {"units": U, "kernel_size": -1}),
        ("probability_fn", {"units": U, "probability_fn": "relu"}),
    ):
        with pytest.raises(ValueError, match=name):
            LocationSensitiveAttention(**kwargs)
    with pytest.raises(ValueError, match="query"):
        layer(np.transpose(queries, (1, 0, 2)), memory)
    with pytest.raises(ValueError, match="previous_alignments"):
        layer(queries[0], memory, previous_alignments=np.zeros((B, S + 1)))
