"""Tests of `keras_attn.generation.sample` against NumPy written here."""

import numpy as np
import pytest
from keras import ops

from keras_attn.generation import sample
from keras_attn.generation.sampling import filter_logits


def _np(x):
    return ops.convert_to_numpy(x)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_filter(logits, temperature, top_k, top_p):
    """The allowed tokens and their probabilities, in NumPy."""
    logits = logits / temperature
    keep = np.ones_like(logits, bool)
    if top_k is not None:
        kth = np.sort(logits, -1)[:, -top_k][:, None]
        keep &= logits >= kth
    if top_p is not None:
        # The nucleus of what top-k left (top-k first, as Hugging Face).
        remaining = np.where(keep, logits, -np.inf)
        order = np.argsort(-remaining, -1)
        probs = np.take_along_axis(_softmax(remaining), order, -1)
        before = np.cumsum(probs, -1) - probs
        nucleus = np.zeros_like(keep)
        np.put_along_axis(nucleus, order, before < top_p, -1)
        keep &= nucleus
    probs = np.where(keep, np.exp(logits - logits.max(-1, keepdims=True)), 0)
    return keep, probs / probs.sum(-1, keepdims=True)


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, None, None), (0.5, 3, None), (2.0, None, 0.7), (1.0, 4, 0.5)],
)
def test_filter_logits_matches_numpy(rng, temperature, top_k, top_p):
    logits = rng.standard_normal((5, 10)).astype("float32") * 2
    keep, probs = _np_filter(logits, temperature, top_k, top_p)
    filtered = _np(filter_logits(logits, temperature, top_k, top_p))
    np.testing.assert_array_equal(filtered > -1e8, keep)
    np.testing.assert_allclose(_softmax(filtered), probs, atol=1e-5)


def _constant_model(logits):
    logits = ops.convert_to_tensor(logits)

    def next_fn(tokens, cache, index):
        return logits, cache

    return next_fn


def test_empirical_distribution(rng):
    # 2000 rows drawing one token each from fixed logits.
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], "float32"))
    logits = np.repeat(logits, 2000, 0)
    tokens = np.zeros((2000, 2), "int32")
    out = _np(sample(_constant_model(logits), tokens, temperature=1.0, seed=1))
    freq = np.bincount(out[:, 1], minlength=4) / 2000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.035)
    # Temperature 0.5 squares the odds; top_k=2 keeps tokens 0 and 1.
    out = _np(
        sample(
            _constant_model(logits), tokens, temperature=0.5, top_k=2, seed=2
        )
    )
    freq = np.bincount(out[:, 1], minlength=4) / 2000
    expected = np.array([0.25, 0.09, 0, 0]) / 0.34
    np.testing.assert_allclose(freq, expected, atol=0.035)


def test_top_k_one_is_greedy_and_seed_reproducible(rng):
    logits = rng.standard_normal((3, 7)).astype("float32")
    tokens = np.zeros((3, 5), "int32")
    out = _np(sample(_constant_model(logits), tokens, top_k=1, seed=0))
    np.testing.assert_array_equal(
        out[:, 1:], np.repeat(logits.argmax(-1)[:, None], 4, 1)
    )
    first = _np(sample(_constant_model(logits), tokens, seed=5))
    again = _np(sample(_constant_model(logits), tokens, seed=5))
    np.testing.assert_array_equal(first, again)


def test_end_token_pads(rng):
    logits = np.full((2, 4), -10.0, "float32")
    logits[:, 2] = 10.0  # always token 2
    out = _np(
        sample(_constant_model(logits), np.zeros((2, 5), "int32"), end_token=2)
    )
    np.testing.assert_array_equal(out, [[0, 2, 0, 0, 0], [0, 2, 0, 0, 0]])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": 0}, "temperature=0"),
        ({"top_k": 0}, "top_k=0"),
        ({"top_p": 1.5}, "top_p=1.5"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample(
            _constant_model(np.zeros((1, 3), "float32")),
            np.zeros((1, 3), "int32"),
            **kwargs,
        )
