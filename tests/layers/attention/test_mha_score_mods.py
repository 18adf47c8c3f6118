"""`MultiHeadAttention` with score modifiers, and scores from its cache.

`logit_soft_cap`, `use_attention_sinks` and `score_mod` on the layer
against multi-head attention written out in NumPy (float64) from the
layer's weights; `.keras` save and load in safe mode; and
`return_attention_scores=True` with a KV cache against the uncached call
and NumPy.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.ops import AlibiScoreMod

ATOL = 1e-5
PATHS = ["reference", "fused", "chunked"]


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def _np_mha(x, weights, num_heads, num_kv, mask, soft_cap=None, alibi=False):
    """Self-attention in NumPy: `(output (B, T, E), weights (B, N, T, S))`.

    `weights` are the layer's: the 8 of Keras' layer, then `sinks` if any.
    ALiBi: `slope_h * (j - i)` with the paper's slopes (N a power of 2).
    """
    w = [np.asarray(a, "float64") for a in weights]
    qk, qb, kk, kb, vk, vb, ok, ob = w[:8]
    sinks = w[8] if len(w) > 8 else None
    q = np.einsum("btd,dnh->btnh", x, qk) + qb
    k = np.einsum("bsd,dkh->bskh", x, kk) + kb
    v = np.einsum("bsd,dkh->bskh", x, vk) + vb
    groups = num_heads // num_kv
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    length = x.shape[1]
    if alibi:
        slopes = 2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)
        distance = np.arange(length)[None, :] - np.arange(length)[:, None]
        logits = logits + slopes[:, None, None] * distance
    if soft_cap is not None:
        logits = soft_cap * np.tanh(logits / soft_cap)
    logits = np.where(mask, logits, -np.inf)
    row_max = logits.max(-1, keepdims=True)
    if sinks is not None:
        row_max = np.maximum(row_max, sinks.reshape(1, -1, 1, 1))
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.exp(logits - row_max)
    total = e.sum(-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(sinks.reshape(1, -1, 1, 1) - row_max)
    probs = e / np.where(total > 0, total, 1.0)
    out = np.einsum("bnts,bsnh->btnh", probs, v)
    return np.einsum("btnh,nhe->bte", out, ok) + ob, probs


def _layer(rng, x, **kwargs):
    layer = MultiHeadAttention(
        4,
        4,
        num_key_value_heads=2,
        bias_initializer="random_normal",
        logit_soft_cap=1.5,
        use_attention_sinks=True,
        score_mod=AlibiScoreMod(4),
        **kwargs,
    )
    layer(x, x)
    layer.sinks.assign(rng.normal(size=(4,)).astype("float32"))
    return layer


@pytest.mark.parametrize("implementation", PATHS)
def test_modifiers_match_numpy(rng, implementation):
    x = _rand(rng, 2, 6, 12)
    layer = _layer(rng, x, implementation=implementation)
    padding = np.ones((2, 6), bool)
    padding[1, 4:] = False
    query_mask = np.ones((2, 6), bool)
    query_mask[0, 2] = False  # a query that attends nothing
    out = layer(
        x,
        x,
        query_mask=query_mask,
        value_mask=padding,
        use_causal_mask=True,
    )
    mask = np.tril(np.ones((6, 6), bool))[None, None]
    mask = mask & padding[:, None, None, :] & query_mask[:, None, :, None]
    expected, _ = _np_mha(
        x, layer.get_weights(), 4, 2, mask, soft_cap=1.5, alibi=True
    )
    np.testing.assert_allclose(_np(out), expected, atol=ATOL)
    # The query that attends nothing gets the output projection's bias.
    np.testing.assert_allclose(
        _np(out)[0, 2], layer.get_weights()[7], atol=ATOL
    )


def test_sinks_variable_order_and_training(rng):
    x = _rand(rng, 2, 5, 8)
    ours = MultiHeadAttention(2, 4, use_attention_sinks=True)
    ours(x, x)
    theirs = keras.layers.MultiHeadAttention(2, 4)
    theirs(x, x)
    # Keras' eight variables first, in order, then the sinks.
    assert [w.shape for w in ours.weights[:8]] == [
        w.shape for w in theirs.weights
    ]
    assert ours.weights[8].path.endswith("sinks")
    assert tuple(ours.weights[8].shape) == (2,)
    np.testing.assert_array_equal(_np(ours.sinks), 0.0)
    # Weights transfer from Keras' layer; a sink of -inf (here -1e9) gives
    # Keras' outputs, a large sink shrinks every output toward the bias.
    ours.set_weights(theirs.get_weights() + [np.full((2,), -1e9, "float32")])
    np.testing.assert_allclose(_np(ours(x, x)), _np(theirs(x, x)), atol=ATOL)
    # The sinks learn: one fit step moves them.
    inputs = keras.Input((5, 8))
    model = keras.Model(inputs, ours(inputs, inputs))
    ours.sinks.assign(np.zeros((2,), "float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model.fit(x, np.zeros((2, 5, 8), "float32"), epochs=1, verbose=0)
    assert np.all(_np(ours.sinks) != 0.0)


def test_save_and_load_in_safe_mode(rng, tmp_path):
    x = _rand(rng, 2, 6, 12)
    inputs = keras.Input((6, 12))
    layer = _layer(rng, x, implementation="chunked")
    model = keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    restored_layer = restored.layers[-1]
    assert isinstance(restored_layer._score_mods[2], AlibiScoreMod)
    assert restored_layer.get_config() == layer.get_config()
    np.testing.assert_allclose(_np(restored(x)), _np(model(x)), atol=ATOL)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="logit_soft_cap"):
        MultiHeadAttention(2, 4, logit_soft_cap=-1.0)
    with pytest.raises(ValueError, match="use_attention_sinks"):
        MultiHeadAttention(2, 4, use_attention_sinks="yes")
    with pytest.raises(TypeError, match="score_mod"):
        MultiHeadAttention(2, 4, score_mod=3)


# --------------------------------------------------------------------------
# Scores from cached attention (keras-hub's CachedMultiHeadAttention
# returns None there).
# --------------------------------------------------------------------------


@pytest.mark.parametrize("modifiers", [False, True], ids=["plain", "mods"])
def test_cached_scores_equal_uncached_and_numpy(rng, modifiers):
    x = _rand(rng, 2, 5, 12)
    if modifiers:
        layer = _layer(rng, x)
    else:
        layer = MultiHeadAttention(
            4, 4, num_key_value_heads=2, bias_initializer="random_normal"
        )
        layer(x, x)
    full, full_scores = layer(
        x, x, use_causal_mask=True, return_attention_scores=True
    )
    causal = np.tril(np.ones((5, 5), bool))[None, None]
    expected, expected_scores = _np_mha(
        x,
        layer.get_weights(),
        4,
        2,
        causal,
        soft_cap=1.5 if modifiers else None,
        alibi=modifiers,
    )
    np.testing.assert_allclose(_np(full), expected, atol=ATOL)
    np.testing.assert_allclose(_np(full_scores), expected_scores, atol=ATOL)
    # A prompt of 2 at once, then one token per step, against a cache of 7.
    cache = np.zeros((2, 2, 7, 2, 4), "float32")
    out, scores, cache = layer(
        x[:, :2],
        x[:, :2],
        cache=cache,
        cache_update_index=0,
        use_causal_mask=True,
        return_attention_scores=True,
    )
    assert tuple(scores.shape) == (2, 4, 2, 7)
    np.testing.assert_allclose(_np(out), expected[:, :2], atol=ATOL)
    np.testing.assert_allclose(
        _np(scores)[..., :5], expected_scores[:, :, :2], atol=ATOL
    )
    for i in range(2, 5):
        out, scores, cache = layer(
            x[:, i : i + 1],
            x[:, i : i + 1],
            cache=cache,
            cache_update_index=i,
            use_causal_mask=True,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(_np(out), expected[:, i : i + 1], atol=ATOL)
        # Row i of the uncached scores; the unwritten cache slots get 0.
        np.testing.assert_allclose(
            _np(scores)[:, :, 0, :5], expected_scores[:, :, i], atol=ATOL
        )
        np.testing.assert_array_equal(_np(scores)[..., 5:], 0.0)
