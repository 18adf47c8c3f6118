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


def _greedy_reference(model, source, start_token, max_length):
    # One fixed-length buffer (later positions are zeros, which the causal
    # decoder does not see), so that every backend compiles one shape.
    tokens = np.zeros((len(source), max_length + 1), "int64")
    tokens[:, 0] = start_token
    for i in range(1, max_length + 1):
        logits = _np(
            model({"encoder_token_ids": source, "decoder_token_ids": tokens})
        )
        tokens[:, i] = logits[:, i - 1].argmax(-1)
    return tokens[:, 1:]


def _model(rng, **kwargs):
    model = Transformer(
        30, 10, num_layers=2, num_heads=2, hidden_dim=16, **kwargs
    )
    model.build(
        {"encoder_token_ids": (None, None), "decoder_token_ids": (None, None)}
    )
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
    expected = _greedy_reference(model, source, 1, 8)
    cached = _np(model.generate(source, 8, start_token=1))
    uncached = _np(model.generate(source, 8, start_token=1, use_cache=False))
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(uncached, expected)
    # The logits of every cached step equal those of the full pass.
    target = np.concatenate([np.ones((3, 1), "int64"), expected], 1)
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
    full = model({"encoder_token_ids": source, "decoder_token_ids": target})
    np.testing.assert_allclose(
        np.concatenate(steps, 1), _np(full), atol=1e-4, rtol=1e-4
    )
    if options.get("normalize_first"):
        return
    # Beam search through the caches equals beam search without them.
    np.testing.assert_array_equal(
        _np(model.generate(source, 8, start_token=1, method="beam")),
        _np(
            model.generate(
                source, 8, start_token=1, method="beam", use_cache=False
            )
        ),
    )


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
        _np(model({"encoder_token_ids": source, "decoder_token_ids": target})),
        _np(model({"encoder_token_ids": longer, "decoder_token_ids": target})),
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
    before = _np(model.generate(source, 6, start_token=1))
    path = os.path.join(tmp_path, "transformer.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(
        _np(loaded.generate(source, 6, start_token=1)), before
    )


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="hidden_dim=10"):
        Transformer(10, 8, num_heads=4, hidden_dim=10)
    model = Transformer(10, 8, num_heads=2, hidden_dim=8)
    with pytest.raises(ValueError, match="max_length=8"):
        model.generate(np.ones((1, 3), "int32"), 8, start_token=1)
    with pytest.raises(ValueError, match="encoder_token_ids.shape"):
        model.generate(np.ones((3,), "int32"), 4, start_token=1)
    with pytest.raises(ValueError, match="inputs"):
        model([np.ones((1, 3), "int32")])
