"""The logits processors and stop-sequence matching against NumPy."""

import numpy as np
import pytest
from keras import ops

from keras_attn.generation import min_p_filter
from keras_attn.generation import no_repeat_ngram
from keras_attn.generation import repetition_penalty
from keras_attn.generation.logits_processors import check_stop_sequences
from keras_attn.generation.logits_processors import ends_with_stop_sequence
from keras_attn.generation.sampling import filter_logits


def np_repetition_penalty(logits, tokens, index, penalty):
    out = logits.copy()
    for b in range(len(logits)):
        for t in set(tokens[b, :index].tolist()):
            v = logits[b, t]
            out[b, t] = v / penalty if v > 0 else v * penalty
    return out


def np_banned_ngrams(tokens, index, n):
    """Hugging Face's no-repeat-n-gram rule, one row at a time."""
    banned = []
    for row in tokens[:, :index].tolist():
        if index + 1 < n:
            banned.append(set())
            continue
        seen = {}
        for j in range(index - n + 1):
            seen.setdefault(tuple(row[j : j + n - 1]), set()).add(
                row[j + n - 1]
            )
        banned.append(seen.get(tuple(row[index - n + 1 : index]), set()))
    return banned


def test_repetition_penalty_matches_numpy(rng):
    logits = rng.standard_normal((3, 7)).astype("float32") * 3
    tokens = rng.integers(0, 7, (3, 6)).astype("int32")
    for index, penalty in [(1, 1.3), (4, 2.0), (6, 0.7)]:
        out = ops.convert_to_numpy(
            repetition_penalty(logits, tokens, index, penalty)
        )
        expected = np_repetition_penalty(logits, tokens, index, penalty)
        np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_matches_numpy(rng, n):
    # A vocabulary of 3 over 10 positions: many repeated n-grams.
    tokens = rng.integers(0, 3, (4, 10)).astype("int32")
    logits = rng.standard_normal((4, 5)).astype("float32")
    for index in range(0, 11):
        out = ops.convert_to_numpy(no_repeat_ngram(logits, tokens, index, n))
        for b, banned in enumerate(np_banned_ngrams(tokens, index, n)):
            expected = logits[b].copy()
            expected[list(banned)] = -1e9
            np.testing.assert_allclose(out[b], expected, err_msg=f"{index}")


def test_min_p_matches_numpy(rng):
    logits = rng.standard_normal((5, 9)).astype("float32") * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for min_p in (0.05, 0.3, 1.0):
        keep = probs >= min_p * probs.max(-1, keepdims=True)
        out = ops.convert_to_numpy(min_p_filter(logits, min_p))
        np.testing.assert_array_equal(out > -1e8, keep)
        np.testing.assert_allclose(out[keep], logits[keep])
    # With temperature and top-k in `filter_logits`: min-p on the tempered
    # distribution, intersected with the top 3.
    out = ops.convert_to_numpy(filter_logits(logits, 0.5, 3, None, 0.2))
    tempered = np.exp(logits / 0.5)
    keep = tempered >= 0.2 * tempered.max(-1, keepdims=True)
    keep &= logits >= np.sort(logits, -1)[:, -3:-2]
    np.testing.assert_array_equal(out > -1e8, keep)


def test_stop_sequence_match_matches_numpy(rng):
    tokens = rng.integers(0, 3, (6, 8)).astype("int32")
    stops = check_stop_sequences([[1, 2], [0, 0, 1], [2]])
    for index in range(8):
        out = ops.convert_to_numpy(
            ends_with_stop_sequence(tokens, index, stops)
        )
        expected = [
            any(
                index + 1 >= len(s)
                and tuple(tokens[b, index + 1 - len(s) : index + 1]) == s
                for s in stops
            )
            for b in range(6)
        ]
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: repetition_penalty(
                np.zeros((1, 3)), np.zeros((1, 2), "int32"), 1, 0
            ),
            "penalty=0",
        ),
        (
            lambda: no_repeat_ngram(
                np.zeros((1, 3)), np.zeros((1, 2), "int32"), 1, 0
            ),
            "ngram_size=0",
        ),
        (lambda: min_p_filter(np.zeros((1, 3)), 1.5), "min_p=1.5"),
        (lambda: check_stop_sequences([[]]), r"\[\[\]\]"),
        (lambda: check_stop_sequences("ab"), "'ab'"),
        (lambda: check_stop_sequences([[1, -2]]), r"\[\[1, -2\]\]"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
