"""Tests of LuongAttention against NumPy formulas."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import LuongAttention
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np_softmax(x, mask=None):
    if mask is not None:
        x = np.where(mask, x, -np.inf)
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _w(x):
    return ops.convert_to_numpy(x).astype("float64")


def _np_luong(layer, query, memory, mask=None):
    if layer.score_mode == "dot":
        scores = np.einsum("btd,bsd->bts", query, memory)
    elif layer.score_mode == "general":
        keys = memory @ _w(layer.memory_dense.kernel)
        scores = np.einsum("btd,bsd->bts", query, keys)
    else:  # concat: v^T tanh(W [q; m]) with W = [W_q; W_m]
        w = np.concatenate(
            [_w(layer.query_dense.kernel), _w(layer.memory_dense.kernel)], 0
        )
        b, t, s = query.shape[0], query.shape[1], memory.shape[1]
        pairs = np.concatenate(
            [
                np.broadcast_to(query[:, :, None], (b, t, s, query.shape[-1])),
                np.broadcast_to(memory[:, None], (b, t, s, memory.shape[-1])),
            ],
            -1,
        )
        scores = np.tanh(pairs @ w) @ _w(layer.attention_v)
    if layer.scale:
        scores = scores * float(ops.convert_to_numpy(layer.attention_g))
    weights = _np_softmax(scores, None if mask is None else mask[:, None, :])
    return weights @ memory, weights


def _data(rng, b=3, t=4, s=6, dq=5, dm=5):
    query = rng.standard_normal((b, t, dq)).astype("float32")
    memory = rng.standard_normal((b, s, dm)).astype("float32")
    mask = np.ones((b, s), bool)
    mask[0, 3:] = False
    mask[2, 0] = False
    return query, memory, mask


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"score_mode": "general", "scale": True},
        {"score_mode": "concat", "units": 6},
    ],
)
def test_conformance(rng, init_kwargs):
    query, memory, mask = _data(rng, dm=7)
    run_layer_test(
        LuongAttention,
        init_kwargs,
        {"query": query, "memory": memory, "memory_mask": mask},
        expected_output_shape=(3, 4, 7),
        bad_inputs=[
            BadInput("score_mode", init_kwargs={"score_mode": "cosine"}),
            BadInput(
                "query", input_data={"query": query[0, 0], "memory": memory}
            ),
            BadInput(
                "memory", input_data={"query": query, "memory": memory[..., 0]}
            ),
            BadInput(
                "memory_mask",
                input_data={
                    "query": query,
                    "memory": memory,
                    "memory_mask": mask[None],
                },
            ),
        ],
    )


def test_dot_conformance(rng):
    query, memory, mask = _data(rng)
    run_layer_test(
        LuongAttention,
        {"score_mode": "dot", "scale": True},
        {"query": query[:, 0], "memory": memory, "memory_mask": mask},
        expected_output_shape=(3, 5),
        bad_inputs=[
            BadInput(
                "same last dimension",
                input_data={"query": query[..., :3], "memory": memory},
            ),
        ],
    )


@pytest.mark.parametrize(
    "init_kwargs, error",
    [
        ({"score_mode": "concat"}, "units=None"),
        ({"score_mode": "concat", "units": 0}, "units=0"),
        ({"score_mode": "general", "units": -1}, "units=-1"),
        ({"score_mode": "Dot"}, "score_mode='Dot'"),
    ],
)
def test_bad_constructor_arguments(init_kwargs, error):
    with pytest.raises(ValueError, match=error):
        LuongAttention(**init_kwargs)


def test_general_units_must_match_query(rng):
    query, memory, _ = _data(rng)
    with pytest.raises(ValueError, match="units"):
        LuongAttention("general", units=9)(query, memory)


@pytest.mark.parametrize("score_mode", ["dot", "general", "concat"])
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("one_step", [False, True])
def test_matches_numpy(rng, score_mode, scale, one_step):
    query, memory, mask = _data(rng)
    if score_mode != "dot":
        memory = rng.standard_normal((3, 6, 7)).astype("float32")
    units = 6 if score_mode == "concat" else None
    layer = LuongAttention(score_mode, units=units, scale=scale)
    q = query[:, 0] if one_step else query
    layer(q, memory)
    if scale:
        layer.attention_g.assign(1.7)
    context, weights = layer(
        q, memory, memory_mask=mask, return_attention_scores=True
    )
    ref_context, ref_weights = _np_luong(
        layer,
        query.astype("float64")[:, :1] if one_step else query,
        memory.astype("float64"),
        mask,
    )
    if one_step:
        ref_context, ref_weights = ref_context[:, 0], ref_weights[:, 0]
    np.testing.assert_allclose(
        ops.convert_to_numpy(weights), ref_weights, atol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(context), ref_context, atol=1e-5
    )


@pytest.mark.parametrize("score_mode", ["dot", "general", "concat"])
def test_mask_exact_zero_sum_to_one_and_invariance(rng, score_mode):
    query, memory, mask = _data(rng)
    layer = LuongAttention(
        score_mode, units=4 if score_mode == "concat" else None
    )
    context, weights = layer(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    weights = ops.convert_to_numpy(weights)
    assert np.all(weights[np.broadcast_to(~mask[:, None], weights.shape)] == 0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
    changed = np.where(mask[:, :, None], memory, -50.0).astype("float32")
    context2 = layer(query, changed, memory_mask=mask)
    np.testing.assert_allclose(
        ops.convert_to_numpy(context),
        ops.convert_to_numpy(context2),
        atol=1e-6,
    )


def test_integer_mask_accepted(rng):
    query, memory, mask = _data(rng)
    layer = LuongAttention("dot")
    a = layer(query, memory, memory_mask=mask)
    b = layer(query, memory, memory_mask=mask.astype("int32"))
    np.testing.assert_allclose(
        ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=0
    )


def test_concat_kernels_start_different_and_seeded_build_reproducible(rng):
    query = rng.standard_normal((2, 6)).astype("float32")
    memory = rng.standard_normal((2, 5, 6)).astype("float32")

    def build(seed):
        keras.utils.set_random_seed(seed)
        layer = LuongAttention("concat", units=6)
        layer(query, memory)
        return [
            ops.convert_to_numpy(w)
            for w in (
                layer.query_dense.kernel,
                layer.memory_dense.kernel,
                layer.attention_v,
            )
        ]

    q_kernel, m_kernel, v = build(3)
    assert not np.allclose(q_kernel, m_kernel)
    assert not np.allclose(q_kernel[0], v)
    for a, b in zip(build(3), [q_kernel, m_kernel, v]):
        np.testing.assert_array_equal(a, b)


def test_dot_rejects_units():
    # tfa's LuongAttention(units) always projects the memory: silently
    # running the weightless "dot" score would drop that projection.
    with pytest.raises(ValueError, match='score_mode="general".*units=64'):
        LuongAttention(units=64)
    with pytest.raises(ValueError, match="units=8"):
        LuongAttention("dot", units=8)


def test_general_units_equal_to_query_is_tfa_luong(rng):
    # tfa: score = q . (W m) with W of `units` = Dq columns.
    query, memory, _ = _data(rng)
    memory = rng.standard_normal((3, 6, 7)).astype("float32")
    layer = LuongAttention("general", units=5)
    context, weights = layer(query, memory, return_attention_scores=True)
    ref_context, ref_weights = _np_luong(
        layer, query.astype("float64"), memory.astype("float64")
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(weights), ref_weights, atol=1e-5
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(context), ref_context, atol=1e-5
    )
