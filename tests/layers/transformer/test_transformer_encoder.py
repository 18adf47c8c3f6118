"""Tests of `keras_attn.layers.TransformerEncoder`.

References: `keras_hub.layers.TransformerEncoder` (weight transfer),
`torch.nn.TransformerEncoderLayer` (run on CPU as an oracle on every
backend) and the NumPy block of `_reference.py`.
"""

import keras
import keras_hub
import numpy as np
import pytest
import torch
from keras import ops

from keras_attn.layers import TransformerEncoder
from tests.conformance import BadInput
from tests.conformance import check_unknown_length
from tests.conformance import run_layer_test
from tests.layers.transformer import _reference

ATOL = 1e-5


def _np(x):
    return ops.convert_to_numpy(x)


def _randomize(layer, rng):
    # Random norms and biases too, so that a misplaced one would show.
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
    run_layer_test(
        TransformerEncoder,
        {"intermediate_dim": 16, "num_heads": 2},
        {"inputs": x, "padding_mask": _padding([5, 3], 5)},
        expected_output_shape=(2, 5, 8),
        sequence_axes={"inputs": (1,), "padding_mask": (1,)},
        bad_inputs=[
            BadInput("intermediate_dim=0", init_kwargs={"intermediate_dim": 0}),
            BadInput("num_heads=-2", init_kwargs={"num_heads": -2}),
            BadInput("dropout=2", init_kwargs={"dropout": 2}),
            BadInput("norm='batch'", init_kwargs={"norm": "batch"}),
            BadInput("position='learned'", init_kwargs={"position": "learned"}),
            BadInput(
                "num_key_value_heads=3",
                init_kwargs={"num_key_value_heads": 3},
            ),
            BadInput(
                "inputs.shape",
                input_data={"inputs": x[0], "padding_mask": None},
            ),
            BadInput(
                "padding_mask.shape",
                input_data={"inputs": x, "padding_mask": _padding([5], 4)},
            ),
            BadInput(
                "attention_mask.shape",
                input_data={"inputs": x},
                call_kwargs={"attention_mask": np.ones((2, 5), bool)},
            ),
        ],
    )


def test_conformance_extras(rng):
    run_layer_test(
        TransformerEncoder,
        {
            "intermediate_dim": 16,
            "num_heads": 4,
            "num_key_value_heads": 2,
            "gated": True,
            "activation": "silu",
            "norm": "rms_norm",
            "position": "relative",
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
    layer = TransformerEncoder(16, 2, position=position)
    x = rng.standard_normal((2, 6, 8)).astype("float32")
    layer(x)
    check_unknown_length(layer, x, lengths=(6, 4, 3))


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_same_initial_weights_as_keras_hub(rng, dropout):
    # Defect 9: keras-hub's positional order, and with the same global seed
    # the same initial weights (initializers cloned as often, in the same
    # order, as keras-hub's block and the Keras attention inside it).
    x = rng.standard_normal((2, 5, 8)).astype("float32")
    weights = {}
    for key, layer_cls in (
        ("hub", keras_hub.layers.TransformerEncoder),
        ("ours", TransformerEncoder),
    ):
        keras.utils.set_random_seed(7)
        layer = layer_cls(16, 2, dropout, "gelu", 1e-6)
        assert layer.dropout == dropout and layer.layer_norm_epsilon == 1e-6
        layer.build(x.shape)
        weights[key] = [_np(w) for w in layer.weights]
    assert len(weights["ours"]) == len(weights["hub"])
    for ours, hub in zip(weights["ours"], weights["hub"]):
        np.testing.assert_array_equal(ours, hub)


@pytest.mark.parametrize("normalize_first", [False, True])
def test_matches_keras_hub(rng, normalize_first):
    ours = TransformerEncoder(32, 4, normalize_first=normalize_first)
    hub = keras_hub.layers.TransformerEncoder(
        32, 4, normalize_first=normalize_first
    )
    x = rng.standard_normal((3, 7, 16)).astype("float32")
    hub(x)
    ours(x)
    assert [tuple(w.shape) for w in ours.weights] == [
        tuple(w.shape) for w in hub.weights
    ]
    _randomize(hub, rng)
    ours.set_weights(hub.get_weights())
    padding = _padding([7, 4, 6], 7)
    attention = rng.random((3, 7, 7)) > 0.3
    attention[:, np.arange(7), np.arange(7)] = True  # no empty row
    for kwargs in (
        {},
        {"padding_mask": padding},
        {"attention_mask": attention},
        {"padding_mask": padding, "attention_mask": attention},
    ):
        np.testing.assert_allclose(
            _np(ours(x, **kwargs)), _np(hub(x, **kwargs)), atol=ATOL
        )
    out, scores = ours(x, padding_mask=padding, return_attention_scores=True)
    hub_out, hub_scores = hub(
        x, padding_mask=padding, return_attention_scores=True
    )
    np.testing.assert_allclose(_np(out), _np(hub_out), atol=ATOL)
    np.testing.assert_allclose(_np(scores), _np(hub_scores), atol=ATOL)


def _torch_to_ours(torch_layer, num_heads):
    """torch.nn.TransformerEncoderLayer weights in our variable order."""
    p = {k: v.detach().numpy() for k, v in torch_layer.state_dict().items()}
    d = p["self_attn.out_proj.weight"].shape[0]
    h = d // num_heads
    w_in, b_in = p["self_attn.in_proj_weight"], p["self_attn.in_proj_bias"]
    attention = []
    for i in range(3):  # query, key, value
        attention += [
            w_in[i * d : (i + 1) * d].T.reshape(d, num_heads, h),
            b_in[i * d : (i + 1) * d].reshape(num_heads, h),
        ]
    attention += [
        p["self_attn.out_proj.weight"].T.reshape(num_heads, h, d),
        p["self_attn.out_proj.bias"],
    ]
    return attention + [
        p["norm1.weight"],
        p["norm1.bias"],
        p["norm2.weight"],
        p["norm2.bias"],
        p["linear1.weight"].T,
        p["linear1.bias"],
        p["linear2.weight"].T,
        p["linear2.bias"],
    ]


@pytest.mark.parametrize("norm_first", [False, True])
def test_matches_torch(rng, norm_first):
    torch.manual_seed(0)
    reference = torch.nn.TransformerEncoderLayer(
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
    ours = TransformerEncoder(24, 4, normalize_first=norm_first)
    x = rng.standard_normal((2, 6, 16)).astype("float32")
    ours.build(x.shape)
    ours.set_weights(_torch_to_ours(reference, 4))
    padding = _padding([6, 4], 6)
    with torch.no_grad():
        expected = reference(
            torch.from_numpy(x),
            src_key_padding_mask=torch.from_numpy(~padding),
        ).numpy()
    np.testing.assert_allclose(
        _np(ours(x, padding_mask=padding)), expected, atol=1e-4
    )


@pytest.mark.parametrize(
    "options",
    [
        {"num_key_value_heads": 2, "norm": "rms_norm"},
        {"gated": True, "activation": "silu", "normalize_first": True},
        {"gated": True, "activation": "gelu", "position": "rotary"},
        {"position": "alibi", "normalize_first": True},
        {"position": "relative", "num_key_value_heads": 1},
        {"sliding_window": 2, "norm": "rms_norm", "normalize_first": True},
    ],
)
def test_options_match_numpy(rng, options):
    layer = TransformerEncoder(12, 4, **options)
    x = rng.standard_normal((2, 6, 16)).astype("float32")
    layer.build(x.shape)
    _randomize(layer, rng)
    padding = _padding([6, 4], 6)
    expected = _reference.block(
        x,
        layer.get_weights(),
        4,
        mask=np.broadcast_to(padding[:, None, :], (2, 6, 6)),
        **options,
    )
    np.testing.assert_allclose(
        _np(layer(x, padding_mask=padding)), expected, atol=1e-4, rtol=1e-4
    )


def test_padding_invariance(rng):
    layer = TransformerEncoder(16, 2, position="relative")
    x = rng.standard_normal((2, 6, 8)).astype("float32")
    padding = _padding([6, 3], 6)
    changed = x.copy()
    changed[1, 3:] = rng.standard_normal((3, 8))
    out = _np(layer(x, padding_mask=padding))
    out_changed = _np(layer(changed, padding_mask=padding))
    np.testing.assert_allclose(out_changed[1, :3], out[1, :3], atol=ATOL)
    np.testing.assert_allclose(out_changed[0], out[0], atol=ATOL)
    # Without the mask the padded values do leak in (the test can fail).
    assert not np.allclose(_np(layer(changed))[1, :3], _np(layer(x))[1, :3])


def test_keras_mask_is_the_padding_mask(rng):
    import keras

    ids = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    embedding = keras.layers.Embedding(10, 8, mask_zero=True)
    layer = TransformerEncoder(16, 2)
    embedded = embedding(ids)
    masked = _np(layer(embedded))
    explicit = _np(layer(embedded, padding_mask=ids != 0))
    np.testing.assert_allclose(masked[:, :3], explicit[:, :3], atol=ATOL)


def test_rotary_layer_as_position(rng, monkeypatch):
    # `position` given as a RotaryEmbedding: its base and scaling are used.
    from keras_attn.layers import RotaryEmbedding

    def scaled_rotary(x, start=0):
        # Base 500, linear scaling 2: frequencies 500 ** (-2k / H) / 2.
        dim = x.shape[-1]
        inv_freq = 500.0 ** (-np.arange(0, dim, 2) / dim) / 2.0
        angles = np.outer(np.arange(x.shape[1]) + start, inv_freq)
        cos = np.concatenate([np.cos(angles)] * 2, -1)[None, :, None, :]
        sin = np.concatenate([np.sin(angles)] * 2, -1)[None, :, None, :]
        x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    rope = RotaryEmbedding(max_wavelength=500, scaling_factor=2.0)
    layer = TransformerEncoder(12, 4, position=rope)
    x = rng.standard_normal((2, 6, 16)).astype("float32")
    layer.build(x.shape)
    _randomize(layer, rng)
    monkeypatch.setattr(_reference, "rotary", scaled_rotary)
    expected = _reference.block(x, layer.get_weights(), 4, position="rotary")
    np.testing.assert_allclose(_np(layer(x)), expected, atol=1e-4, rtol=1e-4)
    # The config carries the rotary layer; a copy computes the same.
    restored = TransformerEncoder.from_config(layer.get_config())
    assert restored.position.get_config()["max_wavelength"] == 500
    restored.build(x.shape)
    restored.set_weights(layer.get_weights())
    np.testing.assert_allclose(_np(restored(x)), _np(layer(x)), atol=1e-6)
