"""Tests of AttentionRNN: NumPy reference, step equivalence, masks, grads."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import AttentionRNN
from keras_attn.layers import BahdanauAttention
from keras_attn.layers import BahdanauMonotonicAttention
from keras_attn.layers import LuongAttention
from keras_attn.layers import LuongMonotonicAttention
from tests.conformance import BadInput
from tests.conformance import run_layer_test

B, T, S, D, DM = 3, 5, 6, 4, 7


def _data(rng):
    inputs = rng.standard_normal((B, T, D)).astype("float32")
    memory = rng.standard_normal((B, S, DM)).astype("float32")
    memory_mask = np.ones((B, S), bool)
    memory_mask[0, 4:] = False
    memory_mask[2, :2] = False
    return inputs, memory, memory_mask


def _np(x):
    return ops.convert_to_numpy(x).astype("float64")


def _serialized(layer):
    return keras.saving.serialize_keras_object(layer)


def test_conformance(rng):
    inputs, memory, memory_mask = _data(rng)
    run_layer_test(
        AttentionRNN,
        {
            # Serialized, so each construction gets its own fresh sublayers.
            "cell": _serialized(keras.layers.LSTMCell(8)),
            "attention": _serialized(BahdanauAttention(5)),
            "attention_layer_size": 6,
        },
        {"inputs": inputs, "memory": memory, "memory_mask": memory_mask},
        expected_output_shape=(B, T, 6),
        bad_inputs=[
            BadInput("attention_layer_size", {"attention_layer_size": 0}),
            BadInput("cell", {"cell": "lstm"}),
            BadInput("attention", {"attention": keras.layers.Dense(3)}),
            BadInput(
                "inputs", input_data={"inputs": inputs[:, 0], "memory": memory}
            ),
            BadInput(
                "memory", input_data={"inputs": inputs, "memory": memory[:, 0]}
            ),
            BadInput(
                "batch size",
                input_data={"inputs": inputs, "memory": memory[:2]},
            ),
            BadInput(
                "memory_mask",
                input_data={
                    "inputs": inputs,
                    "memory": memory,
                    "memory_mask": memory_mask[:, :2],
                },
            ),
        ],
    )


def test_conformance_state_and_alignments(rng):
    inputs, memory, _ = _data(rng)
    run_layer_test(
        AttentionRNN,
        {
            "cell": _serialized(keras.layers.GRUCell(7)),
            "attention": _serialized(LuongAttention("dot")),
            "output_attention": False,
            "return_state": True,
            "return_alignments": True,
            "return_sequences": False,
        },
        {"inputs": inputs, "memory": memory},
        expected_output_shape=((B, 7), (B, 7), (B, DM), (B, T, S)),
        bad_inputs=[
            BadInput(
                "mask",
                input_data={
                    "inputs": inputs,
                    "memory": memory,
                    "mask": np.ones((B, T + 1), bool),
                },
            ),
        ],
    )


def test_matches_numpy_reference(rng):
    """SimpleRNNCell + Luong "dot" + attention layer, written out in NumPy."""
    inputs, memory, memory_mask = _data(rng)
    layer = AttentionRNN(
        keras.layers.SimpleRNNCell(DM),
        LuongAttention("dot"),
        attention_layer_size=3,
        return_alignments=True,
    )
    outputs, alignments = layer(inputs, memory, memory_mask=memory_mask)
    w, u, b = (_np(v) for v in layer.cell.weights)
    w_c = _np(layer.attention_layer.kernel)
    h = np.zeros((B, DM))
    a = np.zeros((B, 3))
    ref_out, ref_align = [], []
    for t in range(T):
        x = np.concatenate([inputs[:, t], a], -1)  # input feeding
        h = np.tanh(x @ w + h @ u + b)
        scores = np.einsum("bd,bsd->bs", h, memory)
        scores = np.where(memory_mask, scores, -np.inf)
        e = np.exp(scores - scores.max(-1, keepdims=True))
        alpha = e / e.sum(-1, keepdims=True)
        context = np.einsum("bs,bsd->bd", alpha, memory)
        a = np.concatenate([h, context], -1) @ w_c
        ref_out.append(a)
        ref_align.append(alpha)
    np.testing.assert_allclose(
        _np(outputs), np.stack(ref_out, 1), atol=1e-5, rtol=1e-5
    )
    np.testing.assert_allclose(
        _np(alignments), np.stack(ref_align, 1), atol=1e-5
    )


def _cells():
    return {
        "lstm": lambda: keras.layers.LSTMCell(8),
        "gru": lambda: keras.layers.GRUCell(8),
        "simple": lambda: keras.layers.SimpleRNNCell(8),
        "stacked": lambda: keras.layers.StackedRNNCells(
            [keras.layers.LSTMCell(6), keras.layers.GRUCell(8)]
        ),
    }


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "simple", "stacked"])
@pytest.mark.parametrize("with_mask", [False, True])
def test_sequence_equals_steps(rng, cell_name, with_mask):
    inputs, memory, memory_mask = _data(rng)
    step_mask = np.ones((B, T), bool)
    if with_mask:
        step_mask[0, 2] = False
        step_mask[1, 3:] = False
    layer = AttentionRNN(
        _cells()[cell_name](),
        BahdanauAttention(5, normalize=True),
        attention_layer_size=6,
        return_state=True,
        return_alignments=True,
    )
    outputs, state, alignments = layer(
        inputs,
        memory,
        memory_mask=memory_mask,
        mask=step_mask if with_mask else None,
    )
    # By hand: skip masked steps (state carried, zero output).
    keys = layer.precompute(memory)
    carried = layer.get_initial_state(B)
    ref_out = np.zeros((B, T, 6))
    ref_align = np.zeros((B, T, S))
    for t in range(T):
        out, new_state, align = layer.step(
            inputs[:, t], carried, memory, keys=keys, memory_mask=memory_mask
        )
        m = step_mask[:, t]
        ref_out[m, t] = _np(out)[m]
        ref_align[m, t] = _np(align)[m]
        carried = keras.tree.map_structure(
            lambda new, old, m=m: np.where(
                m[:, None], _np(new), _np(old)
            ).astype("float32"),
            new_state,
            carried,
        )
    np.testing.assert_allclose(_np(outputs), ref_out, atol=1e-5)
    np.testing.assert_allclose(_np(alignments), ref_align, atol=1e-5)
    for got, want in zip(
        keras.tree.flatten(state), keras.tree.flatten(carried)
    ):
        np.testing.assert_allclose(_np(got), _np(want), atol=1e-5)
    if with_mask:
        # Row 1 is masked from step 3 on: its final state is the one after
        # step 2, and its outputs there are zeros.
        assert np.all(_np(outputs)[1, 3:] == 0)


def test_return_sequences_false_gives_last_unmasked_output(rng):
    inputs, memory, _ = _data(rng)
    step_mask = np.ones((B, T), bool)
    step_mask[1, 3:] = False
    kwargs = dict(attention_layer_size=4)
    seq = AttentionRNN(
        keras.layers.GRUCell(5), LuongAttention("general"), **kwargs
    )
    full = _np(seq(inputs, memory, mask=step_mask))
    last = AttentionRNN.from_config(
        {**seq.get_config(), "return_sequences": False}
    )
    last(inputs, memory, mask=step_mask)
    last.set_weights(seq.get_weights())
    got = _np(last(inputs, memory, mask=step_mask))
    np.testing.assert_allclose(got[0], full[0, -1], atol=1e-6)
    np.testing.assert_allclose(got[1], full[1, 2], atol=1e-6)


def test_initial_state_is_used(rng):
    inputs, memory, _ = _data(rng)
    layer = AttentionRNN(keras.layers.LSTMCell(8), BahdanauAttention(4))
    h0 = rng.standard_normal((B, 8)).astype("float32")
    c0 = rng.standard_normal((B, 8)).astype("float32")
    out_zero = _np(layer(inputs, memory))
    out_init = _np(layer(inputs, memory, initial_state=[h0, c0]))
    state = layer.get_initial_state(B, [h0, c0])
    first, _, _ = layer.step(inputs[:, 0], state, memory)
    np.testing.assert_allclose(out_init[:, 0], _np(first), atol=1e-5)
    assert not np.allclose(out_zero[:, 0], out_init[:, 0])


def test_masked_memory_does_not_change_outputs(rng):
    inputs, memory, memory_mask = _data(rng)
    layer = AttentionRNN(
        keras.layers.LSTMCell(8),
        LuongAttention("concat", units=5),
        attention_layer_size=6,
    )
    out = _np(layer(inputs, memory, memory_mask=memory_mask))
    changed = np.where(memory_mask[:, :, None], memory, 37.0)
    out2 = _np(
        layer(inputs, changed.astype("float32"), memory_mask=memory_mask)
    )
    np.testing.assert_allclose(out, out2, atol=1e-6)
    # ... and the mask matters: without it the outputs change.
    out3 = _np(layer(inputs, changed.astype("float32")))
    assert not np.allclose(out, out3, atol=1e-3)


def test_gradients_reach_cell_attention_and_memory(rng):
    inputs, memory, memory_mask = _data(rng)
    x_in = keras.Input((T, D))
    m_in = keras.Input((S, DM))
    encoder = keras.layers.Dense(DM, name="encoder")
    decoder = AttentionRNN(
        keras.layers.LSTMCell(8),
        BahdanauAttention(5),
        attention_layer_size=6,
    )
    model = keras.Model([x_in, m_in], decoder(x_in, encoder(m_in)))
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    groups = {
        "cell": decoder.cell.trainable_weights,
        "attention": decoder.attention.trainable_weights,
        "attention_layer": decoder.attention_layer.trainable_weights,
        "encoder": encoder.trainable_weights,
    }
    before = {k: [_np(w) for w in ws] for k, ws in groups.items()}
    target = rng.standard_normal((B, T, 6)).astype("float32")
    model.fit([inputs, memory], target, batch_size=B, epochs=1, verbose=0)
    for name, weights in groups.items():
        for old, new in zip(before[name], weights):
            assert not np.allclose(old, _np(new)), f"no gradient to {name}"


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "stacked"])
def test_symbolic_state_structure_matches_eager(rng, cell_name):
    inputs, memory, _ = _data(rng)
    layer = AttentionRNN(
        _cells()[cell_name](), LuongAttention("general"), return_state=True
    )
    _, eager_state = layer(inputs, memory)
    _, symbolic_state = layer(keras.Input((T, D)), keras.Input((S, DM)))
    assert keras.tree.assert_same_structure(eager_state, symbolic_state) is None
    for e, s in zip(
        keras.tree.flatten(eager_state), keras.tree.flatten(symbolic_state)
    ):
        assert tuple(s.shape) == (None,) + tuple(e.shape)[1:]


# -- monotonic attention: the alignments travel in the loop state ----------


def _np_monotonic(p, previous):
    """Raffel et al. (2017), parallel mode, with a plain exclusive cumprod."""
    cumprod = np.concatenate(
        [np.ones_like(p[:, :1]), np.cumprod(1 - p, axis=1)[:, :-1]], axis=1
    )
    return p * cumprod * np.cumsum(previous / np.clip(cumprod, 1e-10, 1), 1)


def test_conformance_monotonic(rng):
    inputs, memory, memory_mask = _data(rng)
    run_layer_test(
        AttentionRNN,
        {
            "cell": _serialized(keras.layers.LSTMCell(8)),
            "attention": _serialized(
                BahdanauMonotonicAttention(5, sigmoid_noise=1.0, seed=2)
            ),
            "attention_layer_size": 6,
            "return_state": True,
            "return_alignments": True,
        },
        {"inputs": inputs, "memory": memory, "memory_mask": memory_mask},
        # outputs, state (cell [h, c], attention, alignments), alignments
        expected_output_shape=(
            (B, T, 6),
            (B, 8),
            (B, 8),
            (B, 6),
            (B, S),
            (B, T, S),
        ),
    )


def test_monotonic_matches_numpy_reference(rng):
    """SimpleRNNCell + monotonic Luong "dot", written out in NumPy."""
    inputs, memory, memory_mask = _data(rng)
    layer = AttentionRNN(
        keras.layers.SimpleRNNCell(DM),
        LuongMonotonicAttention("dot", score_bias_init=-0.5),
        attention_layer_size=3,
        return_alignments=True,
    )
    outputs, alignments = layer(inputs, memory, memory_mask=memory_mask)
    w, u, b = (_np(v) for v in layer.cell.weights)
    w_c = _np(layer.attention_layer.kernel)
    r = float(_np(layer.attention.score_bias))
    h = np.zeros((B, DM))
    a = np.zeros((B, 3))
    alpha = np.zeros((B, S))
    alpha[:, 0] = 1
    ref_out, ref_align = [], []
    for t in range(T):
        x = np.concatenate([inputs[:, t], a], -1)  # input feeding
        h = np.tanh(x @ w + h @ u + b)
        energy = np.einsum("bd,bsd->bs", h, memory) + r
        p = memory_mask / (1 + np.exp(-energy))
        alpha = _np_monotonic(p, alpha)
        context = np.einsum("bs,bsd->bd", alpha, memory)
        a = np.concatenate([h, context], -1) @ w_c
        ref_out.append(a)
        ref_align.append(alpha)
    np.testing.assert_allclose(
        _np(alignments), np.stack(ref_align, 1), atol=1e-5
    )
    np.testing.assert_allclose(
        _np(outputs), np.stack(ref_out, 1), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("with_mask", [False, True])
def test_monotonic_sequence_equals_steps(rng, with_mask):
    inputs, memory, memory_mask = _data(rng)
    step_mask = np.ones((B, T), bool)
    if with_mask:
        step_mask[0, 1] = False
        step_mask[2, 3:] = False
    layer = AttentionRNN(
        keras.layers.LSTMCell(8),
        BahdanauMonotonicAttention(5, normalize=True, score_bias_init=-1.0),
        attention_layer_size=6,
        return_state=True,
        return_alignments=True,
    )
    outputs, state, alignments = layer(
        inputs,
        memory,
        memory_mask=memory_mask,
        mask=step_mask if with_mask else None,
    )
    keys = layer.precompute(memory)
    carried = layer.get_initial_state(B, memory_length=S)
    ref_out = np.zeros((B, T, 6))
    ref_align = np.zeros((B, T, S))
    for t in range(T):
        out, new_state, align = layer.step(
            inputs[:, t], carried, memory, keys=keys, memory_mask=memory_mask
        )
        m = step_mask[:, t]
        ref_out[m, t] = _np(out)[m]
        ref_align[m, t] = _np(align)[m]
        carried = keras.tree.map_structure(
            lambda new, old, m=m: np.where(
                m[:, None], _np(new), _np(old)
            ).astype("float32"),
            new_state,
            carried,
        )
    np.testing.assert_allclose(_np(outputs), ref_out, atol=1e-5)
    np.testing.assert_allclose(_np(alignments), ref_align, atol=1e-5)
    assert len(state) == 3
    for got, want in zip(
        keras.tree.flatten(state), keras.tree.flatten(carried)
    ):
        np.testing.assert_allclose(_np(got), _np(want), atol=1e-5)
    # The alignment in the state is that of each row's last unmasked step.
    last = 2 if with_mask else T - 1
    np.testing.assert_allclose(_np(state[2])[2], ref_align[2, last], atol=1e-5)


def test_monotonic_p_one_stays_on_first_position(rng):
    inputs, memory, _ = _data(rng)
    layer = AttentionRNN(
        keras.layers.GRUCell(8),
        BahdanauMonotonicAttention(5, score_bias_init=100.0),
        return_alignments=True,
    )
    _, alignments = layer(inputs, memory)
    want = np.zeros((B, T, S))
    want[:, :, 0] = 1
    np.testing.assert_allclose(_np(alignments), want, atol=1e-6)


def test_monotonic_initial_state_needs_memory_length(rng):
    inputs, memory, _ = _data(rng)
    layer = AttentionRNN(keras.layers.GRUCell(8), LuongMonotonicAttention())
    layer(inputs, memory)
    with pytest.raises(ValueError, match="memory_length"):
        layer.get_initial_state(B)


def test_monotonic_noise_in_training_only(rng):
    inputs, memory, memory_mask = _data(rng)
    layer = AttentionRNN(
        keras.layers.GRUCell(8),
        LuongMonotonicAttention(sigmoid_noise=2.0, seed=1),
        return_alignments=True,
    )
    _, first = layer(inputs, memory, memory_mask=memory_mask)
    _, second = layer(inputs, memory, memory_mask=memory_mask)
    np.testing.assert_array_equal(_np(first), _np(second))
    _, noisy = layer(inputs, memory, memory_mask=memory_mask, training=True)
    assert not np.allclose(_np(noisy), _np(first), atol=1e-3)


# -- cell dropout (tfa users train their decoders with it) -------------------


class _RecordingSimpleRNNCell(keras.layers.SimpleRNNCell):
    """Keeps the first dropout masks it hands out (the ones of the sequence)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.recorded = {}

    def get_dropout_mask(self, step_input):
        mask = super().get_dropout_mask(step_input)
        self.recorded.setdefault("input", mask)
        return mask

    def get_recurrent_dropout_mask(self, step_input):
        mask = super().get_recurrent_dropout_mask(step_input)
        self.recorded.setdefault("recurrent", mask)
        return mask


def test_cell_dropout_masks_match_numpy_reference(rng):
    """One input and one recurrent mask per sequence, applied every step."""
    inputs, memory, memory_mask = _data(rng)
    cell = _RecordingSimpleRNNCell(DM, dropout=0.3, recurrent_dropout=0.4)
    layer = AttentionRNN(cell, LuongAttention("dot"), attention_layer_size=3)
    outputs = layer(inputs, memory, memory_mask=memory_mask, training=True)
    x_mask = _np(cell.recorded["input"])  # (B, D + 3)
    h_mask = _np(cell.recorded["recurrent"])  # (B, DM)
    assert x_mask.shape == (B, D + 3) and h_mask.shape == (B, DM)
    # Inverted dropout: 0 where dropped, 1 / (1 - rate) where kept.
    assert set(np.round(np.unique(x_mask), 5)) == {0.0, round(1 / 0.7, 5)}
    assert set(np.round(np.unique(h_mask), 5)) == {0.0, round(1 / 0.6, 5)}
    w, u, b = (_np(v) for v in layer.cell.weights)
    w_c = _np(layer.attention_layer.kernel)
    h = np.zeros((B, DM))
    a = np.zeros((B, 3))
    ref = []
    for t in range(T):
        x = np.concatenate([inputs[:, t], a], -1)  # input feeding
        h = np.tanh((x * x_mask) @ w + (h * h_mask) @ u + b)
        scores = np.einsum("bd,bsd->bs", h, memory)
        scores = np.where(memory_mask, scores, -np.inf)
        e = np.exp(scores - scores.max(-1, keepdims=True))
        alpha = e / e.sum(-1, keepdims=True)
        a = np.concatenate([h, np.einsum("bs,bsd->bd", alpha, memory)], -1)
        a = a @ w_c
        ref.append(a)
    np.testing.assert_allclose(_np(outputs), np.stack(ref, 1), atol=1e-5)


@pytest.mark.parametrize("cell_name", ["lstm", "gru", "stacked"])
def test_cell_dropout_is_identity_in_inference(rng, cell_name):
    inputs, memory, memory_mask = _data(rng)
    dropout = {"dropout": 0.5, "recurrent_dropout": 0.5}
    cells = {
        "lstm": lambda **k: keras.layers.LSTMCell(8, **k),
        "gru": lambda **k: keras.layers.GRUCell(8, **k),
        "stacked": lambda **k: keras.layers.StackedRNNCells(
            [keras.layers.LSTMCell(6, **k), keras.layers.GRUCell(8, **k)]
        ),
    }
    with_dropout, plain = (
        AttentionRNN(
            cells[cell_name](**kwargs),
            BahdanauAttention(5),
            attention_layer_size=6,
        )
        for kwargs in (dropout, {})
    )
    reference = plain(inputs, memory, memory_mask=memory_mask)
    with_dropout(inputs, memory, memory_mask=memory_mask)
    with_dropout.set_weights(plain.get_weights())
    for training in (False, None):
        out = with_dropout(
            inputs, memory, memory_mask=memory_mask, training=training
        )
        np.testing.assert_allclose(_np(out), _np(reference), atol=1e-6)
    trained = with_dropout(
        inputs, memory, memory_mask=memory_mask, training=True
    )
    assert not np.allclose(_np(trained), _np(reference), atol=1e-3)


@pytest.mark.parametrize("cell_name", ["lstm", "stacked"])
def test_cell_dropout_trains_in_fit(rng, cell_name):
    inputs, memory, memory_mask = _data(rng)
    cell = {
        "lstm": lambda: keras.layers.LSTMCell(
            8, dropout=0.2, recurrent_dropout=0.2
        ),
        "stacked": lambda: keras.layers.StackedRNNCells(
            [
                keras.layers.GRUCell(6, dropout=0.2, recurrent_dropout=0.2),
                keras.layers.SimpleRNNCell(8, dropout=0.2),
            ]
        ),
    }[cell_name]()
    x = keras.Input((T, D))
    m = keras.Input((S, DM))
    y = AttentionRNN(cell, BahdanauAttention(5), attention_layer_size=6)(x, m)
    model = keras.Model([x, m], keras.layers.Dense(1)(y))
    model.compile("adam", "mse")
    before = [w.copy() for w in model.get_weights()]
    target = rng.standard_normal((B, T, 1)).astype("float32")
    history = model.fit(
        [inputs, memory], target, epochs=2, batch_size=B, verbose=0
    )
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.get_weights()
    assert all(not np.array_equal(b, a) for b, a in zip(before, after))
    # Inference afterwards is deterministic (no mask left cached).
    p1 = model.predict([inputs, memory], verbose=0)
    p2 = model.predict([inputs, memory], verbose=0)
    np.testing.assert_array_equal(p1, p2)


# -- migration from tfa --------------------------------------------------------


def test_get_initial_state_before_the_layer_is_called(rng):
    inputs, memory, _ = _data(rng)
    layer = AttentionRNN(
        keras.layers.LSTMCell(8), BahdanauAttention(5), attention_layer_size=6
    )
    # tfa: wrapper.get_initial_state(batch_size=B, dtype=...).
    (h, c), attention = layer.get_initial_state(batch_size=B, dtype="float32")
    for x, size in ((h, 8), (c, 8), (attention, 6)):
        np.testing.assert_array_equal(_np(x), np.zeros((B, size)))
        assert keras.backend.standardize_dtype(x.dtype) == "float32"
    state = layer.get_initial_state(B, dtype="float16")
    assert all(
        keras.backend.standardize_dtype(x.dtype) == "float16"
        for x in keras.tree.flatten(state)
    )
    # The state feeds the layer's step once it is built.
    state = layer.get_initial_state(B)
    output, _, alignment = layer.step(inputs[:, 0], state, memory)
    assert tuple(output.shape) == (B, 6)
    np.testing.assert_allclose(_np(alignment).sum(-1), 1.0, atol=1e-6)


def test_get_initial_state_needs_the_memory_size_without_layer_size():
    layer = AttentionRNN(keras.layers.GRUCell(8), BahdanauAttention(5))
    with pytest.raises(ValueError, match="attention_layer_size=None"):
        layer.get_initial_state(2)
    layer.build((None, T, D), (None, S, DM))
    _, attention = layer.get_initial_state(2)
    assert tuple(attention.shape) == (2, DM)


def _guide_row(tfa_name):
    path = "docs/migration/from_tensorflow_addons.md"
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(f"| `{tfa_name}` |"):
                return line.split("|")[2].strip().strip("`")
    raise AssertionError(f"no row for {tfa_name} in {path}")


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_guide_memory_sequence_length_snippet(rng, dtype):
    # The migration page's line, run as written, with tfa's int64 lengths.
    snippet = _guide_row("memory_sequence_length")
    lengths = np.array([2, 6, 4], dtype)
    if keras.backend.backend() != "jax":  # JAX has no int64 without x64
        lengths = ops.convert_to_tensor(lengths)
    namespace = {"ops": ops, "S": S, "lengths": lengths}
    exec(snippet, namespace)
    memory_mask = _np(namespace["memory_mask"]).astype(bool)
    expected = np.arange(S)[None] < np.array([2, 6, 4])[:, None]
    np.testing.assert_array_equal(memory_mask, expected)
    _, memory, _ = _data(rng)
    _, weights = BahdanauAttention(4)(
        memory[:, 0],
        memory,
        memory_mask=namespace["memory_mask"],
        return_attention_scores=True,
    )
    assert np.all(_np(weights)[~expected] == 0)
