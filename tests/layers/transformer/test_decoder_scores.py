"""Attention scores of `TransformerDecoder`, with and without caches.

Checked against NumPy (the self- and cross-attention weights of a
post-norm block written out from its weights, via `_reference.py`) and,
for cached decoding, against the rows of the uncached call.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import TransformerDecoder
from tests.layers.transformer import _reference

ATOL = 1e-5


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _probs(q_in, kv_in, w, num_heads, mask):
    """Attention weights `(B, N, T, S)` of an attention sublayer."""
    qk, qb, kk, kb = (np.asarray(a, "float64") for a in w[:4])
    q = np.einsum("btd,dnh->btnh", q_in, qk) + qb
    k = np.einsum("bsd,dnh->bsnh", kv_in, kk) + kb
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _decoder(rng, x, memory=None):
    decoder = TransformerDecoder(intermediate_dim=16, num_heads=2)
    decoder(x, memory)
    decoder.set_weights(
        [
            rng.standard_normal(w.shape).astype("float32") * 0.5
            for w in decoder.weights
        ]
    )
    return decoder


def test_all_scores_match_numpy_and_cached_steps(rng):
    x = rng.standard_normal((2, 4, 8)).astype("float32")
    memory = rng.standard_normal((2, 5, 8)).astype("float32")
    memory_mask = np.arange(5)[None] < np.array([[5], [3]])
    decoder = _decoder(rng, x, memory)
    w = [np.asarray(a, "float64") for a in decoder.get_weights()]
    out, scores = decoder(
        x,
        memory,
        encoder_padding_mask=memory_mask,
        return_attention_scores="all",
    )
    assert sorted(scores) == ["cross_attention", "self_attention"]
    # NumPy: causal self-attention on x, then cross-attention from the
    # normalized residual (post-norm) to the memory.
    causal = np.tril(np.ones((4, 4), bool))[None, None]
    np.testing.assert_allclose(
        _np(scores["self_attention"]), _probs(x, x, w, 2, causal), atol=ATOL
    )
    x64 = x.astype("float64")
    attended = _reference.attention(x64, x64, w[:8], 2, mask=causal[0])
    h = _reference.layer_norm(x64 + attended, w[8], w[9], 1e-5)
    cross = _probs(h, memory, w[10:18], 2, memory_mask[:, None, None, :])
    np.testing.assert_allclose(_np(scores["cross_attention"]), cross, atol=ATOL)
    # True: the cross-attention scores alone, as before.
    _, last = decoder(
        x,
        memory,
        encoder_padding_mask=memory_mask,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(_np(last), cross, atol=ATOL)

    # Cached: one token per step; each step's scores are a row of the
    # uncached ones (the self-attention over a cache of 6, zero past the
    # written positions).
    self_cache = np.zeros((2, 2, 6, 2, 4), "float32")
    cross_cache = np.zeros((2, 2, 5, 2, 4), "float32")
    for i in range(4):
        step, step_scores, self_cache, cross_cache = decoder(
            x[:, i : i + 1],
            memory,
            encoder_padding_mask=memory_mask,
            self_attention_cache=self_cache,
            self_attention_cache_update_index=i,
            cross_attention_cache=cross_cache,
            cross_attention_cache_update_index=0 if i == 0 else None,
            return_attention_scores="all",
        )
        np.testing.assert_allclose(_np(step), _np(out)[:, i : i + 1], atol=ATOL)
        self_row = _np(step_scores["self_attention"])[:, :, 0]
        np.testing.assert_allclose(
            self_row[..., :4], _np(scores["self_attention"])[:, :, i], atol=ATOL
        )
        np.testing.assert_array_equal(self_row[..., 4:], 0.0)
        np.testing.assert_allclose(
            _np(step_scores["cross_attention"])[:, :, 0],
            cross[:, :, i],
            atol=ATOL,
        )


def test_decoder_only_cached_scores_equal_uncached(rng):
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    decoder = _decoder(rng, x)
    w = [np.asarray(a, "float64") for a in decoder.get_weights()]
    _, full = decoder(x, return_attention_scores=True)
    causal = np.tril(np.ones((5, 5), bool))[None, None]
    np.testing.assert_allclose(_np(full), _probs(x, x, w, 2, causal), atol=ATOL)
    _, both = decoder(x, return_attention_scores="all")
    assert list(both) == ["self_attention"]
    cache = np.zeros((2, 2, 5, 2, 4), "float32")
    _, prompt_scores, cache = decoder(
        x[:, :3],
        self_attention_cache=cache,
        self_attention_cache_update_index=0,
        return_attention_scores=True,
    )
    np.testing.assert_allclose(
        _np(prompt_scores), _np(full)[:, :, :3], atol=ATOL
    )
    for i in (3, 4):
        _, step_scores, cache = decoder(
            x[:, i : i + 1],
            self_attention_cache=cache,
            self_attention_cache_update_index=i,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(
            _np(step_scores)[:, :, 0], _np(full)[:, :, i], atol=ATOL
        )


def test_all_scores_in_a_functional_model(rng):
    x = rng.standard_normal((2, 4, 8)).astype("float32")
    memory = rng.standard_normal((2, 5, 8)).astype("float32")
    decoder = _decoder(rng, x, memory)
    target, source = keras.Input((4, 8)), keras.Input((5, 8))
    _, scores = decoder(target, source, return_attention_scores="all")
    assert tuple(scores["self_attention"].shape) == (None, 2, 4, 4)
    assert tuple(scores["cross_attention"].shape) == (None, 2, 4, 5)
    model = keras.Model([target, source], scores)
    eager = model([x, memory])
    _, expected = decoder(x, memory, return_attention_scores="all")
    for key in expected:
        np.testing.assert_allclose(
            _np(eager[key]), _np(expected[key]), atol=ATOL
        )


def test_bad_scores_flag_raises(rng):
    x = rng.standard_normal((2, 4, 8)).astype("float32")
    decoder = _decoder(rng, x)
    with pytest.raises(ValueError, match="return_attention_scores"):
        decoder(x, return_attention_scores="cross")
