"""Every public layer and model at lengths unknown until run time.

Each public class of `keras_attn.layers` and `keras_attn.models` (found
from the packages' public names, so a new one without a case here fails
`test_every_public_class_has_a_case`) goes in a functional model whose
`keras.Input`s have None lengths. The model is compiled with
`jit_compile=True` (XLA on JAX and TensorFlow; torch runs eagerly) and
called at three lengths, in an order that is neither rising nor falling.
Each output is compared with an independent reference where one is cheap
(NumPy from the layer's weights, or Keras' own `MultiHeadAttention`), and
otherwise with the eager call of the same layer at that length.
`TransformerLM` is also checked against its own output at the longest
length (a prefix of a causal model's output does not depend on the
positions after it).

`VisionTransformer` takes images of the size it was built for (its
positions are learned per patch): its dynamic axis is the batch.
`PatchEmbedding` without positions takes any image size.

Generation: `generate` with prompt lengths that change between calls
(the compiled `while_loop` on JAX, `tf.while_loop` on TensorFlow) equals
a greedy loop written out here over the model's full forward pass, and
the eager, streamed loop. On JAX a second `generate` call at the same
shapes compiles nothing (`test_generate_reuses_its_compiled_loop_on_jax`).
"""

import logging

import keras
import numpy as np
import pytest
from keras import ops

import keras_attn.layers
import keras_attn.models
from keras_attn import layers as L
from keras_attn import models as M
from tests.layers.transformer import _reference as ref

BACKEND = keras.backend.backend()
B, D, N = 2, 8, 2
LENGTHS = (6, 3, 5)  # neither rising nor falling
VOCAB = 11


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _w(layer):
    return [np.asarray(w, "float64") for w in layer.get_weights()]


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def _input(x, free_axes, name=None):
    shape = [None if a in free_axes else d for a, d in enumerate(x.shape)]
    return keras.Input(shape[1:], dtype=str(x.dtype), name=name)


def _cut(x, free_axes, n):
    index = tuple(
        slice(0, n) if a in free_axes else slice(None) for a in range(x.ndim)
    )
    return x[index]


class Case:
    """A built layer or model, its data at the longest length, its axes.

    `data`: an array (called positionally) or a dict of arrays (called by
    keyword, inputs named after the keys). `axes`: the free axes, a tuple
    (array data) or a dict of tuples. `reference(data_at_n)`: optional,
    the expected outputs from NumPy; without it the eager call is the
    reference. `lengths`: the lengths the data is cut to. `call(data)`:
    how the data is passed (default: positionally, or by keyword).
    """

    def __init__(
        self, layer, data, axes, reference=None, lengths=LENGTHS, call=None
    ):
        self.layer, self.data, self.axes = layer, data, axes
        self.reference, self.lengths = reference, lengths
        if call is not None:
            self.call = call
        self.call(data)  # builds

    def at(self, n):
        if isinstance(self.data, dict):
            return {
                k: _cut(v, self.axes.get(k, ()), n)
                for k, v in self.data.items()
            }
        return _cut(self.data, self.axes, n)

    def call(self, data):
        if isinstance(data, dict):
            return self.layer(**data)
        return self.layer(data)

    def functional(self):
        if isinstance(self.data, dict):
            inputs = {
                k: _input(v, self.axes.get(k, ()), name=k)
                for k, v in self.data.items()
            }
        else:
            inputs = _input(self.data, self.axes)
        model = keras.Model(inputs, self.call(inputs))
        model.compile(jit_compile=BACKEND in ("jax", "tensorflow"))
        return model


# -- the cases: one small instance per public class --------------------------


def _rng():
    return np.random.default_rng(0)


def _normal(*shape):
    return _rng().normal(size=shape).astype("float32")


def _ids(*shape, low=0):
    return _rng().integers(low, VOCAB, shape).astype("int32")


def _alibi():
    scores = _normal(B, N, 6, 6)

    def reference(x):
        # keras-hub's rule: slope * (j - (S - 1)) on key j, every query;
        # slopes 2 ** (-8 h / N) for heads h = 1..N.
        s = x.shape[3]
        slopes = 2.0 ** (-8.0 * np.arange(1, N + 1) / N)
        bias = slopes[:, None] * (np.arange(s) - (s - 1))[None]  # (N, S)
        return x + bias[None, :, None, :]

    return Case(L.AlibiBias(), scores, (2, 3), reference)


def _rnn_attention(cls, **kwargs):
    query, memory = _normal(B, 5), _normal(B, 6, 5)
    data = {"query": query, "memory": memory}
    axes = {"memory": (1,)}
    if "Monotonic" in cls.__name__ or cls is L.LocationSensitiveAttention:
        previous = np.zeros((B, 6), "float32")
        previous[:, 0] = 1.0
        data["previous_alignments"] = previous
        axes["previous_alignments"] = (1,)
    return Case(cls(**kwargs), data, axes)


def _bahdanau():
    case = _rnn_attention(L.BahdanauAttention, units=4)
    layer = case.layer

    def reference(data):
        w = {v.path.split("/", 1)[1]: _np(v) for v in layer.weights}
        q, m = data["query"], data["memory"]
        keys = m @ w["memory_dense/kernel"]  # (B, S, U)
        hidden = np.tanh((q @ w["query_dense/kernel"])[:, None] + keys)
        weights = _softmax(hidden @ w["attention_v"])  # (B, S)
        return np.einsum("bs,bsd->bd", weights, m)

    case.reference = reference
    return case


def _mha():
    layer = L.MultiHeadAttention(num_heads=N, key_dim=4)
    data = {"query": _normal(B, 6, D), "value": _normal(B, 6, D)}
    case = Case(layer, data, {"query": (1,), "value": (1,)})
    keras_mha = keras.layers.MultiHeadAttention(num_heads=N, key_dim=4)
    keras_mha(data["query"], data["value"])
    keras_mha.set_weights(layer.get_weights())
    case.reference = lambda d: keras_mha(d["query"], d["value"])
    return case


def _position_embedding():
    layer = L.PositionEmbedding(sequence_length=8)
    case = Case(layer, _normal(B, 6, D), (1,))
    case.reference = lambda x: np.broadcast_to(
        _w(layer)[0][: x.shape[1]], x.shape
    )
    return case


def _relative_position_bias():
    layer = L.RelativePositionBias(num_heads=N, num_buckets=8, max_distance=6)
    data = {"query": _normal(B, 6, D), "key": _normal(B, 5, D)}
    case = Case(layer, data, {"query": (1,), "key": (1,)})

    def reference(d):
        t, s = d["query"].shape[1], d["key"].shape[1]
        buckets = ref.t5_buckets(t, s, True, num_buckets=8, max_distance=6)
        # (T, S, N) -> (1, N, T, S)
        return np.transpose(_w(layer)[0][buckets], (2, 0, 1))[None]

    case.reference = reference
    return case


def _rotary():
    case = Case(L.RotaryEmbedding(), _normal(B, 6, N, 4), (1,))
    case.reference = ref.rotary
    return case


def _rotary_2d():
    # Square grids after one prefix token: 1 + 2x2, 1 + 3x3, 1 + 4x4.
    return Case(
        L.RotaryEmbedding2D(num_prefix_tokens=1),
        _normal(B, 17, D),
        (1,),
        lengths=(10, 5, 17),
    )


def _sine():
    def reference(x):
        t, d = x.shape[1:]
        # keras-hub's encoding: sin on even features, cos on odd ones,
        # frequency 1 / 10000 ** (2 * (i // 2) / d).
        i = np.arange(d)
        angles = np.arange(t)[:, None] / 10000.0 ** (2 * (i // 2) / d)
        table = np.where(i % 2 == 0, np.sin(angles), np.cos(angles))
        return np.broadcast_to(table, x.shape)

    return Case(L.SinePositionEncoding(), _normal(B, 6, D), (1,), reference)


def _token_and_position():
    layer = L.TokenAndPositionEmbedding(VOCAB, 8, D)
    case = Case(layer, _ids(B, 6), (1,))

    def reference(ids):
        tokens, positions = _w(layer)
        return tokens[ids] + positions[: ids.shape[1]]

    case.reference = reference
    return case


def _tokenizer():
    tokenizer = L.Tokenizer(vocabulary=list("abcdefg"))
    return Case(tokenizer, _ids(B, 6), (1,), lambda ids: ids)


def _attention_rnn():
    layer = L.AttentionRNN(
        keras.layers.LSTMCell(6), L.LuongAttention(score_mode="general")
    )
    data = {"inputs": _normal(B, 6, 4), "memory": _normal(B, 5, 6)}
    return Case(layer, data, {"inputs": (1,), "memory": (1,)})


def _attention_rnn_cell():
    # The memory's length is fixed when it is set up; the free axis is the
    # length of the sequence the RNN runs over.
    cell = L.AttentionRNNCell(
        keras.layers.LSTMCell(6), L.LuongAttention(score_mode="general")
    )
    cell.setup_memory(_normal(B, 5, 6))
    layer = keras.layers.RNN(cell, return_sequences=True)
    return Case(layer, _normal(B, 6, 4), (1,))


def _feed_forward():
    layer = L.FeedForward(intermediate_dim=16)

    def reference(x):
        k1, b1, k2, b2 = _w(layer)
        return np.maximum(x @ k1 + b1, 0) @ k2 + b2

    return Case(layer, _normal(B, 6, D), (1,), reference)


def _encoder():
    layer = L.TransformerEncoder(intermediate_dim=16, num_heads=N)
    case = Case(layer, _normal(B, 6, D), (1,))
    case.reference = lambda x: ref.block(x, layer.get_weights(), N)
    return case


def _decoder():
    layer = L.TransformerDecoder(intermediate_dim=16, num_heads=N)
    data = {
        "decoder_sequence": _normal(B, 6, D),
        "encoder_sequence": _normal(B, 5, D),
    }
    axes = {"decoder_sequence": (1,), "encoder_sequence": (1,)}
    case = Case(layer, data, axes)
    case.reference = lambda d: ref.block(
        d["decoder_sequence"],
        layer.get_weights(),
        N,
        memory=d["encoder_sequence"],
        causal=True,
        decoder_order=True,
    )
    return case


def _patch_embedding():
    # Without positions any image size that the patch size divides.
    layer = L.PatchEmbedding(patch_size=2, hidden_dim=4, position=None)
    case = Case(layer, _normal(B, 6, 6, 3), (1, 2), lengths=(6, 2, 4))

    def reference(x):
        kernel, bias = _w(layer)  # (2, 2, 3, 4), (4,)
        b, h, w, c = x.shape
        # (B, H, W, C) -> (B, H/2, 2, W/2, 2, C) -> (B, H/2 * W/2, 2*2*C)
        patches = x.reshape(b, h // 2, 2, w // 2, 2, c)
        patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, 4 * c)
        return patches @ kernel.reshape(4 * c, 4) + bias

    case.reference = reference
    return case


def _lm():
    model = M.TransformerLM(
        vocabulary_size=VOCAB,
        max_sequence_length=8,
        num_layers=1,
        num_heads=N,
        hidden_dim=D,
        intermediate_dim=16,
    )
    return Case(
        model,
        {"token_ids": _ids(B, 6)},
        {"token_ids": (1,)},
        call=lambda d: model(d["token_ids"]),
    )


def _transformer():
    model = M.Transformer(
        vocabulary_size=VOCAB,
        max_sequence_length=8,
        num_layers=1,
        num_heads=N,
        hidden_dim=D,
        intermediate_dim=16,
    )
    data = {"encoder_token_ids": _ids(B, 6), "token_ids": _ids(B, 6)}
    axes = {"encoder_token_ids": (1,), "token_ids": (1,)}
    return Case(model, data, axes, call=model)


def _rnn_seq2seq():
    model = M.RNNSeq2Seq(vocabulary_size=VOCAB, embedding_dim=4, hidden_dim=6)
    data = {"encoder_token_ids": _ids(B, 6), "token_ids": _ids(B, 6)}
    axes = {"encoder_token_ids": (1,), "token_ids": (1,)}
    return Case(
        model,
        data,
        axes,
        call=lambda d: model((d["encoder_token_ids"], d["token_ids"])),
    )


def _vit():
    model = M.VisionTransformer(
        image_size=4,
        patch_size=2,
        num_layers=1,
        num_heads=N,
        hidden_dim=D,
        intermediate_dim=16,
        num_classes=3,
        num_channels=1,
    )
    # The batch is the free axis (positions are learned per patch).
    return Case(model, _normal(3, 4, 4, 1), (0,), lengths=(3, 1, 2))


CASES = {
    "AlibiBias": _alibi,
    "AttentionRNN": _attention_rnn,
    "AttentionRNNCell": _attention_rnn_cell,
    "BahdanauAttention": _bahdanau,
    "BahdanauMonotonicAttention": lambda: _rnn_attention(
        L.BahdanauMonotonicAttention, units=4
    ),
    "FeedForward": _feed_forward,
    "LocationSensitiveAttention": lambda: _rnn_attention(
        L.LocationSensitiveAttention, units=4
    ),
    "LuongAttention": lambda: _rnn_attention(L.LuongAttention),
    "LuongMonotonicAttention": lambda: _rnn_attention(
        L.LuongMonotonicAttention
    ),
    "MultiHeadAttention": _mha,
    "PatchEmbedding": _patch_embedding,
    "PositionEmbedding": _position_embedding,
    "RelativePositionBias": _relative_position_bias,
    "RotaryEmbedding": _rotary,
    "RotaryEmbedding2D": _rotary_2d,
    "SinePositionEncoding": _sine,
    "TokenAndPositionEmbedding": _token_and_position,
    "Tokenizer": _tokenizer,
    "TransformerDecoder": _decoder,
    "TransformerEncoder": _encoder,
    "RNNSeq2Seq": _rnn_seq2seq,
    "Transformer": _transformer,
    "TransformerLM": _lm,
    "VisionTransformer": _vit,
}


def _public_classes():
    names = set()
    for package in (keras_attn.layers, keras_attn.models):
        for name in dir(package):
            if not name.startswith("_") and isinstance(
                getattr(package, name), type
            ):
                names.add(name)
    return names


def test_every_public_class_has_a_case():
    assert _public_classes() == set(CASES)


def _flat(outputs):
    return [_np(x) for x in keras.tree.flatten(outputs)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_three_lengths_compiled(name):
    case = CASES[name]()
    model = case.functional()
    for n in case.lengths:
        data = case.at(n)
        got = _flat(model.predict_on_batch(data))
        expected = case.reference or case.call
        want = _flat(expected(data))
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            np.testing.assert_allclose(
                g, w, atol=1e-4, rtol=1e-4, err_msg=f"{name} at length {n}"
            )
        if name == "TransformerLM":
            # Causal: the output at length n is the prefix of the output
            # at the longest length (another compiled shape).
            full = _np(model.predict_on_batch(case.data))
            np.testing.assert_allclose(got[0], full[:, :n], atol=1e-5)


# -- generation with prompts whose length changes between calls ----------------

MAX_LENGTH = 6


def _unit_weights(model):
    # Unit-scale weights: the initial ones give near-constant logits, so
    # greedy decoding would repeat one token and miss position bugs.
    rng = np.random.default_rng(1)
    model.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in model.weights]
    )


def _greedy_reference(case, prompt, source):
    """Greedy decoding written out over the model's full forward pass.

    The decoders are causal, so the logits of position `i - 1` computed on
    the whole `(B, MAX_LENGTH)` buffer (zeros after `i`) are those of the
    prefix: one compiled shape serves every step.
    """
    model = case.functional()
    tokens = np.zeros((B, MAX_LENGTH), "int32")
    tokens[:, : prompt.shape[1]] = prompt
    for i in range(prompt.shape[1], MAX_LENGTH):
        data = {"token_ids": tokens}
        if source is not None:
            data["encoder_token_ids"] = source
        logits = _np(model.predict_on_batch(data))  # (B, L, V)
        tokens[:, i] = logits[:, i - 1].argmax(-1)
    return tokens


@pytest.mark.parametrize("name", ["TransformerLM", "Transformer", "RNNSeq2Seq"])
def test_generate_with_changing_prompt_lengths(name):
    case = CASES[name]()
    model = case.layer
    _unit_weights(model)
    source = None if name == "TransformerLM" else _ids(B, 4, low=1)

    def inputs(prompt):
        if source is None:
            return prompt
        return {"encoder_token_ids": source, "token_ids": prompt}

    for length in (3, 1, 2):
        prompt = _ids(B, length, low=1)
        want = _greedy_reference(case, prompt, source)
        got = model.generate(inputs(prompt), max_length=MAX_LENGTH)
        np.testing.assert_array_equal(_np(got), want, err_msg=f"{length}")
    # Uncached (re-running the prefix) and the eager loop (a stream
    # callback makes it a Python loop), at the last prompt length.
    if name != "RNNSeq2Seq":  # the RNN always steps on its state
        uncached = model.generate(
            inputs(prompt), max_length=MAX_LENGTH, use_cache=False
        )
        np.testing.assert_array_equal(_np(uncached), want)
    streamed = []
    eager = model.generate(
        inputs(prompt),
        max_length=MAX_LENGTH,
        stream=lambda token, index: streamed.append(index),
    )
    np.testing.assert_array_equal(_np(eager), want)
    # The RNN has no cache to prefill: its loop steps over the prompt
    # from position 1 (keeping the prompt's tokens).
    first = 1 if name == "RNNSeq2Seq" else length
    assert streamed == list(range(first, MAX_LENGTH))


class _CompileCounter(logging.Handler):
    """Counts JAX's "Compiling <name>" log records (`jax_log_compiles`)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split()[1])


@pytest.mark.skipif(BACKEND != "jax", reason="counts JAX compilations")
def test_generate_reuses_its_compiled_loop_on_jax():
    import jax

    model = CASES["TransformerLM"]().layer

    def compiled_names(prompt):
        counter = _CompileCounter()
        logger = logging.getLogger("jax")
        logger.addHandler(counter)
        level = logger.level
        logger.setLevel(logging.DEBUG)
        jax.config.update("jax_log_compiles", True)
        try:
            model.generate(prompt, max_length=MAX_LENGTH)
        finally:
            jax.config.update("jax_log_compiles", False)
            logger.setLevel(level)
            logger.removeHandler(counter)
        return counter.names

    prompt = _ids(B, 2, low=1)
    # A prompt length not seen before compiles (the counter sees it)...
    assert compiled_names(prompt)
    # ...and the same shapes again, with other tokens, compile nothing.
    again = compiled_names((prompt + 1) % VOCAB)
    assert not again, f"the same call compiled again: {again}"
