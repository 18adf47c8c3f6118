"""RNNDecoder, beam steps / coverage / gather_tree, against NumPy loops."""

import itertools

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.generation import RNNDecoder
from keras_attn.generation import beam_search
from keras_attn.generation import gather_tree

V, E, H = 5, 4, 6


def _np(x):
    return ops.convert_to_numpy(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class NumpyLSTMDecoder:
    """Embedding -> keras LSTMCell equations -> Dense, written out."""

    def __init__(self, decoder):
        self.table = _np(decoder.embedding.embeddings)
        self.kernel = _np(decoder.cell.kernel)
        self.recurrent = _np(decoder.cell.recurrent_kernel)
        self.bias = _np(decoder.cell.bias)
        self.out_w = _np(decoder.output_layer.kernel)
        self.out_b = _np(decoder.output_layer.bias)

    def step(self, token, h, c):
        z = self.table[token] @ self.kernel + h @ self.recurrent + self.bias
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        return h @ self.out_w + self.out_b, h, c


@pytest.fixture(scope="module")
def lstm_decoder():
    keras.utils.set_random_seed(0)
    decoder = RNNDecoder(
        keras.layers.LSTMCell(H),
        keras.layers.Embedding(V, E),
        keras.layers.Dense(V),
    )
    decoder.build((None, None))
    rng = np.random.default_rng(0)
    # Larger weights than the default init: sharper, tie-free logits.
    decoder.set_weights(
        [
            rng.normal(0, 1.0, w.shape).astype("float32")
            for w in decoder.get_weights()
        ]
    )
    return decoder


def _states(batch, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.5, (batch, H)).astype("float32") for _ in range(2)]


def test_teacher_forcing_and_mask_match_numpy(lstm_decoder):
    ref = NumpyLSTMDecoder(lstm_decoder)
    tokens = np.array([[1, 2, 3, 4], [0, 4, 4, 1], [3, 3, 2, 0]], "int32")
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]], bool)
    h0, c0 = _states(3)
    logits, states = lstm_decoder(
        tokens, initial_state=[h0, c0], mask=mask, return_state=True
    )
    expected = np.zeros((3, 4, V), "float32")
    h, c = h0.copy(), c0.copy()
    for b in range(3):
        hb, cb = h0[b], c0[b]
        for t in range(4):
            if mask[b, t]:
                expected[b, t], hb, cb = ref.step(tokens[b, t], hb, cb)
        h[b], c[b] = hb, cb
    np.testing.assert_allclose(_np(logits), expected, atol=1e-4)
    np.testing.assert_allclose(_np(states[0]), h, atol=1e-4)
    np.testing.assert_allclose(_np(states[1]), c, atol=1e-4)


def _numpy_greedy(ref, h0, c0, start, end, steps, pad=0):
    batch = h0.shape[0]
    ids = np.full((batch, steps), pad, "int32")
    lengths = np.full((batch,), steps)
    h, c = h0.copy(), c0.copy()
    for b in range(batch):
        token, hb, cb = start, h0[b], c0[b]
        for t in range(steps):
            logits, hb, cb = ref.step(token, hb, cb)
            token = int(np.argmax(logits))
            ids[b, t] = token
            if token == end:
                lengths[b] = t + 1
                break  # frozen state: later steps do not run
        h[b], c[b] = hb, cb
    return ids, lengths, h, c


def test_greedy_decode_matches_numpy(lstm_decoder):
    ref = NumpyLSTMDecoder(lstm_decoder)
    h0, c0 = _states(4, seed=2)
    free, _, _, _ = _numpy_greedy(ref, h0, c0, 1, None, 6)
    end = int(free[0, 1])  # a token row 0 produces: it ends at step <= 2
    ids, lengths, h, c = _numpy_greedy(ref, h0, c0, 1, end, 6)
    assert lengths.min() < 6  # the end token matters in this test
    result = lstm_decoder.decode(
        initial_state=[h0, c0],
        start_token=1,
        end_token=end,
        maximum_iterations=6,
    )
    np.testing.assert_array_equal(_np(result["ids"]), ids)
    np.testing.assert_array_equal(_np(result["lengths"]), lengths)
    np.testing.assert_allclose(_np(result["states"][0]), h, atol=1e-4)
    np.testing.assert_allclose(_np(result["states"][1]), c, atol=1e-4)


def test_beam_decode_is_exact_by_enumeration(lstm_decoder):
    """Width 16 >= all prefixes of 2 tokens of 4+1: beam search is exact."""
    ref = NumpyLSTMDecoder(lstm_decoder)
    h0, c0 = _states(1, seed=3)
    steps, end, alpha = 3, 2, 0.7
    best, best_score = None, -np.inf
    for seq in itertools.product(range(V), repeat=steps):
        n = seq.index(end) + 1 if end in seq else steps
        if any(t != 0 for t in seq[n:]):
            continue  # pad after end only
        token, h, c, total = 1, h0[0], c0[0], 0.0
        for t in seq[:n]:
            logits, h, c = ref.step(token, h, c)
            total += _log_softmax(logits)[t]
            token = t
        score = total / ((5.0 + n) / 6.0) ** alpha
        if score > best_score:
            best, best_score = seq, score
    result = lstm_decoder.decode(
        initial_state=[h0, c0],
        start_token=1,
        end_token=end,
        maximum_iterations=steps,
        method="beam",
        beam_width=16,
        length_penalty=alpha,
    )
    np.testing.assert_array_equal(_np(result["ids"])[0], best)
    np.testing.assert_allclose(_np(result["scores"])[0], best_score, rtol=1e-4)
    # The per-step outputs backtrack to the returned beams.
    beams = _np(gather_tree(result["predicted_ids"], result["parent_ids"]))
    np.testing.assert_array_equal(
        beams.transpose(0, 2, 1), _np(result["beam_ids"])
    )
    beam_scores = _np(result["beam_scores"])
    assert np.all(np.diff(beam_scores[0]) <= 0)


def _numpy_gather_tree(ids, parents):
    batch, steps, width = ids.shape
    out = np.zeros_like(ids)
    for b in range(batch):
        for k in range(width):
            beam = k
            for t in reversed(range(steps)):
                out[b, t, k] = ids[b, t, beam]
                beam = parents[b, t, beam]
    return out


def test_gather_tree_matches_numpy():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 9, (2, 6, 3)).astype("int32")
    parents = rng.integers(0, 3, (2, 6, 3)).astype("int32")
    np.testing.assert_array_equal(
        _np(gather_tree(ids, parents)), _numpy_gather_tree(ids, parents)
    )


def _coverage_model(rng, source=3, vocab=4):
    logp = _log_softmax(rng.normal(0, 1.5, (vocab, vocab)))
    attention = rng.dirichlet(np.ones(source) * 0.3, size=vocab)

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)
        logits = ops.take(ops.convert_to_tensor(logp, "float32"), previous, 0)
        align = ops.take(
            ops.convert_to_tensor(attention, "float32"), previous, 0
        )
        return logits, {"align": align}

    return logp, attention, next_fn


def _enumerate_coverage(logp, attention, start, end, steps, alpha, beta):
    best, best_score = None, -np.inf
    for seq in itertools.product(range(logp.shape[0]), repeat=steps):
        n = seq.index(end) + 1 if end in seq else steps
        if any(t != 0 for t in seq[n:]):
            continue
        total, coverage, prev = 0.0, 0.0, start
        for t in seq[:n]:
            total += logp[prev, t]
            coverage = coverage + attention[prev]  # this step's attention
            prev = t
        score = total / ((5.0 + n) / 6.0) ** alpha
        if end in seq:  # Wu et al.: the penalty of finished hypotheses
            c = np.where(coverage == 0, 1.0, coverage)
            score += beta * np.sum(np.log(np.minimum(c, 1.0)))
        if score > best_score:
            best, best_score = seq, score
    return np.array(best), best_score


def test_coverage_penalty_is_exact_by_enumeration():
    # Seed 0: the best finished beam without the penalty ([2, end])
    # attended to too few positions; with it, an unfinished one wins.
    rng = np.random.default_rng(0)
    logp, attention, next_fn = _coverage_model(rng)
    steps, end, alpha = 3, 3, 0.5
    found = {}
    for beta in (0.0, 2.0):
        best, best_score = _enumerate_coverage(
            logp, attention, 1, end, steps, alpha, beta
        )
        tokens = np.zeros((1, steps + 1), "int32")
        tokens[:, 0] = 1
        ids, scores = beam_search(
            next_fn,
            tokens,
            {"align": np.zeros((1, 3), "float32")},
            beam_width=16,
            length_penalty=alpha,
            end_token=end,
            coverage_penalty=beta,
            alignments_fn=lambda c: c["align"],
            return_scores=True,
        )
        np.testing.assert_array_equal(_np(ids)[0, 1:], best)
        np.testing.assert_allclose(_np(scores)[0], best_score, rtol=1e-4)
        found[beta] = tuple(best)
    assert found[0.0] != found[2.0]  # the penalty changes the answer here


def test_coverage_penalty_needs_alignments():
    with pytest.raises(ValueError, match="alignments_fn=None"):
        beam_search(
            lambda t, c, i: (ops.zeros((2, 3)), c),
            np.zeros((1, 3), "int32"),
            beam_width=2,
            coverage_penalty=1.0,
        )


def test_gru_decode_matches_a_python_loop_over_the_cell():
    keras.utils.set_random_seed(3)
    cell, embedding, dense = (
        keras.layers.GRUCell(H),
        keras.layers.Embedding(V, E),
        keras.layers.Dense(V),
    )
    decoder = RNNDecoder(cell, embedding, dense)
    h0 = np.random.default_rng(4).normal(0, 1, (3, H)).astype("float32")
    result = decoder.decode(
        initial_state=[h0], start_token=0, maximum_iterations=4
    )
    # Reference: the Keras layers called by hand, argmax in NumPy.
    token, state, ids = np.zeros((3,), "int32"), [h0], []
    for _ in range(4):
        output, state = cell(embedding(token), state)
        token = np.argmax(_np(dense(output)), axis=-1).astype("int32")
        ids.append(token)
    np.testing.assert_array_equal(_np(result["ids"]), np.stack(ids, 1))
    np.testing.assert_array_equal(_np(result["lengths"]), [4, 4, 4])


def test_scheduled_sampling(lstm_decoder):
    tokens = np.array([[1, 2, 3, 4], [0, 4, 4, 1]], "int32")
    other = np.array([[1, 0, 0, 2], [0, 1, 3, 3]], "int32")  # same column 0
    teacher = _np(lstm_decoder(tokens, training=True))

    def scheduled(inputs, p):
        config = lstm_decoder.get_config()
        config.update(scheduled_sampling_probability=p, seed=7)
        decoder = RNNDecoder.from_config(config)
        decoder.build((None, None))
        decoder.set_weights(lstm_decoder.get_weights())
        return _np(decoder(inputs, training=True)), decoder

    zero, _ = scheduled(tokens, 0.0)
    np.testing.assert_allclose(zero, teacher, atol=1e-5)
    always, decoder = scheduled(tokens, 1.0)
    # p = 1: after the first step no given token is read.
    np.testing.assert_allclose(scheduled(other, 1.0)[0], always, atol=1e-5)
    assert not np.allclose(always[:, 1:], teacher[:, 1:], atol=1e-3)
    np.testing.assert_allclose(always[:, 0], teacher[:, 0], atol=1e-5)
    # Not in inference.
    np.testing.assert_allclose(_np(decoder(tokens)), teacher, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell": keras.layers.Dense(3)}, "cell="),
        ({"scheduled_sampling_probability": 1.5}, "1.5"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    arguments = {
        "cell": keras.layers.LSTMCell(4),
        "embedding": keras.layers.Embedding(5, 3),
        "output_layer": keras.layers.Dense(5),
    }
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        RNNDecoder(**arguments)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"maximum_iterations": 0}, "maximum_iterations=0"),
        ({"method": "contrastive"}, "contrastive"),
        ({"batch_size": None}, "batch_size=None"),
    ],
)
def test_bad_decode_arguments(lstm_decoder, kwargs, match):
    arguments = {"batch_size": 2, "maximum_iterations": 3}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        lstm_decoder.decode(**arguments)


# 9 s (TensorFlow, PyTorch) to 19 s (JAX) on the loaded 2-core machine.
@pytest.mark.large
def test_functional_model_trains_and_saves(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None,), dtype="int32")
    decoder = RNNDecoder(
        keras.layers.LSTMCell(8),
        keras.layers.Embedding(V, 4),
        keras.layers.Dense(V),
    )
    model = keras.Model(inputs, decoder(inputs))
    model.compile(
        keras.optimizers.Adam(0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    tokens = np.array([[1, 2, 3], [4, 0, 2]], "int32")
    loss = model.fit(tokens, tokens, epochs=3, verbose=0).history["loss"]
    assert loss[-1] < loss[0]
    path = str(tmp_path / "decoder.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        _np(loaded(tokens)), _np(model(tokens)), atol=1e-6
    )
    assert isinstance(loaded.layers[-1], RNNDecoder)
