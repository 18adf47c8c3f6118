"""Tests of `keras_attn.layers.MultiHeadAttention`.

References are independent of the layer: `keras.layers.MultiHeadAttention`,
`keras.layers.GroupQueryAttention`, `torch.nn.MultiheadAttention` (run as a
NumPy oracle on CPU) and NumPy attention written in this file.
"""

import keras
import numpy as np
import pytest
import torch
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from tests.conformance import BadInput
from tests.conformance import run_layer_test

ATOL = 1e-5


def _np(x):
    return ops.convert_to_numpy(x)


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype("float32")


def _assert_close(actual, expected, atol=ATOL):
    np.testing.assert_allclose(_np(actual), _np(expected), atol=atol)


def _transfer_pair(ours, theirs, build_args):
    """Builds both layers, then copies weights ours -> theirs -> ours."""
    for layer in (ours, theirs):
        # Keras' fused path fails on JAX when value_dim != key_dim; scores
        # force its einsum path, which every configuration supports.
        layer(*build_args, return_attention_scores=True)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]


# --------------------------------------------------------------------------
# NumPy oracle
# --------------------------------------------------------------------------


def _np_rotary(x, start, max_wavelength=10000.0):
    """keras-hub/RoFormer rotation of (B, T, heads, H), halves convention."""
    dim = x.shape[-1]
    inv_freq = 1.0 / max_wavelength ** (np.arange(0, dim, 2) / dim)
    pos = np.arange(x.shape[1]) + start
    angles = np.outer(pos, inv_freq)  # (T, H/2)
    cos = np.concatenate([np.cos(angles)] * 2, -1)[None, :, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, -1)[None, :, None, :]
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    rotated = np.concatenate([-x2, x1], -1)
    return x * cos + rotated * sin


def _np_rms(x, scale, eps=1e-6):
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + eps) * scale


def _np_mha(
    query,
    value,
    weights,
    num_heads,
    num_kv_heads,
    mask=None,
    bias=None,
    rotary=False,
    qk_norm=False,
):
    """Multi-head attention in float64 NumPy, from the layer's weights."""
    w = [np.asarray(x, "float64") for x in weights]
    qk, qb, kk, kb, vk, vb, ok, ob = w[:8]
    q = np.einsum("btd,dnh->btnh", query, qk) + qb
    k = np.einsum("bsd,dkh->bskh", value, kk) + kb
    v = np.einsum("bsd,dkh->bskh", value, vk) + vb
    if qk_norm:
        q, k = _np_rms(q, w[8]), _np_rms(k, w[9])
    if rotary:
        q, k = _np_rotary(q, 0), _np_rotary(k, 0)
    groups = num_heads // num_kv_heads
    k, v = np.repeat(k, groups, axis=2), np.repeat(v, groups, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    logits = logits - logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs = probs / probs.sum(-1, keepdims=True)
    out = np.einsum("bnts,bsnh->btnh", probs, v)
    return np.einsum("btnh,nhe->bte", out, ok) + ob


def _causal(t, s):
    return np.tril(np.ones((t, s), bool))


# --------------------------------------------------------------------------
# Conformance
# --------------------------------------------------------------------------


def test_conformance_self_attention(rng):
    x = _rand(rng, 2, 6, 16)
    run_layer_test(
        MultiHeadAttention,
        {"num_heads": 4, "key_dim": 4},
        {"query": x, "value": x},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 6, 16),
        bad_inputs=[
            BadInput("num_heads", init_kwargs={"num_heads": 0}),
            BadInput("key_dim", init_kwargs={"key_dim": -1}),
            BadInput("value_dim", init_kwargs={"value_dim": 2.5}),
            BadInput(
                "num_key_value_heads", init_kwargs={"num_key_value_heads": 3}
            ),
            BadInput("sliding_window", init_kwargs={"sliding_window": 0}),
            BadInput("dropout", init_kwargs={"dropout": 1.5}),
            BadInput("implementation", init_kwargs={"implementation": "x"}),
            BadInput("attention_axes", init_kwargs={"attention_axes": (3,)}),
            BadInput("query", input_data={"query": x[0], "value": x}),
            BadInput("value", input_data={"query": x, "value": x[..., None]}),
            BadInput(
                "attention_mask",
                call_kwargs={"attention_mask": np.ones((2, 5, 6), bool)},
            ),
            BadInput(
                "query_mask", call_kwargs={"query_mask": np.ones((2, 5), bool)}
            ),
            BadInput(
                "attention_bias",
                call_kwargs={"attention_bias": np.ones((1, 4, 6, 6), bool)},
            ),
            BadInput(
                "attention_bias",
                call_kwargs={"attention_bias": np.ones((1, 3, 6, 6), "f4")},
            ),
            BadInput(
                "cache_update_index", call_kwargs={"cache_update_index": 0}
            ),
            BadInput(
                "cache",
                call_kwargs={
                    "cache": np.zeros((2, 2, 8, 4, 5), "float32"),
                    "cache_update_index": 0,
                },
            ),
            BadInput(
                "key_dim == value_dim",
                init_kwargs={"value_dim": 3},
                call_kwargs={
                    "cache": np.zeros((2, 2, 8, 4, 4), "float32"),
                    "cache_update_index": 0,
                },
            ),
            BadInput(
                "cache_update_index",
                call_kwargs={
                    "cache": np.zeros((2, 2, 8, 4, 4), "float32"),
                    "cache_update_index": 4,
                },
            ),
        ],
    )


GQA_INIT = {
    "num_heads": 4,
    "key_dim": 8,
    "num_key_value_heads": 2,
    "sliding_window": 2,
    "use_qk_norm": True,
    "use_gate": True,
    "rotary_embedding": RotaryEmbedding(),
}


def test_conformance_gqa_rotary_qk_norm(rng):
    x = _rand(rng, 2, 3, 16)
    run_layer_test(
        MultiHeadAttention,
        GQA_INIT,
        {"query": x, "value": x},
        call_kwargs={"use_causal_mask": True},
        expected_output_shape=(2, 3, 16),
    )


def test_conformance_cache(rng):
    x = _rand(rng, 2, 3, 16)
    cache = _rand(rng, 2, 2, 5, 2, 8)
    run_layer_test(
        MultiHeadAttention,
        GQA_INIT,
        {"query": x, "value": x, "cache": cache},
        call_kwargs={"use_causal_mask": True, "cache_update_index": 1},
        expected_output_shape=((2, 3, 16), (2, 2, 5, 2, 8)),
        # A cache is for inference (as in keras-hub): TensorFlow has no
        # gradient for the dynamic slice update that writes it.
        run_training=False,
        # Precision is checked without a cache in the test above.
        run_mixed_precision=False,
    )


def test_conformance_cross_multi_axis(rng):
    query = _rand(rng, 2, 3, 4, 8)
    value = _rand(rng, 2, 3, 5, 6)
    run_layer_test(
        MultiHeadAttention,
        {
            "num_heads": 2,
            "key_dim": 4,
            "value_dim": 3,
            "attention_axes": (2,),
            "output_shape": (5,),
        },
        {"query": query, "value": value},
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((2, 3, 4, 5), (2, 3, 2, 4, 5)),
        # Scores are the second output and the training helper fits the
        # first; mixed precision is covered by test_fully_masked_row.
        run_mixed_precision=False,
    )


def test_built_layer_rejects_other_feature_sizes(rng):
    layer = MultiHeadAttention(2, 4)
    layer(_rand(rng, 1, 3, 8), _rand(rng, 1, 4, 6))
    with pytest.raises(ValueError, match="value"):
        layer(_rand(rng, 1, 3, 8), _rand(rng, 1, 4, 7))
    with pytest.raises(ValueError, match="query"):
        layer(_rand(rng, 1, 3, 9), _rand(rng, 1, 4, 6))


# --------------------------------------------------------------------------
# keras.layers.MultiHeadAttention: same variables, same outputs
# --------------------------------------------------------------------------

KERAS_CASES = {
    "self": ({}, (2, 5, 12), (2, 5, 12), {}),
    "cross": ({"value_dim": 3}, (2, 5, 12), (2, 7, 10), {}),
    "causal": ({}, (2, 6, 12), (2, 6, 12), {"use_causal_mask": True}),
    "cross_causal": ({}, (2, 4, 12), (2, 7, 10), {"use_causal_mask": True}),
    "masked": ({}, (2, 5, 12), (2, 7, 10), {"attention_mask": "random"}),
    "gate_window": (
        {"use_gate": True, "sliding_window": 2, "output_shape": (3, 2)},
        (2, 6, 12),
        (2, 6, 12),
        {"use_causal_mask": True},
    ),
    "no_bias": ({"use_bias": False}, (2, 5, 12), (2, 7, 10), {}),
    "multi_axis": (
        {"attention_axes": (1, 2)},
        (2, 3, 4, 12),
        (2, 2, 5, 10),
        {"attention_mask": "random"},
    ),
    "inner_axis": ({"attention_axes": (2,)}, (2, 3, 4, 12), (2, 3, 5, 10), {}),
}


@pytest.mark.parametrize("case", sorted(KERAS_CASES))
def test_matches_keras_multi_head_attention(case, rng):
    init, q_shape, v_shape, call = KERAS_CASES[case]
    kwargs = dict(
        num_heads=3, key_dim=4, bias_initializer="random_normal", **init
    )
    ours = MultiHeadAttention(**kwargs)
    theirs = keras.layers.MultiHeadAttention(**kwargs)
    query, value = _rand(rng, *q_shape), _rand(rng, *v_shape)
    call = dict(call)
    if call.get("attention_mask") == "random":
        mask_shape = q_shape[:-1] + v_shape[1 + len(q_shape) - 3 : -1]
        if case == "multi_axis":
            mask_shape = (2, 3, 4, 2, 5)
        mask = rng.random(mask_shape) > 0.3
        mask[..., 0] = True  # no fully masked row (Keras' fused path differs)
        call["attention_mask"] = mask
    _transfer_pair(ours, theirs, (query, value))
    # Both directions: Keras' weights into ours, then new weights of ours
    # into Keras'.
    for direction in ("to_ours", "to_keras"):
        if direction == "to_ours":
            ours.set_weights(theirs.get_weights())
        else:
            ours.set_weights(
                [_rand(rng, *w.shape) * 0.3 for w in ours.get_weights()]
            )
            theirs.set_weights(ours.get_weights())
        # Keras' own fused path fails on JAX when value_dim != key_dim;
        # asking for the scores takes its einsum path (same output).
        ref_out, ref_scores = theirs(
            query, value, return_attention_scores=True, **call
        )
        _assert_close(ours(query, value, **call), ref_out)
        out, scores = ours(query, value, return_attention_scores=True, **call)
        _assert_close(out, ref_out)
        _assert_close(scores, ref_scores)


def _embedding_model(layer_cls, tokens, **init):
    inputs = keras.Input((tokens.shape[1],), dtype="int32")
    x = keras.layers.Embedding(20, 12, mask_zero=True, name="embed")(inputs)
    y = keras.layers.Embedding(20, 12, mask_zero=True, name="embed2")(inputs)
    out = layer_cls(num_heads=3, key_dim=4, name="mha", **init)(x, y)
    return keras.Model(inputs, out)


def test_matches_keras_with_embedding_masks(rng):
    tokens = rng.integers(1, 20, (3, 7)).astype("int32")
    tokens[0, 5:] = 0
    tokens[1, 2:] = 0
    ours = _embedding_model(MultiHeadAttention, tokens)
    theirs = _embedding_model(keras.layers.MultiHeadAttention, tokens)
    ours.set_weights(theirs.get_weights())
    out = ours.predict(tokens, verbose=0)
    ref = theirs.predict(tokens, verbose=0)
    valid = tokens != 0
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL)
    # The mask reached the layer: without it the valid rows change.
    unmasked = MultiHeadAttention(num_heads=3, key_dim=4)
    emb = ours.get_layer("embed")(tokens)
    emb2 = ours.get_layer("embed2")(tokens)
    unmasked(emb, emb2)
    unmasked.set_weights(ours.get_layer("mha").get_weights())
    plain = _np(unmasked(_np(emb), _np(emb2)))
    assert not np.allclose(plain[valid], ref[valid], atol=1e-3)
    # And the output keeps the query's mask.
    layer = MultiHeadAttention(num_heads=3, key_dim=4)
    emb_layer = keras.layers.Embedding(20, 12, mask_zero=True)
    inputs = keras.Input((7,), dtype="int32")
    masked = layer(emb_layer(inputs), emb_layer(inputs))
    assert masked._keras_mask is not None


# --------------------------------------------------------------------------
# torch.nn.MultiheadAttention
# --------------------------------------------------------------------------


def _torch_weights_to_ours(mha, num_heads, same_dims):
    """Converts a torch MultiheadAttention's weights to Keras' layout."""
    e = mha.embed_dim
    h = e // num_heads
    if same_dims:
        wq, wk, wv = mha.in_proj_weight.detach().numpy().reshape(3, e, e)
    else:
        wq = mha.q_proj_weight.detach().numpy()
        wk = mha.k_proj_weight.detach().numpy()
        wv = mha.v_proj_weight.detach().numpy()
    bq, bk, bv = mha.in_proj_bias.detach().numpy().reshape(3, e)
    weights = []
    for w, b in ((wq, bq), (wk, bk), (wv, bv)):
        # torch: y = x W^T + b, W (N*H, in) -> kernel (in, N, H)
        weights += [w.T.reshape(-1, num_heads, h), b.reshape(num_heads, h)]
    wo = mha.out_proj.weight.detach().numpy()
    weights += [
        wo.T.reshape(num_heads, h, e),
        mha.out_proj.bias.detach().numpy(),
    ]
    return weights


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_torch_multihead_attention(cross, causal, rng):
    torch.manual_seed(0)
    num_heads, e = 4, 16
    t, s = 5, (7 if cross else 5)
    kv_dim = 10 if cross else e
    ref = torch.nn.MultiheadAttention(
        e, num_heads, batch_first=True, kdim=kv_dim, vdim=kv_dim
    )
    torch.nn.init.normal_(ref.in_proj_bias)
    query = _rand(rng, 2, t, e)
    value = query if not cross else _rand(rng, 2, s, kv_dim)
    key_padding = np.zeros((2, s), bool)  # torch: True = ignore
    key_padding[0, s - 2 :] = True
    attn_mask = None
    if causal:
        attn_mask = torch.from_numpy(~_causal(t, s))
    expected, _ = ref(
        torch.from_numpy(query),
        torch.from_numpy(value),
        torch.from_numpy(value),
        key_padding_mask=torch.from_numpy(key_padding),
        attn_mask=attn_mask,
        need_weights=False,
    )
    layer = MultiHeadAttention(num_heads, e // num_heads)
    layer(query, value)
    layer.set_weights(_torch_weights_to_ours(ref, num_heads, not cross))
    out = layer(query, value, value_mask=~key_padding, use_causal_mask=causal)
    _assert_close(out, expected.detach().numpy())


# --------------------------------------------------------------------------
# Grouped-query attention
# --------------------------------------------------------------------------


@pytest.mark.parametrize("num_kv_heads", [1, 2])
def test_gqa_equals_mha_with_repeated_key_value_heads(num_kv_heads, rng):
    num_heads, groups = 4, 4 // num_kv_heads
    query, value = _rand(rng, 2, 5, 12), _rand(rng, 2, 6, 10)
    mask = rng.random((2, 5, 6)) > 0.3
    mask[..., 0] = True
    gqa = MultiHeadAttention(
        num_heads,
        4,
        num_key_value_heads=num_kv_heads,
        bias_initializer="random_normal",
    )
    gqa(query, value)
    assert tuple(gqa.key_dense.kernel.shape) == (10, num_kv_heads, 4)
    w = gqa.get_weights()
    full = list(w)
    for i in (2, 3, 4, 5):  # key/value kernel (D, K, H) and bias (K, H)
        full[i] = np.repeat(w[i], groups, axis=-2)
    mha = keras.layers.MultiHeadAttention(num_heads, 4)
    mha(query, value)
    mha.set_weights(full)
    for kwargs in ({}, {"use_causal_mask": True}):
        _assert_close(
            gqa(query, value, attention_mask=mask, **kwargs),
            mha(query, value, attention_mask=mask, **kwargs),
        )


@pytest.mark.parametrize("sliding_window", [None, 3])
def test_gqa_matches_keras_group_query_attention(sliding_window, rng):
    query, value = _rand(rng, 2, 6, 12), _rand(rng, 2, 6, 10)
    ours = MultiHeadAttention(
        4,
        4,
        num_key_value_heads=2,
        sliding_window=sliding_window,
        bias_initializer="random_normal",
    )
    theirs = keras.layers.GroupQueryAttention(
        head_dim=4,
        num_query_heads=4,
        num_key_value_heads=2,
        sliding_window=sliding_window,
    )
    ours(query, value)
    theirs(query, value)
    assert [w.shape for w in ours.weights] == [w.shape for w in theirs.weights]
    theirs.set_weights(ours.get_weights())
    for causal in (False, True):
        _assert_close(
            ours(query, value, use_causal_mask=causal),
            theirs(query, value, use_causal_mask=causal),
        )


# --------------------------------------------------------------------------
# Beyond Keras: bias, rotary, QK norm (NumPy oracle)
# --------------------------------------------------------------------------


def test_attention_bias_rotary_qk_norm_match_numpy(rng):
    query, value = _rand(rng, 2, 5, 12), _rand(rng, 2, 5, 12)
    bias = _rand(rng, 1, 4, 5, 5)
    layer = MultiHeadAttention(
        4,
        6,
        num_key_value_heads=2,
        rotary_embedding={"max_wavelength": 10000},
        use_qk_norm=True,
        bias_initializer="random_normal",
    )
    layer(query, value)
    weights = layer.get_weights()
    assert len(weights) == 10
    weights[8] = rng.uniform(0.5, 1.5, weights[8].shape).astype("float32")
    weights[9] = rng.uniform(0.5, 1.5, weights[9].shape).astype("float32")
    layer.set_weights(weights)
    out = layer(query, value, attention_bias=bias, use_causal_mask=True)
    expected = _np_mha(
        query.astype("float64"),
        value.astype("float64"),
        weights,
        4,
        2,
        mask=_causal(5, 5),
        bias=bias,
        rotary=True,
        qk_norm=True,
    )
    _assert_close(out, expected)
    config = layer.get_config()
    assert config["rotary_embedding"]["class_name"] == "RotaryEmbedding"
    assert MultiHeadAttention.from_config(config).get_config() == config


def test_default_weights_match_keras_count():
    layer = MultiHeadAttention(2, 4)
    layer(np.zeros((1, 3, 8), "float32"), np.zeros((1, 3, 8), "float32"))
    assert [w.path.split("/", 1)[1] for w in layer.weights] == [
        "query/kernel",
        "query/bias",
        "key/kernel",
        "key/bias",
        "value/kernel",
        "value/bias",
        "attention_output/kernel",
        "attention_output/bias",
    ]


# --------------------------------------------------------------------------
# KV cache
# --------------------------------------------------------------------------


def _decode(layer, x, cache, **kwargs):
    outputs = []
    for i in range(x.shape[1]):
        out, cache = layer(
            x[:, i : i + 1],
            x[:, i : i + 1],
            cache=cache,
            cache_update_index=i,
            use_causal_mask=True,
            **kwargs,
        )
        outputs.append(_np(out))
    return np.concatenate(outputs, 1), cache


@pytest.mark.parametrize(
    "init",
    [{}, {"num_key_value_heads": 2, "sliding_window": 3}],
    ids=["mha", "gqa_window"],
)
def test_cached_decoding_equals_full_causal_pass(init, rng):
    x = _rand(rng, 2, 6, 12)
    ours = MultiHeadAttention(4, 4, bias_initializer="random_normal", **init)
    ours(x, x)
    if "num_key_value_heads" in init:
        theirs = keras.layers.GroupQueryAttention(
            4, 4, 2, sliding_window=init["sliding_window"]
        )
    else:
        theirs = keras.layers.MultiHeadAttention(4, 4)
    theirs(x, x)
    theirs.set_weights(ours.get_weights())
    expected = _np(theirs(x, x, use_causal_mask=True))
    num_kv = init.get("num_key_value_heads", 4)
    cache = np.zeros((2, 2, 8, num_kv, 4), "float32")  # longer than needed
    decoded, cache = _decode(ours, x, cache)
    np.testing.assert_allclose(decoded, expected, atol=ATOL)
    # The cache holds the projected keys and values of every step.
    key = np.einsum("bsd,dkh->bskh", x, ours.get_weights()[2])
    np.testing.assert_allclose(
        _np(cache)[:, 0, :6], key + ours.get_weights()[3], atol=ATOL
    )
    # A whole prompt at once, then a step: same outputs.
    cache = np.zeros((2, 2, 8, num_kv, 4), "float32")
    out, cache = ours(
        x[:, :4],
        x[:, :4],
        cache=cache,
        cache_update_index=0,
        use_causal_mask=True,
    )
    np.testing.assert_allclose(_np(out), expected[:, :4], atol=ATOL)
    out, _, cache = ours(
        x[:, 4:5],
        x[:, 4:5],
        cache=cache,
        cache_update_index=ops.convert_to_tensor(4, "int32"),
        use_causal_mask=True,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(_np(out), expected[:, 4:5], atol=ATOL)


def test_cached_decoding_with_rotary_matches_numpy(rng):
    x = _rand(rng, 2, 5, 12)
    layer = MultiHeadAttention(
        4,
        4,
        num_key_value_heads=2,
        rotary_embedding=RotaryEmbedding(),
        bias_initializer="random_normal",
    )
    layer(x, x)
    expected = _np_mha(
        x.astype("float64"),
        x.astype("float64"),
        layer.get_weights(),
        4,
        2,
        mask=_causal(5, 5),
        rotary=True,
    )
    decoded, _ = _decode(layer, x, np.zeros((2, 2, 5, 2, 4), "float32"))
    np.testing.assert_allclose(decoded, expected, atol=ATOL)


def test_cross_attention_over_cached_encoder_output(rng):
    encoded, target = _rand(rng, 2, 7, 10), _rand(rng, 2, 4, 12)
    ours = MultiHeadAttention(4, 4, bias_initializer="random_normal")
    ours(target, encoded)
    theirs = keras.layers.MultiHeadAttention(4, 4)
    theirs(target, encoded)
    theirs.set_weights(ours.get_weights())
    expected = _np(theirs(target, encoded))
    # Fill the cache once from the encoder output ...
    _, cache = ours(
        target[:, :1],
        encoded,
        cache=np.zeros((2, 2, 7, 4, 4), "float32"),
        cache_update_index=0,
    )
    # ... then read it as is at every step; `value` is ignored.
    steps = [
        _np(ours(target[:, i : i + 1], encoded * 0, cache=cache)[0])
        for i in range(4)
    ]
    np.testing.assert_allclose(np.concatenate(steps, 1), expected, atol=ATOL)


# --------------------------------------------------------------------------
# Causality, padding, precision, dropout
# --------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["auto", "reference"])
def test_causal_output_ignores_the_future_bit_for_bit(implementation, rng):
    x = _rand(rng, 2, 8, 12)
    layer = MultiHeadAttention(
        4, 4, num_key_value_heads=2, implementation=implementation
    )
    before = _np(layer(x, x, use_causal_mask=True))
    for t in (0, 3, 6):
        changed = x.copy()
        changed[:, t + 1 :] = _rand(rng, 2, 7 - t, 12) * 10
        after = _np(layer(changed, changed, use_causal_mask=True))
        np.testing.assert_array_equal(after[:, : t + 1], before[:, : t + 1])
        assert not np.allclose(after[:, t + 1 :], before[:, t + 1 :])


def test_padding_does_not_change_valid_outputs(rng):
    query, value = _rand(rng, 2, 5, 12), _rand(rng, 2, 6, 12)
    valid = np.ones((2, 6), bool)
    valid[0, 3:] = False
    valid[1, 5:] = False
    layer = MultiHeadAttention(4, 4)
    before = _np(layer(query, value, value_mask=valid))
    changed = value.copy()
    changed[~valid] = 100.0
    after = _np(layer(query, changed, value_mask=valid))
    np.testing.assert_array_equal(after, before)
    assert not np.allclose(_np(layer(query, changed)), before)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scores", [False, True])
def test_fully_masked_row_is_finite(policy, scores, rng):
    x = _rand(rng, 2, 5, 12)
    mask = np.ones((2, 5, 5), bool)
    mask[0, 2] = False  # query 2 of example 0 attends nothing
    layer = MultiHeadAttention(4, 4, dtype=policy)
    outputs = layer(x, x, attention_mask=mask, return_attention_scores=scores)
    for out in keras.tree.flatten(outputs):
        assert np.all(np.isfinite(_np(ops.cast(out, "float32"))))
    out = _np(ops.cast(keras.tree.flatten(outputs)[0], "float32"))
    # The masked row attends nothing: its output is the output bias (0).
    np.testing.assert_array_equal(out[0, 2], np.zeros(12, "float32"))


def test_dropout_only_in_training(rng):
    x = _rand(rng, 2, 6, 12)
    layer = MultiHeadAttention(4, 4, dropout=0.5, seed=1)
    plain = MultiHeadAttention(4, 4)
    layer(x, x)
    plain(x, x)
    plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(
        _np(layer(x, x, training=False)), _np(plain(x, x))
    )
    trained = _np(layer(x, x, training=True))
    assert not np.allclose(trained, _np(plain(x, x)), atol=1e-3)
    # Scores are the weights before dropout, as in Keras.
    _, scores = layer(x, x, training=True, return_attention_scores=True)
    np.testing.assert_allclose(_np(scores).sum(-1), 1.0, atol=1e-5)


def test_dropout_inference_takes_the_fast_path(rng, monkeypatch):
    from keras_attn.layers.attention import multi_head_attention as module

    seen = []
    original = module.scaled_dot_product_attention

    def spy(*args, **kwargs):
        seen.append((kwargs["dropout_rate"], kwargs["return_weights"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "scaled_dot_product_attention", spy)
    x = _rand(rng, 2, 6, 12)
    layer = MultiHeadAttention(4, 4, dropout=0.1)
    layer(x, x, training=False)
    layer(x, x, training=True)
    assert seen == [(0.0, False), (0.1, False)]


# --------------------------------------------------------------------------
# The `_compute_attention` hook, the kernel choice, masks and seeds
# --------------------------------------------------------------------------


class _UniformAttention(MultiHeadAttention):
    """Overrides the hook: every query reads the mean of the values."""

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
    ):
        self.seen = (attention_mask, use_causal_mask)
        # (B, 1, N, Hv) -> (B, T, N, Hv)
        mean = ops.mean(value, axis=1, keepdims=True)
        return ops.broadcast_to(
            mean, ops.shape(query)[:2] + value.shape[2:]
        ), None


def test_compute_attention_has_keras_signature():
    import inspect

    ours = inspect.signature(MultiHeadAttention._compute_attention)
    theirs = inspect.signature(
        keras.layers.MultiHeadAttention._compute_attention
    )
    names = list(ours.parameters)
    assert names[: len(theirs.parameters)] == list(theirs.parameters)
    for name in theirs.parameters:
        assert ours.parameters[name].default == theirs.parameters[name].default


def test_compute_attention_override_changes_the_result(rng):
    x = _rand(rng, 2, 5, 12)
    layer = _UniformAttention(4, 3, bias_initializer="random_normal")
    plain = MultiHeadAttention(4, 3)
    out = _np(layer(x, x, use_causal_mask=True))
    plain(x, x)
    plain.set_weights(layer.get_weights())
    assert not np.allclose(out, _np(plain(x, x, use_causal_mask=True)))
    # NumPy: the output projection of the mean projected value.
    qk, qb, kk, kb, vk, vb, ok, ob = layer.get_weights()
    v = np.einsum("bsd,dnh->bsnh", x, vk) + vb
    expected = np.einsum("bnh,nhe->be", v.mean(1), ok) + ob
    np.testing.assert_allclose(
        out, np.repeat(expected[:, None], 5, 1), atol=ATOL
    )
    # An override receives the causal mask itself, as in Keras.
    mask, use_causal = layer.seen
    assert use_causal is False
    np.testing.assert_array_equal(
        np.broadcast_to(_np(mask), (2, 5, 5)),
        np.broadcast_to(_causal(5, 5), (2, 5, 5)),
    )


@pytest.mark.parametrize("implementation", ["reference", "chunked"])
def test_flash_attention_contradicting_implementation_raises(implementation):
    with pytest.raises(ValueError, match="flash_attention=True"):
        MultiHeadAttention(
            2, 4, flash_attention=True, implementation=implementation
        )


def test_flash_attention_maps_onto_fused(rng):
    x = _rand(rng, 2, 5, 8)
    flash = MultiHeadAttention(2, 4, flash_attention=True)
    fused = MultiHeadAttention(
        2, 4, flash_attention=True, implementation="fused"
    )
    reference = MultiHeadAttention(2, 4, implementation="reference")
    for layer in (flash, fused, reference):
        layer(x, x)
    fused.set_weights(flash.get_weights())
    reference.set_weights(flash.get_weights())
    _assert_close(flash(x, x), reference(x, x), atol=1e-4)
    _assert_close(fused(x, x), reference(x, x), atol=1e-4)
    with pytest.raises(ValueError, match="scores"):
        flash(x, x, return_attention_scores=True)
    with pytest.raises(ValueError, match="flash"):
        MultiHeadAttention(2, 4, flash_attention=True, dropout=0.1)
    # The config round trip keeps the choice.
    restored = MultiHeadAttention.from_config(flash.get_config())
    with pytest.raises(ValueError, match="scores"):
        restored(x, x, return_attention_scores=True)


def test_cached_decoding_with_masked_embedding(rng):
    # keras-hub's way: the step's Keras mask fills query_mask/value_mask.
    tokens = rng.integers(1, 20, (2, 6)).astype("int32")
    tokens[1, 4:] = 0  # right padding
    embed = keras.layers.Embedding(20, 12, mask_zero=True)
    ours = MultiHeadAttention(4, 4, bias_initializer="random_normal")
    theirs = keras.layers.MultiHeadAttention(4, 4)
    x = embed(tokens)
    ours(x, x)
    theirs(x, x)
    theirs.set_weights(ours.get_weights())
    expected = _np(theirs(embed(tokens), embed(tokens), use_causal_mask=True))
    cache = np.zeros((2, 2, 6, 4, 4), "float32")
    steps = []
    for i in range(6):
        step = embed(tokens[:, i : i + 1])
        out, cache = ours(
            step, step, cache=cache, cache_update_index=i, use_causal_mask=True
        )
        steps.append(_np(out))
    decoded = np.concatenate(steps, 1)
    valid = tokens != 0
    np.testing.assert_allclose(decoded[valid], expected[valid], atol=ATOL)
    # Padded queries attend nothing: the output is the output bias.
    bias = ours.get_weights()[-1]
    np.testing.assert_allclose(
        decoded[~valid], np.broadcast_to(bias, decoded[~valid].shape), atol=ATOL
    )


def _masked_model():
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(20, 8, mask_zero=True, name="embed")(inputs)
    x = MultiHeadAttention(2, 4, name="mha")(x, x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX jit")
def test_embedding_padding_honoured_in_fit_and_predict(rng):
    import warnings

    tokens = rng.integers(1, 20, (4, 7)).astype("int32")
    lengths = [7, 5, 3, 6]
    for b, length in enumerate(lengths):
        tokens[b, length:] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _masked_model()
        out = model.predict(tokens, verbose=0)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "does not support masking" in m]
    # predict (jit): each valid row equals the model on the unpadded tokens.
    for b, length in enumerate(lengths):
        alone = model.predict(tokens[b : b + 1, :length], verbose=0)
        np.testing.assert_allclose(out[b, :length], alone[0], atol=ATOL)
    # fit (jit): with the padded positions weighted 0 in the loss, the pad
    # token's embedding gets no gradient unless the mask leaks.
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    assert model.jit_compile
    before = model.get_layer("embed").get_weights()[0].copy()
    targets = rng.normal(size=(4, 7, 3)).astype("float32")
    model.fit(
        tokens,
        targets,
        sample_weight=(tokens != 0).astype("float32"),
        batch_size=4,
        epochs=1,
        verbose=0,
    )
    after = model.get_layer("embed").get_weights()[0]
    np.testing.assert_array_equal(after[0], before[0])
    assert not np.allclose(after[1:], before[1:])


@pytest.mark.parametrize(
    "init",
    [
        {},
        {"use_gate": True, "dropout": 0.1},
        {
            "kernel_initializer": "he_normal",
            "bias_initializer": "random_normal",
            "value_dim": 3,
            "output_shape": 5,
        },
    ],
    ids=["default", "gate_dropout", "initializers"],
)
def test_seeded_initial_weights_equal_keras(init):
    shapes = ((2, 5, 12), (2, 7, 10))
    weights = []
    for cls in (MultiHeadAttention, keras.layers.MultiHeadAttention):
        keras.utils.set_random_seed(7)
        layer = cls(num_heads=3, key_dim=4, **init)
        layer.build(*shapes)
        weights.append([_np(w) for w in layer.weights])
    assert len(weights[0]) == len(weights[1])
    for ours, theirs in zip(*weights):
        np.testing.assert_array_equal(ours, theirs)
    # And the kernels differ from one another.
    assert not np.array_equal(weights[0][0], weights[0][2])
