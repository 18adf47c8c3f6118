"""The samplers (`keras_attn.generation.Sampler` and subclasses) against
decoding loops written out in NumPy here."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.generation import BeamSampler
from keras_attn.generation import ContrastiveSampler
from keras_attn.generation import GreedySampler
from keras_attn.generation import RandomSampler
from keras_attn.generation import get_sampler
from tests.generation.test_logits_processors import np_banned_ngrams
from tests.generation.test_logits_processors import np_repetition_penalty

V, D = 6, 4


def _tables(rng):
    table = rng.standard_normal((V, V)).astype("float32") * 2
    embeddings = rng.standard_normal((V, D)).astype("float32")
    return table, embeddings


def _bigram(table, embeddings=None):
    """Logits (and the hidden state: the embedding) of the last token."""

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)  # (B,)
        logits = ops.take(ops.convert_to_tensor(table), previous, axis=0)
        if embeddings is None:
            return logits, cache
        hidden = ops.take(ops.convert_to_tensor(embeddings), previous, 0)
        return logits, hidden, cache

    return next_fn


def _np_processed(logits, row, index, penalty, ngram):
    logits = logits[None].astype("float64")
    if penalty:
        logits = np_repetition_penalty(logits, row[None], index, penalty)
    if ngram:
        logits[0, list(np_banned_ngrams(row[None], index, ngram)[0])] = -1e9
    return logits[0]


def _np_greedy(
    table, tokens, start, penalty=None, ngram=None, stops=(), end=None
):
    out = tokens.copy()
    for row in out:
        for i in range(start, len(row)):
            logits = _np_processed(table[row[i - 1]], row, i, penalty, ngram)
            row[i] = int(np.argmax(logits))
            tail = [tuple(row[max(i + 1 - len(s), 0) : i + 1]) for s in stops]
            if row[i] == end or any(t == tuple(s) for t, s in zip(tail, stops)):
                row[i + 1 :] = 0
                break
    return out


@pytest.mark.parametrize(
    "penalty, ngram, stops, end",
    [(1.8, None, (), None), (None, 2, (), None), (1.3, 3, ([2, 1], [4]), 5)],
)
def test_greedy_sampler_matches_numpy_loop(rng, penalty, ngram, stops, end):
    table, _ = _tables(rng)
    tokens = np.zeros((4, 9), "int32")
    tokens[:, :2] = rng.integers(0, V, (4, 2))
    sampler = GreedySampler(
        repetition_penalty=penalty, no_repeat_ngram_size=ngram
    )
    out = sampler(
        _bigram(table),
        tokens,
        start_index=2,
        end_token=end,
        stop_sequences=[list(s) for s in stops],
    )
    expected = _np_greedy(table, tokens, 2, penalty, ngram, stops, end)
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_beam_width_one_with_processors_is_greedy(rng):
    table, _ = _tables(rng)
    tokens = np.zeros((3, 8), "int32")
    tokens[:, 0] = [0, 2, 4]
    sampler = BeamSampler(
        beam_width=1, repetition_penalty=1.5, no_repeat_ngram_size=2
    )
    out = sampler(_bigram(table), tokens, stop_sequences=[[3, 3]])
    # Beam search normalizes with log_softmax: the argmax is unchanged.
    expected = _np_greedy(table, tokens, 1, 1.5, 2, ([3, 3],))
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_random_sampler_min_p_distribution():
    probs = np.array([0.5, 0.3, 0.12, 0.05, 0.03], "float32")
    logits = np.repeat(np.log(probs)[None], 3000, 0)
    sampler = RandomSampler(min_p=0.2, seed=3)  # keeps p >= 0.1
    out = ops.convert_to_numpy(
        sampler(lambda t, c, i: (logits, c), np.zeros((3000, 2), "int32"))
    )
    freq = np.bincount(out[:, 1], minlength=5) / 3000
    np.testing.assert_allclose(
        freq, [0.5 / 0.92, 0.3 / 0.92, 0.12 / 0.92, 0, 0], atol=0.03
    )


def test_random_sampler_top_k_one_with_processors_is_greedy(rng):
    table, _ = _tables(rng)
    tokens = np.zeros((3, 7), "int32")
    tokens[:, 0] = [1, 3, 5]
    out = RandomSampler(top_k=1, repetition_penalty=2.0, seed=0)(
        _bigram(table), tokens
    )
    expected = _np_greedy(table, tokens, 1, penalty=2.0)
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def _cosine(a, b):
    return (
        a
        @ b
        / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b), 1e-12)
    )


def np_contrastive(hidden_fn, tokens, lengths, k, alpha, end=None, pad=0):
    """Contrastive search by brute force: full passes, one row at a time.

    `hidden_fn(ids (T,)) -> (hidden (T, D), logits (T, V))` in NumPy.
    """
    out = tokens.copy()
    for b, row in enumerate(out):
        for i in range(lengths.min(), len(row)):
            if i < lengths[b]:
                continue  # a prompt token of a longer prompt
            _, logits = hidden_fn(row[:i])
            p = np.exp(logits[-1] - logits[-1].max())
            p /= p.sum()
            best, best_score = None, -np.inf
            for c in np.argsort(-p, kind="stable")[:k]:
                hidden, _ = hidden_fn(np.append(row[:i], c))
                score = (1 - alpha) * p[c] - alpha * _cosine(
                    hidden[:i], hidden[i]
                ).max()
                if score > best_score:
                    best, best_score = c, score
            row[i] = best
            if best == end:
                row[i + 1 :] = pad
                break
    return out


def test_contrastive_matches_brute_force(rng):
    table, embeddings = _tables(rng)
    tokens = np.zeros((3, 8), "int32")
    tokens[:, :3] = rng.integers(0, V, (3, 3))
    lengths = np.array([2, 3, 2])
    prompt_mask = np.arange(8)[None] < lengths[:, None]
    hidden = np.zeros((3, 8, D), "float32")
    hidden[:, :1] = embeddings[tokens[:, :1]]  # positions < start_index - 1

    def hidden_fn(ids):
        return embeddings[ids], table[ids]

    for k, alpha, end in [(3, 0.6, None), (4, 0.3, 2)]:
        out = ContrastiveSampler(k=k, alpha=alpha)(
            _bigram(table, embeddings),
            tokens,
            start_index=2,
            end_token=end,
            prompt_mask=prompt_mask,
            hidden_states=hidden,
        )
        expected = np_contrastive(hidden_fn, tokens, lengths, k, alpha, end)
        np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_stream_gets_each_step(rng):
    table, embeddings = _tables(rng)
    tokens = np.zeros((2, 7), "int32")
    tokens[:, 0] = [1, 4]
    for sampler, next_fn in [
        (GreedySampler(no_repeat_ngram_size=2), _bigram(table)),
        (RandomSampler(seed=1), _bigram(table)),
        (ContrastiveSampler(k=3), _bigram(table, embeddings)),
    ]:
        seen = []
        out = sampler(
            next_fn,
            tokens,
            end_token=3,
            stream=lambda t, i, seen=seen: seen.append((i, t)),
        )
        out = ops.convert_to_numpy(out)
        assert [i for i, _ in seen] == list(range(1, 1 + len(seen)))
        streamed = np.stack([t for _, t in seen], axis=1)
        np.testing.assert_array_equal(streamed, out[:, 1 : 1 + len(seen)])
        # The eager loop gives what the compiled loop gives.
        np.testing.assert_array_equal(
            ops.convert_to_numpy(sampler(next_fn, tokens, end_token=3)), out
        )


def test_compiled_loop_matches_and_refuses_stream(rng):
    backend = keras.backend.backend()
    if backend == "torch":
        pytest.skip("No XLA compile of a Python loop on PyTorch.")
    table, _ = _tables(rng)
    tokens = np.zeros((2, 7), "int32")
    tokens[:, 0] = [2, 5]
    sampler = GreedySampler(repetition_penalty=1.5, no_repeat_ngram_size=2)
    eager = ops.convert_to_numpy(
        sampler(_bigram(table), tokens, stop_sequences=[[1, 0]])
    )

    def run(tokens, stream=None):
        return sampler(
            _bigram(table), tokens, stop_sequences=[[1, 0]], stream=stream
        )

    if backend == "jax":
        import jax

        compiled = jax.jit(run)
        streamed = jax.jit(lambda t: run(t, stream=print))
    else:
        import tensorflow as tf

        compiled = tf.function(run, jit_compile=True)
        streamed = tf.function(lambda t: run(t, stream=print))
    np.testing.assert_array_equal(ops.convert_to_numpy(compiled(tokens)), eager)
    with pytest.raises(ValueError, match="needs eager execution"):
        streamed(tokens)


def test_get_sampler_and_bad_arguments():
    assert isinstance(get_sampler("sample", min_p=0.1), RandomSampler)
    greedy = GreedySampler()
    assert get_sampler(greedy) is greedy
    with pytest.raises(ValueError, match="method='nucleus'"):
        get_sampler("nucleus")
    with pytest.raises(TypeError, match="min_p"):
        get_sampler("greedy", min_p=0.1)
    with pytest.raises(ValueError, match="top_k"):
        get_sampler(greedy, top_k=3)
    with pytest.raises(ValueError, match="alpha=2"):
        ContrastiveSampler(alpha=2)
    with pytest.raises(ValueError, match="repetition_penalty=-1"):
        RandomSampler(repetition_penalty=-1)
    with pytest.raises(ValueError, match="stream"):
        BeamSampler()(
            lambda t, c, i: (t, c), np.zeros((1, 3), "int32"), stream=print
        )
    with pytest.raises(TypeError, match="stream=3"):
        GreedySampler()(
            lambda t, c, i: (t, c), np.zeros((1, 3), "int32"), stream=3
        )


def test_config_round_trip():
    sampler = RandomSampler(
        temperature=0.7, top_k=5, min_p=0.1, seed=2, no_repeat_ngram_size=3
    )
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(sampler)
    )
    assert type(restored) is RandomSampler
    assert restored.get_config() == sampler.get_config()
