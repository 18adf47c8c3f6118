"""Tests of the tfa AttentionWrapper features of AttentionRNN and its cell.

Several mechanisms, custom attention layers and cell input functions, the
cell form inside `keras.layers.RNN` and `StackedRNNCells`, and `.keras`
files in safe mode; each against a NumPy loop written out here.
"""

import os

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import AttentionRNN
from keras_attn.layers import AttentionRNNCell
from keras_attn.layers import BahdanauAttention
from keras_attn.layers import BahdanauMonotonicAttention
from keras_attn.layers import LuongAttention
from tests.ops.test_sparse_probabilities import np_sparsemax

B, T, S, D, DM = 2, 4, 5, 3, 6


@keras.saving.register_keras_serializable(package="keras_attn_tests")
def half_attention_input(inputs, attention):
    """A custom `cell_input_fn`: the input and half the attention vector."""
    return ops.concatenate([inputs, 0.5 * attention], axis=-1)


def _np(x):
    return ops.convert_to_numpy(x).astype("float64")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    inputs = rng.standard_normal((B, T, D)).astype("float32")
    memory = rng.standard_normal((B, S, DM)).astype("float32")
    memory_mask = np.ones((B, S), bool)
    memory_mask[0, 3:] = False
    return inputs, memory, memory_mask


def _np_softmax(scores, mask):
    scores = np.where(mask, scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _np_bahdanau_scores(layer, h, memory):
    w_q, w_m = _np(layer.query_dense.kernel), _np(layer.memory_dense.kernel)
    v = _np(layer.attention_v)
    hidden = (h @ w_q)[:, None, :] + memory @ w_m  # (B, S, U)
    return np.tanh(hidden) @ v  # (B, S)


def _np_simple_rnn(cell, x, h):
    w, u, b = (_np(v) for v in cell.weights)
    return np.tanh(x @ w + h @ u + b)


def _np_dense(layer, x):
    kernel = _np(layer.kernel)
    out = x @ kernel
    if layer.use_bias:
        out = out + _np(layer.bias)
    return np.tanh(out) if layer.activation is keras.activations.tanh else out


def _np_decoder(layer_like, inputs, memory, mask, input_fn, layers):
    """NumPy AttentionWrapper loop: SimpleRNN cell, Luong dot + Bahdanau
    sparsemax, one attention layer per mechanism, `input_fn` feeding."""
    luong, bahdanau = layer_like.attention
    h = np.zeros((B, DM))
    a = np.zeros((B, sum(x.units for x in layers)))
    outs, align_l, align_b = [], [], []
    for t in range(T):
        h = _np_simple_rnn(layer_like.cell, input_fn(inputs[:, t], a), h)
        alpha_l = _np_softmax(np.einsum("bd,bsd->bs", h, memory), mask)
        alpha_b = np_sparsemax(_np_bahdanau_scores(bahdanau, h, memory), mask)
        vectors = []
        for alpha, dense in ((alpha_l, layers[0]), (alpha_b, layers[1])):
            context = np.einsum("bs,bsd->bd", alpha, memory)
            vectors.append(_np_dense(dense, np.concatenate([h, context], -1)))
        a = np.concatenate(vectors, -1)
        outs.append(a)
        align_l.append(alpha_l)
        align_b.append(alpha_b)
    return np.stack(outs, 1), np.stack(align_l, 1), np.stack(align_b, 1), h, a


def _two_mechanism_decoder(**kwargs):
    return AttentionRNN(
        keras.layers.SimpleRNNCell(DM),
        [
            LuongAttention("dot"),
            BahdanauAttention(4, probability_fn="sparsemax"),
        ],
        attention_layer=[
            keras.layers.Dense(3, activation="tanh"),
            keras.layers.Dense(2, use_bias=False),
        ],
        cell_input_fn=half_attention_input,
        **kwargs,
    )


@pytest.fixture(scope="module")
def decoder(data):
    inputs, memory, memory_mask = data
    layer = _two_mechanism_decoder(return_alignments=True, return_state=True)
    result = layer(inputs, memory, memory_mask=memory_mask)
    return layer, result


def test_several_mechanisms_match_numpy(data, decoder):
    inputs, memory, memory_mask = data
    layer, (outputs, state, (align_l, align_b)) = decoder
    ref_out, ref_l, ref_b, h, a = _np_decoder(
        layer,
        inputs,
        memory,
        memory_mask,
        lambda x, att: np.concatenate([x, 0.5 * att], -1),
        layer.attention_layer,
    )
    np.testing.assert_allclose(_np(outputs), ref_out, atol=1e-5)
    np.testing.assert_allclose(_np(align_l), ref_l, atol=1e-5)
    np.testing.assert_allclose(_np(align_b), ref_b, atol=1e-5)
    cell_state, attention, last_alignments = state
    np.testing.assert_allclose(
        _np(keras.tree.flatten(cell_state)[0]), h, atol=1e-5
    )
    np.testing.assert_allclose(_np(attention), a, atol=1e-5)
    np.testing.assert_allclose(_np(last_alignments[1]), ref_b[:, -1], atol=1e-5)
    assert (_np(align_b) == 0).any()  # sparsemax is sparse here


def test_step_returns_one_alignment_per_mechanism(data, decoder):
    inputs, memory, memory_mask = data
    layer, (outputs, _, (align_l, align_b)) = decoder
    state = layer.get_initial_state(B, memory_length=S)
    for t in range(2):  # two steps: the second reads the carried state
        out, state, (step_l, step_b) = layer.step(
            inputs[:, t], state, memory, memory_mask=memory_mask
        )
        np.testing.assert_allclose(_np(out), _np(outputs[:, t]), atol=1e-5)
        np.testing.assert_allclose(_np(step_b), _np(align_b[:, t]), atol=1e-5)


def test_attention_layer_sizes_per_mechanism(data):
    inputs, memory, _ = data
    layer = AttentionRNN(
        keras.layers.GRUCell(5),
        [BahdanauAttention(4), BahdanauMonotonicAttention(3)],
        attention_layer_size=[3, 2],
        return_state=True,
        return_alignments=True,
    )
    outputs, state, alignments = layer(inputs, memory)
    assert tuple(outputs.shape) == (B, T, 5)
    assert [tuple(x.shape) for x in alignments] == [(B, T, S)] * 2
    # The monotonic one carries its own alignment state (one-hot start).
    (h,), attention, (_, carried) = state
    np.testing.assert_allclose(
        _np(carried), _np(alignments[1][:, -1]), atol=1e-6
    )
    shapes = layer.compute_output_shape(inputs.shape, memory.shape)
    assert shapes[1][2] == ((B, S), (B, S))
    assert shapes[2] == ((B, T, S), (B, T, S))


def _cell_from(layer):
    """An AttentionRNNCell sharing the decoder's cell, mechanisms and layers."""
    return AttentionRNNCell(
        layer.cell,
        layer.attention,
        attention_layer=layer.attention_layer,
        cell_input_fn=layer.cell_input_fn,
    )


def test_cell_in_keras_rnn_equals_attention_rnn(data, decoder):
    inputs, memory, memory_mask = data
    layer, (outputs, state, _) = decoder
    cell = _cell_from(layer)
    cell.setup_memory(memory, memory_mask)
    rnn = keras.layers.RNN(cell, return_sequences=True, return_state=True)
    got, *states = rnn(inputs)
    np.testing.assert_allclose(_np(got), _np(outputs), atol=1e-6)
    for x, y in zip(states, keras.tree.flatten(state)):
        np.testing.assert_allclose(_np(x), _np(y), atol=1e-6)
    assert cell.state_size == [DM, 5, S, S]
    assert cell.output_size == 5
    initial = cell.get_initial_state(batch_size=B)
    assert [tuple(x.shape) for x in initial] == [
        (B, DM),
        (B, 5),
        (B, S),
    ] * 1 + [(B, S)]


def test_cell_first_in_stack_matches_numpy(data):
    inputs, memory, memory_mask = data
    cell = AttentionRNNCell(
        keras.layers.SimpleRNNCell(DM),
        LuongAttention("dot"),
        attention_layer_size=4,
    )
    top = keras.layers.SimpleRNNCell(3)
    cell.setup_memory(memory, memory_mask)
    stack = keras.layers.StackedRNNCells([cell, top])
    outputs = keras.layers.RNN(stack, return_sequences=True)(inputs)
    h, h_top, a = np.zeros((B, DM)), np.zeros((B, 3)), np.zeros((B, 4))
    w_c = _np(cell.attention_layer.kernel)
    for t in range(T):
        h = _np_simple_rnn(cell.cell, np.concatenate([inputs[:, t], a], -1), h)
        alpha = _np_softmax(np.einsum("bd,bsd->bs", h, memory), memory_mask)
        context = np.einsum("bs,bsd->bd", alpha, memory)
        a = np.concatenate([h, context], -1) @ w_c
        h_top = _np_simple_rnn(top, a, h_top)
        np.testing.assert_allclose(_np(outputs[:, t]), h_top, atol=1e-5)


def test_cell_config_round_trip(data, decoder):
    inputs, memory, memory_mask = data
    cell = _cell_from(decoder[0])
    cell.setup_memory(memory, memory_mask)
    expected = keras.layers.RNN(cell, return_sequences=True)(inputs)
    clone = AttentionRNNCell.from_config(cell.get_config())
    clone.setup_memory(memory, memory_mask)
    rnn = keras.layers.RNN(clone, return_sequences=True)
    rnn.build(inputs.shape)
    clone.set_weights(cell.get_weights())
    np.testing.assert_allclose(_np(rnn(inputs)), _np(expected), atol=1e-6)


def test_keras_file_loads_in_safe_mode(data, decoder, tmp_path):
    inputs, memory, memory_mask = data
    x = keras.Input((T, D))
    m = keras.Input((S, DM))
    mm = keras.Input((S,), dtype="bool")
    y = _two_mechanism_decoder()(x, m, memory_mask=mm)
    model = keras.Model([x, m, mm], y)
    path = os.path.join(tmp_path, "decoder.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    decoder_layer = loaded.layers[-1]
    assert decoder_layer.cell_input_fn is half_attention_input
    assert decoder_layer.attention[1].probability_fn == "sparsemax"
    np.testing.assert_allclose(
        _np(loaded([inputs, memory, memory_mask])),
        _np(model([inputs, memory, memory_mask])),
        atol=1e-6,
    )


def test_bad_arguments(data):
    _, memory, _ = data
    cell = keras.layers.LSTMCell(4)
    two = [BahdanauAttention(3), LuongAttention("general")]
    with pytest.raises(ValueError, match="attention_layer_size"):
        AttentionRNN(cell, two, attention_layer_size=4)
    with pytest.raises(ValueError, match="attention_layer"):
        AttentionRNN(cell, two, attention_layer=[keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="not both"):
        AttentionRNN(
            cell,
            two[0],
            attention_layer_size=2,
            attention_layer=keras.layers.Dense(2),
        )
    with pytest.raises(ValueError, match="attention"):
        AttentionRNN(cell, [])
    with pytest.raises(ValueError, match="cell_input_fn"):
        AttentionRNN(cell, two[0], cell_input_fn="concat")
    with pytest.raises(ValueError, match="probability_fn"):
        BahdanauAttention(3, probability_fn="entmax")
    with pytest.raises(ValueError, match="probability_fn"):
        BahdanauMonotonicAttention(3, probability_fn="sparsemax")
    cell = AttentionRNNCell(keras.layers.LSTMCell(4), BahdanauAttention(3))
    with pytest.raises(ValueError, match="setup_memory"):
        cell.get_initial_state(batch_size=2)
    with pytest.raises(ValueError, match="memory"):
        cell.setup_memory(memory[:, 0])
    with pytest.raises(ValueError, match="memory_mask"):
        cell.setup_memory(memory, np.ones((B, S + 1), bool))


class CellDecoder(keras.Model):
    """Sets the cell's memory inside `call`, as a user model would."""

    def __init__(self):
        super().__init__()
        self.encoder = keras.layers.Dense(DM)
        self.cell = AttentionRNNCell(
            keras.layers.LSTMCell(4), BahdanauAttention(3)
        )
        self.rnn = keras.layers.RNN(self.cell, return_sequences=True)

    def call(self, data):
        inputs, memory = data
        self.cell.setup_memory(self.encoder(memory))
        return self.rnn(inputs)


def test_cell_trains_in_fit_with_memory_set_in_call(data):
    inputs, memory, _ = data
    model = CellDecoder()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    model((inputs, memory))
    before = [_np(w) for w in model.trainable_weights]
    target = np.ones((B, T, DM), "float32")
    model.fit((inputs, memory), target, epochs=1, batch_size=B, verbose=0)
    after = [_np(w) for w in model.trainable_weights]
    changed = {
        id(w)
        for w, x, y in zip(model.trainable_weights, before, after)
        if np.any(x != y)
    }
    # Gradients reach the encoder (through the memory) and the key
    # projection (through the keys computed for each sequence).
    assert id(model.encoder.kernel) in changed
    assert id(model.cell.attention.memory_dense.kernel) in changed
    assert len(changed) == len(model.trainable_weights)


def test_recursive_monotonic_mode_in_the_decoder_loop(data):
    """The recursion (a scan over the memory) runs inside the compiled
    time loop and gives the parallel mode's alignments, which the NumPy
    tests of the monotonic attentions check, away from the latter's floor."""
    inputs, memory, memory_mask = data
    results, weights = [], None
    for mode in ("parallel", "recursive"):
        layer = AttentionRNN(
            keras.layers.GRUCell(4),
            BahdanauMonotonicAttention(3, mode=mode, score_bias_init=-1.0),
            return_alignments=True,
        )
        layer.build(inputs.shape, memory.shape)
        if weights is None:
            weights = layer.get_weights()
        else:
            layer.set_weights(weights)
        results.append(layer(inputs, memory, memory_mask=memory_mask))
    (out_p, align_p), (out_r, align_r) = results
    np.testing.assert_allclose(_np(align_r), _np(align_p), atol=1e-5)
    np.testing.assert_allclose(_np(out_r), _np(out_p), atol=1e-5)
    assert _np(align_p)[:, -1, 1:].max() > 0.05  # the mass has moved on
