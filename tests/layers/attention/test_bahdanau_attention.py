"""Tests of BahdanauAttention against NumPy formulas."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import BahdanauAttention
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np_softmax(x, mask=None):
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _np_bahdanau(layer, query, memory, mask=None):
    """score = v^T tanh(W_q q + W_m m (+ b)), v weight-normalised if asked."""
    w_q = ops.convert_to_numpy(layer.query_dense.kernel).astype("float64")
    w_m = ops.convert_to_numpy(layer.memory_dense.kernel).astype("float64")
    v = ops.convert_to_numpy(layer.attention_v).astype("float64")
    hidden = (query @ w_q)[:, :, None, :] + (memory @ w_m)[:, None, :, :]
    if layer.normalize:
        g = float(ops.convert_to_numpy(layer.attention_g))
        b = ops.convert_to_numpy(layer.attention_b).astype("float64")
        hidden = hidden + b
        v = g * v / np.linalg.norm(v)
    scores = np.tanh(hidden) @ v  # (B, T, S)
    weights = _np_softmax(scores, None if mask is None else mask[:, None, :])
    return weights @ memory, weights


def _data(rng, b=3, t=4, s=6, dq=5, dm=7):
    query = rng.standard_normal((b, t, dq)).astype("float32")
    memory = rng.standard_normal((b, s, dm)).astype("float32")
    mask = np.ones((b, s), bool)
    mask[0, 4:] = False
    mask[1, :1] = False
    return query, memory, mask


def test_conformance(rng):
    query, memory, mask = _data(rng)
    run_layer_test(
        BahdanauAttention,
        {"units": 8, "normalize": True},
        {"query": query, "memory": memory, "memory_mask": mask},
        expected_output_shape=(3, 4, 7),
        bad_inputs=[
            BadInput("units", init_kwargs={"units": 0}),
            BadInput("units", init_kwargs={"units": -2}),
            BadInput(
                "query",
                input_data={"query": query[0, 0], "memory": memory},
            ),
            BadInput(
                "memory", input_data={"query": query, "memory": memory[0]}
            ),
            BadInput(
                "batch size",
                input_data={"query": query[:2], "memory": memory},
            ),
            BadInput(
                "memory_mask",
                input_data={
                    "query": query,
                    "memory": memory,
                    "memory_mask": mask[:, :3],
                },
            ),
        ],
    )


def test_scores_return(rng):
    query, memory, mask = _data(rng)
    run_layer_test(
        BahdanauAttention,
        {"units": 8},
        {"query": query[:, 0], "memory": memory, "memory_mask": mask},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((3, 7), (3, 6)),
        run_training=False,
        run_mixed_precision=False,
    )


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("steps", [None, 4])
def test_matches_numpy(rng, normalize, steps):
    query, memory, mask = _data(rng)
    if steps is None:
        query = query[:, 0]  # one decoder step (B, Dq)
    layer = BahdanauAttention(units=8, normalize=normalize)
    layer(query, memory)
    if normalize:
        # Move g and b off their initial values so they are exercised.
        layer.attention_g.assign(0.7)
        layer.attention_b.assign(rng.standard_normal(8).astype("float32"))
    context, weights = layer(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    q = query if steps else query[:, None]
    ref_context, ref_weights = _np_bahdanau(
        layer, q.astype("float64"), memory.astype("float64"), mask
    )
    if steps is None:
        ref_context, ref_weights = ref_context[:, 0], ref_weights[:, 0]
    np.testing.assert_allclose(
        ops.convert_to_numpy(weights), ref_weights, atol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(context), ref_context, atol=1e-5
    )


def test_mask_exact_zero_and_sum_to_one(rng):
    query, memory, mask = _data(rng)
    layer = BahdanauAttention(units=8)
    _, weights = layer(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    weights = ops.convert_to_numpy(weights)
    assert np.all(weights[np.broadcast_to(~mask[:, None], weights.shape)] == 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


def test_masked_memory_does_not_change_output(rng):
    query, memory, mask = _data(rng)
    layer = BahdanauAttention(units=8)
    out = layer(query, memory, memory_mask=mask)
    changed = np.where(mask[:, :, None], memory, 100.0).astype("float32")
    out2 = layer(query, changed, memory_mask=mask)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), ops.convert_to_numpy(out2), atol=1e-6
    )


def test_fully_masked_row_gives_zeros(rng):
    query, memory, mask = _data(rng)
    mask[2] = False
    context, weights = BahdanauAttention(units=8)(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    assert np.all(ops.convert_to_numpy(weights)[2] == 0)
    assert np.all(ops.convert_to_numpy(context)[2] == 0)


def test_precomputed_keys_equal(rng):
    query, memory, mask = _data(rng)
    layer = BahdanauAttention(units=8)
    out = layer(query, memory, memory_mask=mask)
    keys = layer.precompute(memory)
    out2 = layer(query, memory, memory_mask=mask, keys=keys)
    np.testing.assert_allclose(
        ops.convert_to_numpy(out), ops.convert_to_numpy(out2), atol=1e-6
    )


def test_built_query_size_checked(rng):
    query, memory, _ = _data(rng)
    layer = BahdanauAttention(units=8)
    layer(query, memory)
    with pytest.raises(ValueError, match="query"):
        layer(query[..., :3], memory)


def _kernels(layer):
    return {
        "query_dense": ops.convert_to_numpy(layer.query_dense.kernel),
        "memory_dense": ops.convert_to_numpy(layer.memory_dense.kernel),
        "attention_v": ops.convert_to_numpy(layer.attention_v),
    }


@pytest.mark.parametrize("initializer", ["glorot_uniform", "random_normal"])
def test_kernels_start_different_and_seeded_build_reproducible(
    rng, initializer
):
    # Equal query and memory sizes: one shared initializer instance would
    # give both kernels the same values.
    query = rng.standard_normal((2, 6)).astype("float32")
    memory = rng.standard_normal((2, 5, 6)).astype("float32")

    def build(seed):
        keras.utils.set_random_seed(seed)
        layer = BahdanauAttention(units=6, kernel_initializer=initializer)
        layer(query, memory)
        return _kernels(layer)

    first = build(7)
    assert not np.allclose(first["query_dense"], first["memory_dense"])
    assert not np.allclose(first["query_dense"][0], first["attention_v"])
    again = build(7)
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])
    other = build(8)
    assert not np.allclose(first["query_dense"], other["query_dense"])


def test_float_mask_equals_boolean_mask(rng):
    query, memory, mask = _data(rng)
    layer = BahdanauAttention(units=8)
    a = layer(query, memory, memory_mask=mask)
    b = layer(query, memory, memory_mask=mask.astype("float32"))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(a), ops.convert_to_numpy(b)
    )


@pytest.mark.parametrize("probability_fn", ["hardmax", "sparsemax"])
def test_probability_fn_matches_numpy(rng, probability_fn):
    from tests.ops.test_sparse_probabilities import np_sparsemax

    query, memory, mask = _data(rng)
    layer = BahdanauAttention(8, probability_fn=probability_fn)
    context, weights = layer(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    softmax_weights = _np_bahdanau(layer, query, memory, mask)[1]
    # The scores are the softmax's log-weights up to a per-row constant.
    scores = np.log(np.where(softmax_weights > 0, softmax_weights, 1e-300))
    if probability_fn == "hardmax":
        ref = np.eye(6)[np.argmax(scores, -1)]
    else:
        ref = np_sparsemax(scores, np.broadcast_to(mask[:, None], scores.shape))
    np.testing.assert_allclose(ops.convert_to_numpy(weights), ref, atol=1e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(context), ref @ memory, atol=1e-5
    )
    config = layer.get_config()
    assert BahdanauAttention.from_config(config).probability_fn == (
        probability_fn
    )
