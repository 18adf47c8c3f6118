"""`attention_scores` of `TransformerLM` and `Transformer`: every block's maps.

The first block's maps against NumPy (attention weights written out from
the block's weights, on the embedding output); the last block's against
the scores that cached `generate` returns (another code path: one token per
step against a KV cache).
"""

import numpy as np
from keras import ops

from keras_attn.models import Transformer
from keras_attn.models import TransformerLM
from tests.layers.transformer import _reference

ATOL = 1e-5


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _probs(q_in, kv_in, w, num_heads, mask):
    qk, qb, kk, kb = (np.asarray(a, "float64") for a in w[:4])
    q = np.einsum("btd,dnh->btnh", q_in, qk) + qb
    k = np.einsum("bsd,dnh->bsnh", kv_in, kk) + kb
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _randomize(model, rng):
    model.set_weights(
        [
            rng.standard_normal(w.shape).astype("float32") * 0.5
            for w in model.weights
        ]
    )


def test_lm_maps_match_numpy_and_cached_generate(rng):
    model = TransformerLM(30, 8, num_heads=2, hidden_dim=8, tie_weights=False)
    model.build((None, None))
    _randomize(model, rng)
    prompt = rng.integers(1, 30, (2, 3))
    tokens, cached = model.generate(prompt, 8, return_attention_scores=True)
    maps = model.attention_scores(tokens)
    assert len(maps) == 2
    assert all(tuple(m.shape) == (2, 2, 8, 8) for m in maps)
    # Block 0 (pre-norm): causal attention on the normalized embeddings.
    x = _np(model.embedding(tokens))
    w = [np.asarray(a, "float64") for a in model.blocks[0].get_weights()]
    h = _reference.layer_norm(x, w[8], w[9], 1e-5)
    causal = np.tril(np.ones((8, 8), bool))[None, None]
    np.testing.assert_allclose(
        _np(maps[0]), _probs(h, h, w, 2, causal), atol=ATOL
    )
    # The last block against cached generation (heads averaged; row i of
    # the generated scores is query i - 1).
    last = _np(maps[-1]).mean(axis=1)
    np.testing.assert_allclose(_np(cached)[:, 3:], last[:, 2:-1], atol=ATOL)


def test_seq2seq_maps_match_numpy_and_cached_generate(rng):
    model = Transformer(30, 10, num_layers=2, num_heads=2, hidden_dim=8)
    model.build({"encoder_token_ids": (None, None), "token_ids": (None, None)})
    _randomize(model, rng)
    source = rng.integers(1, 30, (2, 6))
    source[1, 4:] = 0
    source_mask = source != 0
    tokens, cached = model.generate(
        {"encoder_token_ids": source, "encoder_padding_mask": source_mask},
        7,
        start_token=1,
        return_attention_scores=True,
    )
    maps = model.attention_scores(
        {
            "encoder_token_ids": source,
            "token_ids": tokens,
            "encoder_padding_mask": source_mask,
        }
    )
    assert sorted(maps) == ["cross_attention", "decoder", "encoder"]
    assert [tuple(m.shape) for m in maps["encoder"]] == [(2, 2, 6, 6)] * 2
    assert [tuple(m.shape) for m in maps["decoder"]] == [(2, 2, 7, 7)] * 2
    assert [tuple(m.shape) for m in maps["cross_attention"]] == [
        (2, 2, 7, 6)
    ] * 2
    # Encoder block 0 (post-norm): attention on the embeddings, padded
    # source positions masked.
    x = _np(model.encoder_embedding(source))
    w = model.encoder_blocks[0].get_weights()
    mask = source_mask[:, None, None, :]
    np.testing.assert_allclose(
        _np(maps["encoder"][0]), _probs(x, x, w, 2, mask), atol=ATOL
    )
    # Decoder block 0's causal self-attention on the target embeddings.
    y = _np(model.decoder_embedding(tokens))
    w = model.decoder_blocks[0].get_weights()
    causal = np.tril(np.ones((7, 7), bool))[None, None]
    np.testing.assert_allclose(
        _np(maps["decoder"][0]), _probs(y, y, w, 2, causal), atol=ATOL
    )
    # The last cross-attention against cached generation.
    last = _np(maps["cross_attention"][-1]).mean(axis=1)
    np.testing.assert_allclose(_np(cached)[:, 1:], last[:, :-1], atol=ATOL)
    np.testing.assert_array_equal(
        _np(maps["cross_attention"][0])[1, ..., 4:], 0
    )
