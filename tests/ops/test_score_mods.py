"""Score modifiers of `scaled_dot_product_attention` against NumPy.

`logit_soft_cap`, attention `sinks` and the `score_mod` hook on the
reference, fused and chunked paths (and "auto"), with their gradients, and
ALiBi and the T5 bias re-expressed through the hook against the existing
bias implementations. The oracle is `tests/ops/numpy_reference.py`
(float64 NumPy, no code shared with the library); gradients are checked
against central differences of that oracle.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import AlibiBias
from keras_attn.layers import RelativePositionBias
from keras_attn.ops import AlibiScoreMod
from keras_attn.ops import ScoreMod
from keras_attn.ops import relative_position_score_mod
from keras_attn.ops import scaled_dot_product_attention
from tests.ops import numpy_reference as ref
from tests.ops.test_attention import _gradients
from tests.ops.test_attention import _inputs
from tests.ops.test_attention import _np

PATHS = ["reference", "fused", "chunked"]
# (batch, T, S, N, K, H, Hv): GQA with T != S and Hv != H; MQA with T > S.
SHAPES = [(2, 5, 7, 4, 2, 8, 6), (1, 6, 4, 2, 1, 4, 4)]


def _mod(scores, batch, head, q_idx, kv_idx):
    """A hook that uses every index: head scale, distance, batch shift."""
    distance = ops.cast(ops.abs(q_idx - kv_idx), "float32")
    head_scale = 1.0 + 0.25 * ops.cast(head, "float32")
    return (
        scores * head_scale - 0.2 * distance + 0.1 * ops.cast(batch, "float32")
    )


def _np_mod(scores, batch, head, q_idx, kv_idx):
    return (
        scores * (1.0 + 0.25 * head)
        - 0.2 * np.abs(q_idx - kv_idx)
        + 0.1 * batch
    )


CASES = {
    "soft_cap": {"logit_soft_cap": 0.8},
    "sinks": {"sinks": True},
    "score_mod": {"score_mod": True},
    "all": {"logit_soft_cap": 1.5, "sinks": True, "score_mod": True},
}


def _kwargs(case, heads, rng):
    """(ours, NumPy oracle's) keyword arguments of a case."""
    ours, theirs = {}, {}
    spec = CASES[case]
    if "logit_soft_cap" in spec:
        ours["logit_soft_cap"] = theirs["soft_cap"] = spec["logit_soft_cap"]
    if "sinks" in spec:
        sinks = rng.normal(size=(heads,)).astype("float32") + 1.0
        ours["sinks"] = theirs["sinks"] = sinks
    if "score_mod" in spec:
        ours["score_mod"], theirs["score_mod"] = _mod, _np_mod
    return ours, theirs


# Each modifier alone and all together, on both shapes between them, on
# each path; "auto" (which picks one of them) with all together.
CASE_SHAPES = [
    ("soft_cap", SHAPES[0]),
    ("sinks", SHAPES[1]),
    ("score_mod", SHAPES[0]),
    ("all", SHAPES[1]),
    ("all", SHAPES[0]),
]
MATRIX = [(i, c, s) for i in PATHS for c, s in CASE_SHAPES] + [
    ("auto", "all", SHAPES[0]),
    ("auto", "all", SHAPES[1]),
]


@pytest.mark.parametrize(
    "implementation, case, shape",
    MATRIX,
    ids=[f"{i}-{c}-{'x'.join(map(str, s))}" for i, c, s in MATRIX],
)
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_matches_numpy_with_fully_masked_rows(
    rng, implementation, case, shape, is_causal
):
    batch, q_len, k_len, heads = shape[:4]
    q, k, v = _inputs(rng, *shape)
    mask = rng.random((batch, 1, q_len, k_len)) > 0.3
    mask[0, 0, 1] = False  # a query row with no key at all
    bias = rng.normal(size=(1, heads, q_len, k_len)).astype("float32")
    ours, theirs = _kwargs(case, heads, rng)
    out = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=is_causal,
        implementation=implementation,
        chunk_size=3,  # several query and key blocks, a partial last one
        **ours,
    )
    expected, _ = ref.attention(q, k, v, mask, bias, is_causal, **theirs)
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(_np(out)[0, 1], 0.0)


def test_reference_weights_exclude_the_sink(rng):
    q, k, v = _inputs(rng, *SHAPES[0])
    sinks = np.array([2.0, -1.0, 0.0, 3.0], "float32")
    mask = np.ones((2, 1, 5, 7), bool)
    mask[1, 0, 2] = False
    out, weights = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        sinks=sinks,
        logit_soft_cap=2.0,
        score_mod=_mod,
        return_weights=True,
    )
    expected, expected_w = ref.attention(
        q, k, v, mask, soft_cap=2.0, sinks=sinks, score_mod=_np_mod
    )
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_np(weights), expected_w, atol=1e-6)
    # The sink's share of each row is missing from the weights.
    assert np.all(_np(weights).sum(-1)[0] < 1.0 - 1e-3)
    np.testing.assert_array_equal(_np(weights)[1, :, 2], 0.0)


def test_soft_cap_bounds_the_logits():
    # One key with a huge logit: capped at 1, it cannot take all the mass.
    q = np.zeros((1, 1, 1, 1), "float32") + 100.0
    k = np.array([1.0, 0.0], "float32").reshape(1, 2, 1, 1)
    v = np.array([1.0, 0.0], "float32").reshape(1, 2, 1, 1)
    for implementation in PATHS:
        out = scaled_dot_product_attention(
            q, k, v, logit_soft_cap=1.0, implementation=implementation
        )
        # softmax([tanh(100), 0]) = e / (e + 1) at most.
        np.testing.assert_allclose(
            _np(out).ravel(), [np.e / (np.e + 1)], rtol=1e-5
        )


def _numeric_grads(fn, arrays, eps=1e-5):
    """Central differences of a float64 NumPy scalar function."""
    grads = []
    for index, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for pos in np.ndindex(array.shape):
            shifted = [a.copy() for a in arrays]
            shifted[index][pos] += eps
            up = fn(*shifted)
            shifted[index][pos] -= 2 * eps
            grad[pos] = (up - fn(*shifted)) / (2 * eps)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("implementation", PATHS)
def test_gradients_match_numpy(rng, implementation):
    q, k, v = _inputs(rng, 1, 4, 5, 2, 1, 4, 3)
    sinks = np.array([0.5, -0.3], "float32")
    mask = np.ones((1, 1, 4, 5), bool)
    mask[0, 0, 3] = False  # a fully masked row: zero gradient from it
    mask[0, 0, 0, 1] = False
    d_out = rng.normal(size=(1, 4, 2, 3)).astype("float32")

    def loss(q, k, v, sinks):
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            is_causal=True,
            logit_soft_cap=1.5,
            sinks=sinks,
            score_mod=_mod,
            implementation=implementation,
            chunk_size=2,
        )
        return ops.sum(ops.multiply(out, d_out))

    def np_loss(q, k, v, sinks):
        out, _ = ref.attention(
            q, k, v, mask, None, True, None, 1.5, sinks, _np_mod
        )
        return float((out * d_out).sum())

    arrays = [q, k, v, sinks]
    grads = _gradients(loss, arrays)
    expected = _numeric_grads(np_loss, [a.astype("float64") for a in arrays])
    for name, g, e in zip(["q", "k", "v", "sinks"], grads, expected):
        assert np.abs(e).max() > 1e-3, name  # the check can fail
        np.testing.assert_allclose(g, e, atol=2e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("implementation", PATHS)
def test_low_precision_fully_masked_rows_are_zero(rng, dtype, implementation):
    q, k, v = (ops.cast(x, dtype) for x in _inputs(rng, 2, 4, 5, 2, 2, 8, 8))
    mask = np.ones((2, 1, 4, 5), bool)
    mask[:, :, 1] = False
    out = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        sinks=np.array([1.0, -1.0], "float32"),
        logit_soft_cap=5.0,
        score_mod=_mod,
        implementation=implementation,
        chunk_size=2,
    )
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    out = _np(ops.cast(out, "float32"))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 1], 0.0)


@pytest.mark.parametrize("implementation", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_alibi_score_mod_equals_alibi_bias(rng, implementation, bidirectional):
    q, k, v = _inputs(rng, 2, 6, 6, 4, 2, 8, 8)
    bias = AlibiBias().compute_bias(4, 6, 6, bidirectional=bidirectional)
    expected = scaled_dot_product_attention(
        q, k, v, bias=bias, is_causal=not bidirectional
    )
    out = scaled_dot_product_attention(
        q,
        k,
        v,
        is_causal=not bidirectional,
        score_mod=AlibiScoreMod(4, bidirectional=bidirectional),
        implementation=implementation,
        chunk_size=4,
    )
    np.testing.assert_allclose(_np(out), _np(expected), atol=1e-5)
    # And against NumPy: slope_h * -(distance) with the paper's slopes.
    slopes = 2.0 ** (-8.0 * np.arange(1, 5) / 4)
    distance = np.arange(6)[None, :] - np.arange(6)[:, None]
    if bidirectional:
        distance = -np.abs(distance)
    np_bias = slopes[:, None, None] * distance[None]
    numpy_out, _ = ref.attention(
        q, k, v, bias=np_bias[None], is_causal=not bidirectional
    )
    np.testing.assert_allclose(_np(out), numpy_out, atol=1e-5)


@pytest.mark.parametrize("implementation", PATHS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_relative_score_mod_equals_relative_bias(
    rng, implementation, bidirectional
):
    # Queries at positions 3..7 of 9 keys (a decoding chunk against a
    # cache): the hook sees the row index, so shift it as a layer does.
    q, k, v = _inputs(rng, 2, 5, 9, 4, 4, 8, 8)
    layer = RelativePositionBias(
        num_heads=4,
        num_buckets=8,
        max_distance=6,
        bidirectional=bidirectional,
        initializer="random_normal",
    )
    layer.build(None)
    bias = layer.compute_bias(5, 9, start_index=3)
    expected = scaled_dot_product_attention(q, k, v, bias=bias)
    mod = layer.score_mod()

    def shifted(scores, batch, head, q_idx, kv_idx):
        return mod(scores, batch, head, q_idx + 3, kv_idx)

    out = scaled_dot_product_attention(
        q,
        k,
        v,
        score_mod=shifted,
        implementation=implementation,
        chunk_size=4,
    )
    np.testing.assert_allclose(_np(out), _np(expected), atol=1e-5)
    # The same through the function of the ops module.
    direct = relative_position_score_mod(
        layer.relative_attention_bias,
        bidirectional=bidirectional,
        num_buckets=8,
        max_distance=6,
    )
    out = scaled_dot_product_attention(
        q,
        k,
        v,
        score_mod=lambda s, b, h, i, j: direct(s, b, h, i + 3, j),
    )
    np.testing.assert_allclose(_np(out), _np(expected), atol=1e-5)


def test_jit_compiles_with_modifiers(rng):
    q, k, v = _inputs(rng, 1, 6, 6, 2, 1, 4, 4)
    sinks = np.array([0.3, -0.2], "float32")

    def fn(q, k, v):
        return scaled_dot_product_attention(
            q,
            k,
            v,
            is_causal=True,
            sinks=sinks,
            logit_soft_cap=2.0,
            score_mod=_mod,
            implementation="chunked",
            chunk_size=4,
        )

    if keras.backend.backend() == "jax":
        import jax

        out = jax.jit(fn)(q, k, v)
    elif keras.backend.backend() == "torch":
        out = fn(q, k, v)  # no XLA on torch: the eager call
    else:
        import tensorflow as tf

        out = tf.function(fn, jit_compile=True)(q, k, v)
    expected, _ = ref.attention(
        q, k, v, None, None, True, None, 2.0, sinks, _np_mod
    )
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)


def test_alibi_score_mod_serializes():
    mod = AlibiScoreMod(6, alibi_bias_max=4, bidirectional=True)
    config = keras.saving.serialize_keras_object(mod)
    restored = keras.saving.deserialize_keras_object(config, safe_mode=True)
    assert isinstance(restored, AlibiScoreMod)
    assert restored.get_config() == mod.get_config()
    with pytest.raises(NotImplementedError, match="__call__"):
        ScoreMod()(None, None, None, None, None)


Q = np.zeros((1, 3, 2, 4), "float32")
BAD = [
    ({"logit_soft_cap": 0.0}, "logit_soft_cap"),
    ({"logit_soft_cap": "big"}, "logit_soft_cap"),
    ({"sinks": np.zeros((3,), "float32")}, "`sinks` must have shape"),
    ({"sinks": np.zeros((1, 2), "float32")}, "`sinks` must have shape"),
    ({"sinks": np.zeros((2,), "int32")}, "`sinks` must be a float"),
    ({"score_mod": "alibi"}, "`score_mod` must be a callable"),
    (
        {"score_mod": lambda s, b, h, i, j: s[..., :1]},
        "`score_mod` must return",
    ),
]


@pytest.mark.parametrize("kwargs, match", BAD, ids=lambda x: str(x)[:30])
def test_bad_modifiers_raise(kwargs, match):
    error = TypeError if match.startswith("`score_mod` must be") else ValueError
    with pytest.raises(error, match=match):
        scaled_dot_product_attention(
            Q, Q, Q, implementation="reference", **kwargs
        )
