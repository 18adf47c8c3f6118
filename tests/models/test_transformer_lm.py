"""Tests of `keras_attn.models.TransformerLM`.

The reference for generation is a plain Python loop over full forward
passes and `np.argmax`, independent of `keras_attn.generation` and of the
KV cache.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import TransformerLM


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


def _greedy_reference(model, prompt, max_length):
    # One fixed-length buffer (later positions are zeros, which a causal
    # model does not see), so that every backend compiles one shape.
    tokens = np.zeros((len(prompt), max_length), "int64")
    tokens[:, : prompt.shape[1]] = prompt
    for i in range(prompt.shape[1], max_length):
        logits = _np(model(tokens))[:, i - 1]  # (B, V)
        tokens[:, i] = logits.argmax(-1)
    return tokens


@pytest.mark.parametrize(
    "options",
    [
        {"position": "learned"},
        {"position": "rotary", "num_key_value_heads": 2},
    ],
)
def test_cached_generation_equals_uncached(rng, options):
    model = TransformerLM(
        40,
        16,
        num_layers=2,
        num_heads=4,
        hidden_dim=32,
        tie_weights=False,
        **options,
    )
    model.build((None, None))
    _randomize(model, rng)
    prompt = rng.integers(1, 40, (3, 4))
    expected = _greedy_reference(model, prompt, 16)
    assert len(np.unique(expected[:, 4:])) > 1  # not one repeated token
    cached = _np(model.generate(prompt, 16))
    uncached = _np(model.generate(prompt, 16, use_cache=False))
    np.testing.assert_array_equal(cached, expected)
    np.testing.assert_array_equal(uncached, expected)
    # The logits of every cached step equal those of the full pass.
    logits, cache = model.call_with_cache(
        expected[:, :1], model.empty_cache(3, 16), 0
    )
    steps = [_np(logits)]
    for i in range(1, 16):
        logits, cache = model.call_with_cache(expected[:, i : i + 1], cache, i)
        steps.append(_np(logits))
    np.testing.assert_allclose(
        np.concatenate(steps, 1), _np(model(expected)), atol=1e-4, rtol=1e-4
    )


def test_cached_sampling_and_beam_equal_uncached(rng):
    model = TransformerLM(
        30, 12, num_heads=2, hidden_dim=16, position="rotary", tie_weights=False
    )
    model.build((None, None))
    _randomize(model, rng)
    prompt = rng.integers(1, 30, (2, 3))
    for method, options in (
        ("sample", {"top_k": 5, "temperature": 0.8, "seed": 3}),
        ("beam", {"beam_width": 3}),
    ):
        cached = model.generate(prompt, 12, method=method, **options)
        uncached = model.generate(
            prompt, 12, method=method, use_cache=False, **options
        )
        np.testing.assert_array_equal(_np(cached), _np(uncached))
        np.testing.assert_array_equal(_np(cached)[:, :3], prompt)


def test_save_load_same_generation(rng, tmp_path):
    model = TransformerLM(
        30, 12, num_heads=2, hidden_dim=16, num_key_value_heads=1
    )
    model.build((None, None))
    _randomize(model, rng)
    prompt = rng.integers(1, 30, (2, 2))
    before = _np(model.generate(prompt, 12))
    path = os.path.join(tmp_path, "lm.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(_np(loaded.generate(prompt, 12)), before)
    np.testing.assert_allclose(
        _np(loaded(prompt)), _np(model(prompt)), atol=1e-5
    )


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden_dim=30"):
        TransformerLM(10, 8, num_heads=4, hidden_dim=30)
    with pytest.raises(ValueError, match="position='sine'"):
        TransformerLM(10, 8, position="sine")
    with pytest.raises(ValueError, match="num_layers=0"):
        TransformerLM(10, 8, num_layers=0)
    model = TransformerLM(10, 8, num_heads=2, hidden_dim=8)
    with pytest.raises(ValueError, match="max_length=9"):
        model.generate(np.ones((1, 2), "int32"), 9)
    with pytest.raises(ValueError, match="method='top'"):
        model.generate(np.ones((1, 2), "int32"), 6, method="top")
    with pytest.raises(ValueError, match="token_ids.shape"):
        model(np.ones((2, 3, 1), "int32"))


@pytest.mark.large
def test_learns_to_reverse():
    """Reverse 20 tokens: `a SEP reversed(a)`, >= 99% token accuracy."""
    keras.utils.set_random_seed(0)
    vocab, n, sep = 12, 20, 1

    def data(rng, count):
        a = rng.integers(2, vocab, (count, n))
        return np.concatenate([a, np.full((count, 1), sep), a[:, ::-1]], 1)

    train = data(np.random.default_rng(0), 3072)
    x, y = train[:, :-1], train[:, 1:]
    weights = np.zeros(y.shape, "float32")
    weights[:, n:] = 1.0  # score the reversed half only
    model = TransformerLM(
        vocab, 2 * n + 1, num_heads=4, hidden_dim=64, intermediate_dim=128
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    test = data(np.random.default_rng(1), 256)
    for _ in range(3):  # one epoch is enough on every backend so far
        model.fit(x, y, sample_weight=weights, batch_size=64, verbose=0)
        generated = _np(model.generate(test[:, : n + 1], 2 * n + 1))
        accuracy = np.mean(generated[:, n + 1 :] == test[:, n + 1 :])
        if accuracy >= 0.99:
            break
    assert accuracy >= 0.99, accuracy
