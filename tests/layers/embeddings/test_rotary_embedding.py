import math

import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import RotaryEmbedding
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def test_conformance(rng):
    run_layer_test(
        RotaryEmbedding,
        init_kwargs={"max_wavelength": 100, "scaling_factor": 2.0},
        input_data=rng.normal(size=(2, 5, 3, 8)).astype("float32"),
        expected_output_shape=(2, 5, 3, 8),
        sequence_axes=(1,),
        bad_inputs=[
            BadInput("inputs.shape", input_data=np.zeros((5, 8), "float32")),
            BadInput("even size", input_data=np.zeros((2, 5, 7), "float32")),
            BadInput("max_wavelength=0", init_kwargs={"max_wavelength": 0}),
            BadInput("scaling_factor=-1", init_kwargs={"scaling_factor": -1}),
            BadInput("sequence_axis=4", init_kwargs={"sequence_axis": 4}),
            BadInput(
                "positions",
                call_kwargs={"positions": np.zeros((5,), "bool")},
            ),
        ],
    )


@pytest.mark.parametrize(
    "shape,axes",
    [
        ((2, 6, 3, 8), {}),
        ((2, 6, 8), {}),
        ((2, 3, 6, 8), {"sequence_axis": 2}),
        ((2, 8, 6), {"sequence_axis": 2, "feature_axis": 1}),
    ],
)
@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"start_index": 7},
        {"positions": np.array([4, 0, 2, 9, 1, 3])},
        {"positions": np.arange(12).reshape(2, 6) * 3},
    ],
    ids=["default", "start_index", "positions", "batched_positions"],
)
def test_matches_keras_hub(rng, shape, axes, call_kwargs):
    x = rng.normal(size=shape).astype("float32")
    kwargs = {"max_wavelength": 500, "scaling_factor": 1.5, **axes}
    ours = RotaryEmbedding(**kwargs)(x, **call_kwargs)
    theirs = keras_hub.layers.RotaryEmbedding(**kwargs)(x, **call_kwargs)
    np.testing.assert_allclose(_np(ours), _np(theirs), atol=1e-5)


def test_shift_invariance_of_scores(rng):
    # (B, T, N, H) queries and keys: q_i . k_j depends on i - j only.
    q = rng.normal(size=(1, 8, 2, 16)).astype("float32")
    k = rng.normal(size=(1, 8, 2, 16)).astype("float32")
    rope = RotaryEmbedding()

    def scores(start):
        return np.einsum(
            "btnh,bsnh->bnts",
            _np(rope(q, start_index=start)),
            _np(rope(k, start_index=start)),
        )

    np.testing.assert_allclose(scores(13), scores(0), atol=1e-4)
    unrotated = np.einsum("btnh,bsnh->bnts", q, k)
    assert np.abs(scores(0) - unrotated).max() > 1e-2


def test_decoding_step_equals_slice_of_full(rng):
    x = rng.normal(size=(2, 9, 3, 8)).astype("float32")
    rope = RotaryEmbedding()
    full = _np(rope(x))
    for i in (0, 4, 8):
        step = _np(rope(x[:, i : i + 1], start_index=i))
        np.testing.assert_allclose(step, full[:, i : i + 1], atol=1e-5)


def test_tensor_start_index(rng):
    x = rng.normal(size=(1, 1, 2, 4)).astype("float32")
    rope = RotaryEmbedding()
    np.testing.assert_allclose(
        _np(rope(x, start_index=ops.convert_to_tensor(5, "int32"))),
        _np(rope(x, start_index=5)),
        atol=1e-6,
    )


# keras-hub's current arguments: from_config(hub.get_config()), same outputs.
HUB_CONFIGS = [
    {"rope_type": "linear", "scaling_factor": 2.0, "max_wavelength": 500},
    {"rope_type": "linear", "denominator_dim": 32},
    {"rope_type": "dynamic", "scaling_factor": 3.0},
    {"rope_type": "yarn", "scaling_factor": 4.0},
    {
        "rope_type": "yarn",
        "scaling_factor": 8.0,
        "beta_fast": 16.0,
        "beta_slow": 2.0,
        "original_max_position_embeddings": 64,
        "truncate": False,
        "max_wavelength": 1000,
    },
    {"rope_type": "yarn", "scaling_factor": 2.0, "sequence_axis": 2},
]


@pytest.mark.parametrize("hub_kwargs", HUB_CONFIGS)
def test_from_keras_hub_config(rng, hub_kwargs):
    hub_layer = keras_hub.layers.RotaryEmbedding(**hub_kwargs)
    hub_config = hub_layer.get_config()
    ours = RotaryEmbedding.from_config(hub_config)
    # Every keras-hub key round-trips with its value.
    config = ours.get_config()
    for key, value in hub_config.items():
        if key not in ("name", "dtype"):
            assert config[key] == value, key
    x = rng.normal(size=(2, 6, 3, 16)).astype("float32")
    if hub_kwargs.get("sequence_axis") == 2:
        x = np.swapaxes(x, 1, 2)
    for call_kwargs in (
        {},
        {"start_index": 5},
        {"positions": np.array([[40, 3, 7, 100, 0, 2], [1, 2, 3, 4, 5, 6]])},
    ):
        np.testing.assert_allclose(
            _np(ours(x, **call_kwargs)),
            _np(hub_layer(x, **call_kwargs)),
            atol=2e-5,
            err_msg=str(call_kwargs),
        )


def _rope_reference(x, positions, inverse_freq, factor=1.0):
    # x (B, T, N, R): pair (k, k + R/2) turns by positions[t] * f_k.
    x = np.asarray(x, np.float64)
    half = len(inverse_freq)
    out = np.empty_like(x)
    for t, p in enumerate(positions):
        for k, f in enumerate(inverse_freq):
            c, s = math.cos(p * f) * factor, math.sin(p * f) * factor
            a, b = x[:, t, :, k], x[:, t, :, k + half]
            out[:, t, :, k] = a * c - b * s
            out[:, t, :, k + half] = b * c + a * s
    return out


def test_yarn_against_numpy(rng):
    # YaRN on the layer: the paper's frequencies (tests/ops/test_rope.py)
    # and both q and k scaled by 0.1 ln(s) + 1.
    from tests.ops.test_rope import yarn_reference

    x = rng.normal(size=(1, 5, 2, 32)).astype("float32")
    layer = RotaryEmbedding(
        rope_type="yarn",
        scaling_factor=4.0,
        original_max_position_embeddings=256,
    )
    freqs = yarn_reference(32, 10000, 4.0, 32.0, 1.0, 256, True)
    want = _rope_reference(x, range(3, 8), freqs, 0.1 * math.log(4) + 1)
    np.testing.assert_allclose(
        _np(layer(x, start_index=3)), want, rtol=1e-5, atol=1e-5
    )


def _llama3_hub(**kwargs):
    from keras_hub.src.models.llama.llama_rotary_embedding import (
        LlamaRotaryEmbedding,
    )

    return LlamaRotaryEmbedding(**kwargs)


@pytest.mark.parametrize("start_index", [0, 300])
def test_llama3_matches_keras_hub(rng, start_index):
    # keras-hub has Llama 3.1's smoothing only inside its Llama model.
    x = rng.normal(size=(2, 4, 2, 128)).astype("float32")
    theirs = _llama3_hub(
        max_wavelength=500000,
        frequency_adjustment_factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        pretraining_sequence_length=8192,
    )
    ours = RotaryEmbedding(
        max_wavelength=500000,
        scaling_factor=8.0,
        rope_type="llama3",
        original_max_position_embeddings=8192,
    )
    np.testing.assert_allclose(
        _np(ours(x, start_index=start_index)),
        _np(theirs(x, start_index=start_index)),
        atol=1e-4,
    )
    # And it differs from the unscaled rotation far into the sequence.
    plain = RotaryEmbedding(max_wavelength=500000)
    far = np.abs(
        _np(ours(x, start_index=9000)) - _np(plain(x, start_index=9000))
    )
    assert far.max() > 0.1


def test_llama3_against_numpy(rng):
    from tests.ops.test_rope import llama3_reference

    x = rng.normal(size=(1, 3, 1, 64)).astype("float32")
    layer = RotaryEmbedding(
        max_wavelength=10000,
        scaling_factor=4.0,
        rope_type="llama3",
        original_max_position_embeddings=512,
        low_freq_factor=2.0,
        high_freq_factor=8.0,
    )
    freqs = llama3_reference(64, 10000, 4.0, 2.0, 8.0, 512)
    positions = np.array([0, 700, 31])
    np.testing.assert_allclose(
        _np(layer(x, positions=positions)),
        _rope_reference(x, positions, freqs),
        atol=1e-4,
    )


@pytest.mark.parametrize("fraction,rotated", [(0.25, 8), (0.5, 16)])
def test_partial_rotary(rng, fraction, rotated):
    x = rng.normal(size=(2, 6, 3, 32)).astype("float32")
    ours = _np(
        RotaryEmbedding(partial_rotary_factor=fraction)(x, start_index=2)
    )
    # GPT-NeoX in keras-hub: its RotaryEmbedding on the first channels.
    hub = keras_hub.layers.RotaryEmbedding()
    want = np.concatenate(
        [_np(hub(x[..., :rotated], start_index=2)), x[..., rotated:]], -1
    )
    np.testing.assert_allclose(ours, want, atol=1e-5)
    freqs = [10000.0 ** (-2 * k / rotated) for k in range(rotated // 2)]
    np.testing.assert_allclose(
        ours[..., :rotated],
        _rope_reference(x[..., :rotated], range(2, 8), freqs),
        atol=1e-5,
    )
    np.testing.assert_array_equal(ours[..., rotated:], x[..., rotated:])


def test_new_arguments_conformance(rng):
    run_layer_test(
        RotaryEmbedding,
        init_kwargs={
            "rope_type": "yarn",
            "scaling_factor": 4.0,
            "partial_rotary_factor": 0.5,
        },
        input_data=rng.normal(size=(2, 5, 16)).astype("float32"),
        expected_output_shape=(2, 5, 16),
        bad_inputs=[
            BadInput("rope_type='ntk'", init_kwargs={"rope_type": "ntk"}),
            BadInput("beta_slow=0", init_kwargs={"beta_slow": 0}),
            BadInput("truncate='yes'", init_kwargs={"truncate": "yes"}),
            BadInput(
                "partial_rotary_factor=1.5",
                init_kwargs={"partial_rotary_factor": 1.5},
            ),
            BadInput(
                "partial_rotary_factor=0.35",
                init_kwargs={"partial_rotary_factor": 0.35},
            ),
            BadInput(
                "low_freq_factor",
                init_kwargs={"rope_type": "llama3", "high_freq_factor": 0.5},
            ),
        ],
    )
