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

from keras_attn._compat import inference_mode
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


def _random_lm(rng, **kwargs):
    model = TransformerLM(
        30, 12, num_heads=2, hidden_dim=16, tie_weights=False, **kwargs
    )
    model.build((None, None))
    _randomize(model, rng)
    return model


def _ragged(prompts, width):
    token_ids = np.zeros((len(prompts), width), "int32")
    for b, p in enumerate(prompts):
        token_ids[b, : len(p)] = p
    mask = (
        np.arange(width)[None, :] < np.array([len(p) for p in prompts])[:, None]
    )
    return {"token_ids": token_ids, "padding_mask": mask}


@pytest.mark.parametrize("position", ["learned", "alibi"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_ragged_prompts(rng, position, use_cache):
    # Prompts of lengths 2, 4 and 3 in one batch: each row continues its
    # own prompt, as the row alone would.
    model = _random_lm(rng, position=position)
    prompts = [[5, 6], [7, 8, 9, 10], [11, 12, 13]]
    generated = _np(
        model.generate(_ragged(prompts, 4), 10, use_cache=use_cache)
    )
    for b, p in enumerate(prompts):
        expected = _greedy_reference(model, np.array([p]), 10)
        np.testing.assert_array_equal(generated[b], expected[0])


def test_ragged_prompts_beam_and_sample(rng):
    model = _random_lm(rng, position="rotary")
    inputs = _ragged([[5, 6], [7, 8, 9, 10]], 4)
    for method, options in (
        ("beam", {"beam_width": 3}),
        ("sample", {"top_k": 4, "seed": 1}),
    ):
        cached = _np(model.generate(inputs, 10, method=method, **options))
        uncached = _np(
            model.generate(
                inputs, 10, method=method, use_cache=False, **options
            )
        )
        np.testing.assert_array_equal(cached, uncached)
        np.testing.assert_array_equal(cached[0, :2], [5, 6])
        np.testing.assert_array_equal(cached[1, :4], [7, 8, 9, 10])
    # Beam search with one beam is greedy search.
    np.testing.assert_array_equal(
        _np(model.generate(inputs, 10, method="beam", beam_width=1)),
        _np(model.generate(inputs, 10)),
    )


def test_attention_scores(rng):
    model = _random_lm(rng, position="rotary")
    prompt = rng.integers(1, 30, (2, 3))
    tokens, scores = model.generate(prompt, 8, return_attention_scores=True)
    tokens, scores = _np(tokens), _np(scores)
    assert scores.shape == (2, 8, 8)
    np.testing.assert_array_equal(tokens, _greedy_reference(model, prompt, 8))
    # Reference: the last block's self-attention of a full pass on the
    # generated tokens, averaged over heads; row i is query i - 1.
    x = model.token_embedding(tokens)
    for block in model.blocks[:-1]:
        x = block(x)
    _, full = model.blocks[-1](x, return_attention_scores=True)
    full = _np(full).mean(axis=1)  # (B, L, L)
    np.testing.assert_allclose(scores[:, :3], 0.0)  # prompt rows
    np.testing.assert_allclose(scores[:, 3:], full[:, 2:-1], atol=1e-5)
    uncached = _np(
        model.generate(
            prompt, 8, use_cache=False, return_attention_scores=True
        )[1]
    )
    np.testing.assert_allclose(uncached, scores, atol=1e-5)


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


# Learned positions: the blocks take the plain step, whose cache writes
# are in place on PyTorch inside `generate` (the samplers reorder and
# repeat caches); rotary positions: the generic path.
@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_cached_sampling_and_beam_equal_uncached(rng, position):
    model = TransformerLM(
        30, 12, num_heads=2, hidden_dim=16, position=position, tie_weights=False
    )
    model.build((None, None))
    _randomize(model, rng)
    prompt = rng.integers(1, 30, (2, 3))
    for method, options in (
        ("sample", {"top_k": 5, "temperature": 0.8, "seed": 3}),
        ("beam", {"beam_width": 3}),
        ("contrastive", {"k": 3, "alpha": 0.6}),
    ):
        cached = model.generate(prompt, 12, method=method, **options)
        uncached = model.generate(
            prompt, 12, method=method, use_cache=False, **options
        )
        np.testing.assert_array_equal(_np(cached), _np(uncached))
        np.testing.assert_array_equal(_np(cached)[:, :3], prompt)


def test_call_with_cache_leaves_the_given_cache_alone(rng):
    # Outside `generate`, a cache is a value: a loop may branch from an
    # old one (here: two different tokens from the same cache). Without
    # gradients, as a user's decoding loop runs.
    model = _random_lm(rng)
    with inference_mode():
        cache = model.empty_cache(2, 12)
        prompt = rng.integers(1, 30, (2, 3))
        _, cache = model.call_with_cache(prompt, cache, 0)
        before = [_np(c).copy() for c in cache]
        first, first_cache = model.call_with_cache(np.full((2, 1), 4), cache, 3)
        second, second_cache = model.call_with_cache(
            np.full((2, 1), 5), cache, 3
        )
    for kept, given in zip(before, cache):
        np.testing.assert_array_equal(_np(given), kept)
    assert not np.allclose(_np(first), _np(second))
    # Each new cache holds its own token's keys at position 3.
    for a, b in zip(first_cache, second_cache):
        assert not np.allclose(_np(a)[:, :, 3], _np(b)[:, :, 3])
        np.testing.assert_array_equal(_np(a)[:, :, :3], _np(b)[:, :, :3])


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
    with pytest.raises(ValueError, match="padding_mask"):
        model.generate(
            {
                "token_ids": np.ones((1, 3), "int32"),
                "padding_mask": [[1, 0, 1]],
            },
            6,
        )
    with pytest.raises(ValueError, match="prompt"):
        model.generate(np.ones((1, 7), "int32"), 6)
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
