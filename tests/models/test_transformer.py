"""Tests of `keras_attn.models.Transformer` (encoder-decoder).

The reference for generation is a plain Python loop over full forward
passes and `np.argmax`, independent of `keras_attn.generation` and of the
KV caches.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import Transformer


def _np(x):
    return ops.convert_to_numpy(x)


def _randomize(model, rng, scale=0.5):
    # Large random weights, unit norm scales (and an untied output
    # projection in the tests that compare tokens): untrained models
    # otherwise repeat one token, which would hide a wrong cache.
    model.set_weights(
        [
            np.ones(w.shape, "float32")
            if w.path.endswith("gamma")
            else rng.standard_normal(w.shape).astype("float32") * scale
            for w in model.weights
        ]
    )


def _greedy_reference(model, source, prompt, max_length):
    """Greedy continuation of each row's own prompt, by full passes.

    `prompt` is a list of 1-D prompts (start token first). One
    fixed-length buffer per row (later positions are zeros, which the
    causal decoder does not see), so that every backend compiles one shape.
    """
    rows = []
    for b, row_prompt in enumerate(prompt):
        tokens = np.zeros((1, max_length), "int64")
        tokens[0, : len(row_prompt)] = row_prompt
        for i in range(len(row_prompt), max_length):
            logits = _np(
                model(
                    {
                        "encoder_token_ids": source[b : b + 1],
                        "token_ids": tokens,
                    }
                )
            )
            tokens[0, i] = logits[0, i - 1].argmax(-1)
        rows.append(tokens[0])
    return np.stack(rows)


def _model(rng, **kwargs):
    model = Transformer(
        30, 10, num_layers=2, num_heads=2, hidden_dim=16, **kwargs
    )
    model.build({"encoder_token_ids": (None, None), "token_ids": (None, None)})
    _randomize(model, rng)
    return model


@pytest.mark.parametrize(
    "options",
    [
        {"padding_token": 0, "tie_weights": False},
        {"normalize_first": True, "tie_weights": False},
    ],
)
def test_cached_generation_equals_uncached(rng, options):
    model = _model(rng, **options)
    source = rng.integers(1, 30, (3, 6))
    source[1, 4:] = 0  # padding (masked with padding_token=0)
    expected = _greedy_reference(model, source, [[1]] * 3, 9)
    cached = _np(model.generate(source, 9, start_token=1))
    uncached = _np(model.generate(source, 9, start_token=1, use_cache=False))
    assert cached.dtype == np.int32
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(uncached, expected)
    # The logits of every cached step equal those of the full pass.
    target = expected
    memory = model.encode(source)
    mask = model.encoder_padding_mask(source)
    zeros = np.zeros((3, 2, 9, 2, 8), "float32")
    memory_zeros = np.zeros((3, 2, 6, 2, 8), "float32")
    self_cache, cross_cache = (zeros, zeros), (memory_zeros, memory_zeros)
    steps = []
    for i in range(9):
        logits, self_cache, cross_cache = model.call_with_cache(
            target[:, i : i + 1],
            memory,
            mask,
            self_cache,
            cross_cache,
            i,
            cross_cache_update_index=0 if i == 0 else None,
        )
        steps.append(_np(logits))
    full = model({"encoder_token_ids": source, "token_ids": target})
    np.testing.assert_allclose(
        np.concatenate(steps, 1), _np(full), atol=1e-4, rtol=1e-4
    )
    if options.get("normalize_first"):
        return
    # Beam search through the caches equals beam search without them.
    np.testing.assert_array_equal(
        _np(model.generate(source, 9, start_token=1, method="beam")),
        _np(
            model.generate(
                source, 9, start_token=1, method="beam", use_cache=False
            )
        ),
    )


@pytest.mark.parametrize("use_cache", [True, False])
def test_ragged_decoder_prompts(rng, use_cache):
    # Decoder prompts of lengths 1, 3 and 2 in one batch, right-padded with
    # a padding mask: each row continues its own prompt.
    model = _model(rng, tie_weights=False)
    source = rng.integers(1, 30, (3, 6))
    prompts = [[1], [1, 7, 9], [1, 4]]
    token_ids = np.zeros((3, 3), "int32")
    for b, p in enumerate(prompts):
        token_ids[b, : len(p)] = p
    inputs = {
        "encoder_token_ids": source,
        "token_ids": token_ids,
        "padding_mask": token_ids != 0,
    }
    expected = _greedy_reference(model, source, prompts, 9)
    np.testing.assert_array_equal(
        _np(model.generate(inputs, 9, use_cache=use_cache)), expected
    )
    # start_token goes before every prompt.
    inputs["token_ids"] = token_ids[:, 1:]
    inputs["padding_mask"] = token_ids[:, 1:] != 0
    np.testing.assert_array_equal(
        _np(model.generate(inputs, 9, start_token=1, use_cache=use_cache)),
        expected,
    )


def test_attention_scores_and_end_token(rng):
    model = _model(rng, padding_token=0, tie_weights=False)
    source = rng.integers(1, 30, (2, 6))
    source[1, 3:] = 0
    tokens = _np(model.generate(source, 9, start_token=1))
    end = int(tokens[0, 4])  # Row 0 ends at position 4.
    ended, scores = model.generate(
        source, 9, start_token=1, end_token=end, return_attention_scores=True
    )
    ended, scores = _np(ended), _np(scores)
    assert scores.shape == (2, 9, 6)
    first = [list(row).index(end, 1) for row in tokens]
    for b in range(2):
        np.testing.assert_array_equal(
            ended[b, : first[b] + 1], tokens[b, : first[b] + 1]
        )
        assert np.all(ended[b, first[b] + 1 :] == 0)
    # Reference: the last block's cross-attention of a full pass on the
    # generated tokens, averaged over heads; row i is query i - 1.
    memory = model.encode(source)
    mask = source != 0
    x = model.decoder_embedding(tokens)
    for block in model.decoder_blocks[:-1]:
        x = block(x, memory, encoder_padding_mask=mask)
    _, full = model.decoder_blocks[-1](
        x, memory, encoder_padding_mask=mask, return_attention_scores=True
    )
    full = _np(full).mean(axis=1)  # (B, L, S)
    np.testing.assert_allclose(scores[:, 0], 0.0)
    for b in range(2):
        last = first[b]  # rows after the end token are not produced
        np.testing.assert_allclose(
            scores[b, 1 : last + 1], full[b, :last], atol=1e-5
        )
    assert np.all(scores[1, :, 3:] == 0)  # padded source positions


def test_padding_is_masked(rng):
    model = _model(rng, padding_token=0)
    source = rng.integers(1, 30, (2, 6))
    source[:, 4:] = 0
    changed = source.copy()
    changed[:, 4:] = 0
    target = rng.integers(1, 30, (2, 5))
    longer = np.concatenate([source[:, :4], np.zeros((2, 3), "int64")], 1)
    # Extra padding changes nothing.
    np.testing.assert_allclose(
        _np(model({"encoder_token_ids": source, "token_ids": target})),
        _np(model({"encoder_token_ids": longer, "token_ids": target})),
        atol=1e-4,
    )


def test_tied_output_projection(rng):
    model = _model(rng)
    embedding = model.decoder_embedding.token_embedding.embeddings
    x = rng.standard_normal((1, 1, 16)).astype("float32")
    np.testing.assert_allclose(
        _np(model.decoder_embedding.token_embedding(x, reverse=True))[0, 0],
        x[0, 0] @ _np(embedding).T,
        rtol=1e-4,
        atol=1e-4,
    )
    untied = _model(rng, tie_weights=False)
    # ReversibleEmbedding's own reverse kernel (and its bias-free dense).
    assert len(untied.weights) > len(model.weights)


def test_save_load_same_generation(rng, tmp_path):
    model = _model(rng, padding_token=0, normalize_first=True)
    source = rng.integers(1, 30, (2, 5))
    before = _np(model.generate(source, 7, start_token=1))
    path = os.path.join(tmp_path, "transformer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(
        _np(loaded.generate(source, 7, start_token=1)), before
    )


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="hidden_dim=10"):
        Transformer(10, 8, num_heads=4, hidden_dim=10)
    model = Transformer(10, 8, num_heads=2, hidden_dim=8)
    with pytest.raises(ValueError, match="max_length=9"):
        model.generate(np.ones((1, 3), "int32"), 9, start_token=1)
    with pytest.raises(ValueError, match="start_token"):
        model.generate(np.ones((1, 3), "int32"), 4)
    with pytest.raises(ValueError, match="method='top'"):
        model.generate(np.ones((1, 3), "int32"), 4, "top", start_token=1)
    with pytest.raises(ValueError, match="encoder_token_ids.shape"):
        model.generate(np.ones((3,), "int32"), 4, start_token=1)
    with pytest.raises(ValueError, match="inputs"):
        model([np.ones((1, 3), "int32")])
