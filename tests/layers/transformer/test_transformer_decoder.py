"""Tests of `keras_attn.layers.TransformerDecoder`.

References: `keras_hub.layers.TransformerDecoder` (weight transfer, cached
decoding), `torch.nn.TransformerDecoderLayer` (run on CPU as an oracle on
every backend) and the NumPy block of `_reference.py`.
"""

import keras
import keras_hub
import numpy as np
import pytest
import torch
from keras import ops

from keras_attn.layers import TokenAndPositionEmbedding
from keras_attn.layers import TransformerDecoder
from tests.conformance import BadInput
from tests.conformance import check_unknown_length
from tests.conformance import run_layer_test
from tests.layers.transformer import _reference

ATOL = 1e-5


def _np(x):
    return ops.convert_to_numpy(x)


def _randomize(layer, rng):
    layer.set_weights(
        [
            rng.standard_normal(w.shape).astype("float32") * 0.5
            for w in layer.weights
        ]
    )


def _padding(lengths, t):
    return np.arange(t)[None, :] < np.asarray(lengths)[:, None]


def test_conformance(rng):
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    memory = rng.standard_normal((2, 4, 8)).astype("float32")
    run_layer_test(
        TransformerDecoder,
        {"intermediate_dim": 16, "num_heads": 2},
        {
            "decoder_sequence": x,
            "encoder_sequence": memory,
            "encoder_padding_mask": _padding([4, 2], 4),
        },
        expected_output_shape=(2, 5, 8),
        # Decoder and encoder lengths unknown (cut to 4, 3, 2 together).
        sequence_axes={
            "decoder_sequence": (1,),
            "encoder_sequence": (1,),
            "encoder_padding_mask": (1,),
        },
        bad_inputs=[
            BadInput("intermediate_dim=0", init_kwargs={"intermediate_dim": 0}),
            BadInput("sliding_window=0", init_kwargs={"sliding_window": 0}),
            BadInput(
                "attention_dropout=-0.1",
                init_kwargs={"attention_dropout": -0.1},
            ),
            BadInput(
                "decoder_sequence.shape",
                input_data={"decoder_sequence": x[0], "encoder_sequence": x},
            ),
            BadInput(
                "encoder_padding_mask.shape",
                input_data={
                    "decoder_sequence": x,
                    "encoder_sequence": memory,
                    "encoder_padding_mask": _padding([4, 2], 5),
                },
            ),
            BadInput(
                "decoder_attention_mask.shape",
                input_data={"decoder_sequence": x, "encoder_sequence": memory},
                call_kwargs={"decoder_attention_mask": np.ones((2, 5), bool)},
            ),
        ],
    )


def test_conformance_decoder_only_extras(rng):
    run_layer_test(
        TransformerDecoder,
        {
            "intermediate_dim": 16,
            "num_heads": 4,
            "num_key_value_heads": 2,
            "gated": True,
            "activation": "silu",
            "norm": "rms_norm",
            "position": "rotary",
            "normalize_first": True,
        },
        rng.standard_normal((2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        run_mixed_precision=False,  # covered by the conformance test above
    )


@pytest.mark.parametrize("position", [None, "rotary", "alibi", "relative"])
def test_unknown_length(rng, position):
    # Defect 5: ALiBi needed Python-int lengths, so on TensorFlow `predict`
    # of a model on keras.Input((None, D)) failed at its second length.
    layer = TransformerDecoder(16, 2, position=position)
    x = rng.standard_normal((2, 6, 8)).astype("float32")
    layer(x)
    check_unknown_length(layer, x, lengths=(6, 4, 3))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_same_initial_weights_as_keras_hub(rng, dropout):
    # Defect 9: keras-hub's positional order, and with the same global seed
    # the same initial weights (initializers cloned as often, in the same
    # order, as keras-hub's block and the Keras attention inside it).
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    memory = rng.standard_normal((2, 4, 8)).astype("float32")
    weights = {}
    for key, layer_cls in (
        ("hub", keras_hub.layers.TransformerDecoder),
        ("ours", TransformerDecoder),
    ):
        keras.utils.set_random_seed(7)
        layer = layer_cls(16, 2, dropout, "gelu", 1e-6)
        assert layer.dropout == dropout and layer.layer_norm_epsilon == 1e-6
        layer.build(x.shape, memory.shape)
        weights[key] = [_np(w) for w in layer.weights]
    assert len(weights["ours"]) == len(weights["hub"])
    for ours, hub in zip(weights["ours"], weights["hub"]):
        np.testing.assert_array_equal(ours, hub)


@pytest.mark.parametrize("normalize_first", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_matches_keras_hub(rng, normalize_first, cross):
    ours = TransformerDecoder(32, 4, normalize_first=normalize_first)
    hub = keras_hub.layers.TransformerDecoder(
        32, 4, normalize_first=normalize_first
    )
    x = rng.standard_normal((3, 7, 16)).astype("float32")
    memory = (
        rng.standard_normal((3, 5, 16)).astype("float32") if cross else None
    )
    hub(x, memory)
    ours(x, memory)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in hub.weights
    ]
    assert len(ours.weights) == (26 if cross else 16)
    _randomize(hub, rng)
    ours.set_weights(hub.get_weights())
    attention = rng.random((3, 7, 7)) > 0.3
    attention[:, np.arange(7), np.arange(7)] = True
    cases = [
        {},
        {"decoder_padding_mask": _padding([7, 5, 6], 7)},
        {"decoder_attention_mask": attention, "use_causal_mask": False},
        {"decoder_attention_mask": attention},
    ]
    if cross:
        cross_attention = rng.random((3, 7, 5)) > 0.3
        cross_attention[:, :, 0] = True
        cases += [
            {"encoder_padding_mask": _padding([5, 2, 4], 5)},
            {
                "encoder_padding_mask": _padding([5, 2, 4], 5),
                "encoder_attention_mask": cross_attention,
            },
        ]
    for kwargs in cases:
        np.testing.assert_allclose(
            _np(ours(x, memory, **kwargs)),
            _np(hub(x, memory, **kwargs)),
            atol=ATOL,
            err_msg=str(list(kwargs)),
        )


@pytest.mark.parametrize("cross", [False, True])
def test_cached_decoding_matches_keras_hub(rng, cross):
    ours = TransformerDecoder(16, 2, normalize_first=True)
    hub = keras_hub.layers.TransformerDecoder(16, 2, normalize_first=True)
    x = rng.standard_normal((2, 6, 8)).astype("float32")
    memory = rng.standard_normal((2, 4, 8)).astype("float32") if cross else None
    hub(x, memory)
    ours(x, memory)
    _randomize(hub, rng)
    ours.set_weights(hub.get_weights())
    caches = {}
    for name, layer in (("ours", ours), ("hub", hub)):
        self_cache = np.zeros((2, 2, 6, 2, 4), "float32")
        cross_cache = np.zeros((2, 2, 4, 2, 4), "float32") if cross else None
        steps = []
        for i in range(6):
            kwargs = {}
            if cross:
                kwargs = {
                    "cross_attention_cache": cross_cache,
                    "cross_attention_cache_update_index": 0 if i == 0 else None,
                }
            outputs = layer(
                x[:, i : i + 1],
                memory,
                self_attention_cache=self_cache,
                self_attention_cache_update_index=i,
                **kwargs,
            )
            steps.append(_np(outputs[0]))
            self_cache = outputs[1]
            if cross:
                cross_cache = outputs[2]
        caches[name] = (np.concatenate(steps, 1), _np(self_cache))
    np.testing.assert_allclose(caches["ours"][0], caches["hub"][0], atol=ATOL)
    np.testing.assert_allclose(caches["ours"][1], caches["hub"][1], atol=ATOL)
    # And the steps equal the uncached full-sequence call.
    np.testing.assert_allclose(
        caches["ours"][0], _np(hub(x, memory)), atol=1e-4
    )


@pytest.mark.parametrize("num_layers", [1, 2])
def test_cached_decoding_with_keras_mask(rng, num_layers):
    # Defect 8: a Keras mask from TokenAndPositionEmbedding(mask_zero=True)
    # broke cached decoding (the inner attention got a (B, 1) value mask).
    # Stepping one token at a time through the caches equals the full causal
    # pass, on the real (right-padded) tokens; with two blocks, a model.
    embedding = TokenAndPositionEmbedding(20, 8, 8, mask_zero=True)
    blocks = [TransformerDecoder(16, 2) for _ in range(num_layers)]
    ids = rng.integers(1, 20, (2, 8)).astype("int32")
    ids[1, 5:] = 0  # padding at the end of row 1

    def full(ids):
        x = embedding(ids)
        for block in blocks:
            x = block(x)
        return _np(x)

    expected = full(ids)
    caches = [np.zeros((2, 2, 8, 2, 4), "float32") for _ in blocks]
    steps = []
    for i in range(8):
        x = embedding(ids[:, i : i + 1], start_index=i)
        for k, block in enumerate(blocks):
            x, caches[k] = block(
                x,
                self_attention_cache=caches[k],
                self_attention_cache_update_index=i,
            )
        steps.append(_np(x))
    steps = np.concatenate(steps, axis=1)
    real = ids != 0
    np.testing.assert_allclose(steps[real], expected[real], atol=1e-4)


def _torch_attention(p, prefix, num_heads):
    d = p[f"{prefix}.out_proj.weight"].shape[0]
    h = d // num_heads
    w_in, b_in = p[f"{prefix}.in_proj_weight"], p[f"{prefix}.in_proj_bias"]
    weights = []
    for i in range(3):  # query, key, value
        weights += [
            w_in[i * d : (i + 1) * d].T.reshape(d, num_heads, h),
            b_in[i * d : (i + 1) * d].reshape(num_heads, h),
        ]
    return weights + [
        p[f"{prefix}.out_proj.weight"].T.reshape(num_heads, h, d),
        p[f"{prefix}.out_proj.bias"],
    ]


@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_torch(rng, norm_first):
    torch.manual_seed(0)
    reference = torch.nn.TransformerDecoderLayer(
        d_model=16,
        nhead=4,
        dim_feedforward=24,
        dropout=0.0,
        activation="relu",
        batch_first=True,
        norm_first=norm_first,
    ).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.copy_(torch.randn_like(param) * 0.5)
    p = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    weights = (
        _torch_attention(p, "self_attn", 4)
        + [p["norm1.weight"], p["norm1.bias"]]
        + _torch_attention(p, "multihead_attn", 4)
        + [p["norm2.weight"], p["norm2.bias"]]
        + [p["linear1.weight"].T, p["linear1.bias"]]
        + [p["linear2.weight"].T, p["linear2.bias"]]
        + [p["norm3.weight"], p["norm3.bias"]]
    )
    ours = TransformerDecoder(24, 4, normalize_first=norm_first)
    x = rng.standard_normal((2, 6, 16)).astype("float32")
    memory = rng.standard_normal((2, 5, 16)).astype("float32")
    ours.build(x.shape, memory.shape)
    ours.set_weights(weights)
    memory_padding = _padding([5, 3], 5)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(x),
            torch.from_numpy(memory),
            tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(6),
            memory_key_padding_mask=torch.from_numpy(~memory_padding),
        ).numpy()
    actual = ours(x, memory, encoder_padding_mask=memory_padding)
    np.testing.assert_allclose(_np(actual), expected, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        {"num_key_value_heads": 2, "norm": "rms_norm"},
        {"gated": True, "activation": "silu", "position": "rotary"},
        {"position": "alibi", "normalize_first": True},
        {"position": "relative", "num_key_value_heads": 1},
        {"sliding_window": 3, "normalize_first": True, "gated": True},
    ],
)
def test_options_match_numpy(rng, options):
    layer = TransformerDecoder(12, 4, **options)
    x = rng.standard_normal((2, 6, 16)).astype("float32")
    memory = rng.standard_normal((2, 3, 16)).astype("float32")
    layer.build(x.shape, memory.shape)
    _randomize(layer, rng)
    expected = _reference.block(
        x,
        layer.get_weights(),
        4,
        memory=memory,
        causal=True,
        decoder_order=True,
        **options,
    )
    np.testing.assert_allclose(
        _np(layer(x, memory)), expected, atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("position", [None, "rotary", "alibi", "relative"])
def test_causality_and_cache(rng, position):
    layer = TransformerDecoder(
        16, 4, num_key_value_heads=2, position=position, sliding_window=4
    )
    x = rng.standard_normal((2, 7, 8)).astype("float32")
    out = _np(layer(x))
    changed = x.copy()
    changed[:, 4:] = rng.standard_normal((2, 3, 8))
    out_changed = _np(layer(changed))
    np.testing.assert_allclose(out_changed[:, :4], out[:, :4], atol=ATOL)
    assert not np.allclose(out_changed[:, 4:], out[:, 4:])
    # Without the causal mask the future leaks in (the test can fail).
    assert not np.allclose(
        _np(layer(changed, use_causal_mask=False))[:, :4],
        _np(layer(x, use_causal_mask=False))[:, :4],
    )
    # One token at a time through the cache gives the same outputs.
    cache = np.zeros((2, 2, 7, 2, 2), "float32")
    steps = []
    for i in range(7):
        step, cache = layer(
            x[:, i : i + 1],
            self_attention_cache=cache,
            self_attention_cache_update_index=i,
        )
        steps.append(_np(step))
    np.testing.assert_allclose(np.concatenate(steps, 1), out, atol=1e-4)


def test_decoder_only_has_no_cross_attention(rng):
    layer = TransformerDecoder(16, 2)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    layer(x)
    assert len(layer.weights) == 16
    assert not any("cross" in w.path for w in layer.weights)
    with pytest.raises(ValueError, match="encoder_sequence"):
        layer(x, x)
    with_cross = TransformerDecoder(16, 2)
    with_cross(x, x)
    with pytest.raises(ValueError, match="encoder_sequence"):
        with_cross(x)
    with pytest.raises(ValueError, match="cross_attention_cache"):
        with_cross(
            x[:, :1],
            x,
            self_attention_cache=np.zeros((2, 2, 5, 2, 4), "float32"),
            self_attention_cache_update_index=0,
        )


def test_from_keras_hub_config(rng):
    hub = keras_hub.layers.TransformerDecoder(16, 2, normalize_first=True)
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    memory = rng.standard_normal((2, 3, 8)).astype("float32")
    hub(x, memory)
    ours = TransformerDecoder.from_config(hub.get_config())
    assert ours.built and ours.normalize_first
    ours.set_weights(hub.get_weights())
    np.testing.assert_allclose(
        _np(ours(x, memory)), _np(hub(x, memory)), atol=ATOL
    )
