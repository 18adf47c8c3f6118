"""Property-based tests of the layers and models (hypothesis).

Random inputs (batch 1 and 2, every length from 1 to the maximum, random
token ids and padding) to one small instance per model, so that JAX
compiles a bounded number of shapes:

- outputs are finite;
- causality: a decoder's outputs at positions `< i` do not change when
  the tokens from `i` on change (checked against the model itself at two
  inputs, a property no bug of masks or caches keeps);
- padding: one more padding token at the end of the source changes
  nothing;
- batch independence: a row's output does not depend on the other rows;
- `MultiHeadAttention`'s three implementations agree, masks with rows
  that attend nothing included;
- random invalid token ids (out of the vocabulary, negative, float) raise
  a `ValueError` naming the argument, in eager calls.
"""

import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.models import RNNSeq2Seq
from keras_attn.models import Transformer
from keras_attn.models import TransformerLM
from keras_attn.models import VisionTransformer

VOCAB = 13
MAX_LEN = 6


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


@functools.cache
def _models():
    common = dict(
        vocabulary_size=VOCAB, max_sequence_length=MAX_LEN, num_layers=1
    )
    models = {
        "lm": TransformerLM(
            **common, num_heads=4, hidden_dim=16, num_key_value_heads=2
        ),
        "lm_rotary": TransformerLM(
            **common, num_heads=2, hidden_dim=8, position="rotary"
        ),
        "transformer": Transformer(
            **common, num_heads=2, hidden_dim=8, padding_token=0
        ),
        "rnn": RNNSeq2Seq(
            vocabulary_size=VOCAB,
            embedding_dim=4,
            hidden_dim=6,
            padding_token=0,
        ),
    }
    rng = np.random.default_rng(0)
    ids = np.ones((1, 2), "int32")
    for name, model in models.items():
        if name.startswith("lm"):
            model(ids)
        elif name == "transformer":
            model({"encoder_token_ids": ids, "token_ids": ids})
        else:
            model((ids, ids))
        # Unit-scale weights: the initial ones give near-constant outputs.
        model.set_weights(
            [
                rng.standard_normal(w.shape).astype("float32")
                for w in model.weights
            ]
        )
    return models


def _call(name, source, target, compiled=False):
    """The model's logits; `compiled` runs them as one program (on JAX
    an eager call compiles each op at each new shape, several times the
    cost), otherwise an eager call (where input checks raise)."""
    model = _models()[name]
    if name.startswith("lm"):
        inputs = target
    elif name == "transformer":
        inputs = {"encoder_token_ids": source, "token_ids": target}
    else:
        # A list, not a tuple: `predict` would read a pair as (x, y).
        inputs = [source, target]
    if compiled:
        return _np(model.predict(inputs, verbose=0))
    return _np(model(inputs))


@st.composite
def token_case(draw):
    batch = draw(st.sampled_from((1, 2)))
    length = draw(st.integers(1, MAX_LEN))
    src_len = draw(st.sampled_from((1, 4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    target = rng.integers(0, VOCAB, (batch, length)).astype("int32")
    source = rng.integers(1, VOCAB, (batch, src_len)).astype("int32")
    cut = draw(st.integers(0, length - 1))
    return source, target, cut, rng


@pytest.mark.parametrize("name", ["lm", "lm_rotary", "transformer", "rnn"])
@given(case=token_case())
def test_finite_causal_padding_and_batch_independent(name, case):
    source, target, cut, rng = case
    run = functools.partial(_call, name, compiled=True)
    out = run(source, target)
    assert out.shape == target.shape + (VOCAB,)
    assert np.all(np.isfinite(out))
    # Causality: new tokens from `cut` on leave the outputs before it.
    changed = target.copy()
    changed[:, cut:] = rng.integers(0, VOCAB, changed[:, cut:].shape)
    np.testing.assert_allclose(
        run(source, changed)[:, :cut], out[:, :cut], atol=1e-4
    )
    # Padding the source (the padding token, 0) changes nothing.
    if name in ("transformer", "rnn"):
        padded = np.pad(source, [(0, 0), (0, 1)])
        np.testing.assert_allclose(run(padded, target), out, atol=1e-4)
    # Batch independence: row 0 alone gives row 0's output.
    if len(target) > 1:
        np.testing.assert_allclose(
            run(source[:1], target[:1]), out[:1], atol=1e-4
        )


@st.composite
def bad_ids(draw):
    kind = draw(st.sampled_from(("too_big", "negative", "float")))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ids = rng.integers(0, VOCAB, (draw(st.sampled_from((1, 2))), 3))
    position = tuple(rng.integers(0, s) for s in ids.shape)
    if kind == "too_big":
        ids[position] = VOCAB + draw(st.integers(0, 1000))
    elif kind == "negative":
        ids[position] = -draw(st.integers(1, 1000))
    else:
        ids = ids.astype("float32")
    return ids.astype("float32" if kind == "float" else "int32")


@pytest.mark.parametrize("name", ["lm", "transformer", "rnn"])
@pytest.mark.parametrize("argument", ["encoder_token_ids", "token_ids"])
@given(ids=bad_ids())
def test_bad_token_ids_name_the_argument(name, argument, ids):
    if name == "lm" and argument == "encoder_token_ids":
        return
    good = np.ones_like(ids, dtype="int32")
    source, target = (
        (ids, good) if argument == "encoder_token_ids" else (good, ids)
    )
    with pytest.raises((ValueError, TypeError), match=f"`{argument}`"):
        _call(name, source, target)


@functools.cache
def _vit():
    model = VisionTransformer(
        image_size=8,
        patch_size=4,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        num_classes=3,
        num_channels=1,
    )
    model(np.zeros((1, 8, 8, 1), "float32"))
    return model


@given(
    batch=st.sampled_from((1, 3)),
    scale=st.sampled_from((1.0, 1e3, 1e-3)),
    seed=st.integers(0, 2**16),
)
def test_vision_transformer_finite_and_batch_independent(batch, scale, seed):
    images = np.random.default_rng(seed).normal(size=(batch, 8, 8, 1)) * scale
    images = images.astype("float32")
    out = _np(_vit()(images))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(_np(_vit()(images[-1:])), out[-1:], atol=1e-4)


@st.composite
def mha_case(draw):
    batch = draw(st.sampled_from((1, 2)))
    q_len = draw(st.sampled_from((1, 3)))
    k_len = draw(st.sampled_from((1, 4)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    mask = rng.random((batch, q_len, k_len)) > 0.4
    mask[0, -1] = False  # the last query of row 0 attends nothing
    return (
        rng.normal(size=(batch, q_len, 8)).astype("float32"),
        rng.normal(size=(batch, k_len, 8)).astype("float32"),
        mask,
        draw(st.booleans()),
    )


@functools.cache
def _mha_layers():
    layers = {}
    for implementation in ("reference", "fused", "chunked"):
        layers[implementation] = MultiHeadAttention(
            num_heads=4,
            key_dim=4,
            num_key_value_heads=2,
            implementation=implementation,
        )
        layers[implementation].build((None, None, 8), (None, None, 8))
    weights = layers["reference"].get_weights()
    rng = np.random.default_rng(1)
    weights = [rng.standard_normal(w.shape).astype("float32") for w in weights]
    for layer in layers.values():
        layer.set_weights(weights)
    return layers


@given(case=mha_case())
def test_multi_head_attention_implementations_agree(case):
    query, value, mask, causal = case
    outputs = {
        name: _np(
            layer(query, value, attention_mask=mask, use_causal_mask=causal)
        )
        for name, layer in _mha_layers().items()
    }
    for name, out in outputs.items():
        assert np.all(np.isfinite(out)), name
        np.testing.assert_allclose(
            out, outputs["reference"], atol=1e-4, err_msg=name
        )
