"""Tests of greedy and beam search on step functions set by hand."""

import itertools

import numpy as np
import pytest
from keras import ops

from keras_attn.generation import beam_search
from keras_attn.generation import greedy_search

END = 3
PAD = 0


def _bigram_next_fn(probs):
    """A model whose next-token distribution depends on the last token."""
    log_probs = np.log(np.asarray(probs, "float64")).astype("float32")

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)  # (B,)
        logits = ops.take(ops.convert_to_tensor(log_probs), previous, axis=0)
        # The cache counts the calls per row, to check it is carried and
        # reordered with the beams.
        return logits, {"calls": cache["calls"] + 1}

    return next_fn


# Tokens: 0 pad, 1 start, 2 "a", 3 end, 4 "b". Greedy takes "a" (0.55) and
# then faces a flat distribution; "b" (0.45) is followed by END with 0.95.
TRAP = np.array(
    [
        [0.97, 0.01, 0.01, 0.005, 0.005],  # after pad
        [0.0001, 0.0001, 0.55, 0.0008, 0.449],  # after start
        [0.01, 0.01, 0.34, 0.32, 0.32],  # after "a"
        [0.96, 0.01, 0.01, 0.01, 0.01],  # after end (unused)
        [0.01, 0.01, 0.02, 0.95, 0.01],  # after "b"
    ]
)


def _brute_force_best(probs, start, length, end=END, pad=PAD, alpha=0.0):
    """Best finished-or-full sequence by enumeration, scored like tfa."""
    logp = np.log(probs)
    best, best_score = None, -np.inf
    vocab = probs.shape[0]
    for seq in itertools.product(range(vocab), repeat=length):
        # A valid sequence is pad after its first end only.
        if end in seq:
            stop = seq.index(end)
            if any(t != pad for t in seq[stop + 1 :]):
                continue
            n = stop + 1
        else:
            n = length
        total, prev = 0.0, start
        for t in seq[:n]:
            total += logp[prev, t]
            prev = t
        score = total / (((5.0 + n) / 6.0) ** alpha)
        if score > best_score:
            best, best_score = seq, score
    return np.array(best), best_score


def _tokens(batch, length, start=1):
    tokens = np.full((batch, length), PAD, "int32")
    tokens[:, 0] = start
    return tokens


def _cache(batch):
    return {"calls": np.zeros((batch, 1), "int32")}


def test_greedy_takes_the_trap():
    tokens, cache = greedy_search(
        _bigram_next_fn(TRAP),
        _tokens(2, 5),
        _cache(2),
        end_token=END,
        return_cache=True,
    )
    tokens = ops.convert_to_numpy(tokens)
    # argmax path: start -> a -> a -> a -> a
    np.testing.assert_array_equal(tokens[0], [1, 2, 2, 2, 2])
    np.testing.assert_array_equal(ops.convert_to_numpy(cache["calls"]), 4)


def test_greedy_stops_and_pads_after_end():
    probs = np.full((5, 5), 0.01)
    probs[1, 4] = 0.96  # start -> b
    probs[4, END] = 0.96  # b -> end
    probs[0, 2] = 0.96  # pad -> a: must never be used after end
    probs[END, 2] = 0.96
    tokens = ops.convert_to_numpy(
        greedy_search(
            _bigram_next_fn(probs), _tokens(1, 6), _cache(1), end_token=END
        )
    )
    np.testing.assert_array_equal(tokens[0], [1, 4, END, PAD, PAD, PAD])


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_best_sequence(alpha):
    length = 4
    best, best_score = _brute_force_best(TRAP, 1, length, alpha=alpha)
    tokens, scores, cache = beam_search(
        _bigram_next_fn(TRAP),
        _tokens(2, length + 1),
        _cache(2),
        beam_width=3,
        length_penalty=alpha,
        end_token=END,
        return_scores=True,
        return_cache=True,
    )
    tokens = ops.convert_to_numpy(tokens)
    np.testing.assert_array_equal(tokens[0, 1:], best)
    np.testing.assert_array_equal(tokens[0, 1:3], [4, END])  # b, end
    np.testing.assert_allclose(
        ops.convert_to_numpy(scores)[0], best_score, rtol=1e-5
    )
    assert ops.convert_to_numpy(cache["calls"]).shape == (2, 1)


def test_beam_search_all_beams_sorted():
    tokens, scores = beam_search(
        _bigram_next_fn(TRAP),
        _tokens(1, 4),
        _cache(1),
        beam_width=3,
        end_token=END,
        return_scores=True,
        return_all_beams=True,
    )
    tokens, scores = ops.convert_to_numpy(tokens), ops.convert_to_numpy(scores)
    assert tokens.shape == (1, 3, 4)
    assert np.all(np.diff(scores[0]) <= 0)
    # Each returned score is the log probability of its own tokens.
    logp = np.log(TRAP)
    for k in range(3):
        seq = tokens[0, k]
        total, prev = 0.0, seq[0]
        for t in seq[1:]:
            total += logp[prev, t]
            if t == END:
                break
            prev = t
        np.testing.assert_allclose(scores[0, k], total, rtol=1e-5)


def test_beam_width_one_equals_greedy(rng):
    probs = rng.dirichlet(np.ones(6) * 0.5, size=6)
    tokens = _tokens(4, 7)
    tokens[:, 0] = [1, 2, 4, 5]
    greedy = greedy_search(
        _bigram_next_fn(probs), tokens, _cache(4), end_token=END
    )
    beam = beam_search(
        _bigram_next_fn(probs), tokens, _cache(4), beam_width=1, end_token=END
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(greedy), ops.convert_to_numpy(beam)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"beam_width": 0}, "beam_width=0"),
        ({"beam_width": 2.0}, "beam_width=2.0"),
        ({"length_penalty": -1.0}, "length_penalty=-1.0"),
        ({"start_index": 0}, "start_index=0"),
    ],
)
def test_beam_search_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        beam_search(_bigram_next_fn(TRAP), _tokens(1, 4), _cache(1), **kwargs)


def test_bad_tokens_rank():
    with pytest.raises(ValueError, match="tokens"):
        greedy_search(_bigram_next_fn(TRAP), np.zeros((4,), "int32"))


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_bare_tensor_cache_and_no_cache_returned(search):
    def next_fn(tokens, cache, index):
        rows = ops.shape(tokens)[0]
        logits = ops.one_hot(ops.full((rows,), 2, dtype="int32"), 5)
        return logits, (cache if isinstance(cache, tuple) else cache + 1.0)

    # A bare tensor is a valid cache nest (`cache == ()` raised on JAX).
    _, cache = search(
        next_fn, _tokens(2, 4), ops.zeros((2, 3)), return_cache=True
    )
    np.testing.assert_array_equal(ops.convert_to_numpy(cache), 3.0)
    _, cache = search(next_fn, _tokens(2, 4), return_cache=True)
    assert cache is None
