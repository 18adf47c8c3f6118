import math

import keras_hub
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import SinePositionEncoding
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def test_conformance(rng):
    run_layer_test(
        SinePositionEncoding,
        init_kwargs={"max_wavelength": 1000},
        input_data=rng.normal(size=(2, 6, 8)).astype("float32"),
        expected_output_shape=(2, 6, 8),
        bad_inputs=[
            BadInput("inputs.shape", input_data=np.zeros((8,), "float32")),
            BadInput("max_wavelength=0", init_kwargs={"max_wavelength": 0}),
            BadInput("max_wavelength='x'", init_kwargs={"max_wavelength": "x"}),
            BadInput(
                "positions",
                call_kwargs={"positions": np.zeros((2, 3, 6), "int32")},
            ),
        ],
    )


def test_values_against_formula():
    # PE[p, 2i] = sin(p / 10000^(2i/d)); PE[p, 2i+1] = cos(same angle).
    seq, dim = 12, 10
    got = _np(SinePositionEncoding()(np.zeros((1, seq, dim), "float32")))
    expected = np.zeros((seq, dim))
    for p in range(seq):
        for i in range(dim // 2):
            angle = p / 10000 ** (2 * i / dim)
            expected[p, 2 * i] = math.sin(angle)
            expected[p, 2 * i + 1] = math.cos(angle)
    np.testing.assert_allclose(got[0], expected, atol=1e-5)


@pytest.mark.parametrize(
    "call_kwargs",
    [
        {},
        {"start_index": 5},
        {"positions": np.array([3, 0, 7, 7, 1, 2])},
        {"positions": np.arange(12).reshape(2, 6)},
    ],
    ids=["default", "start_index", "positions", "batched_positions"],
)
@pytest.mark.parametrize("dim", [8, 7])
def test_matches_keras_hub(rng, call_kwargs, dim):
    x = rng.normal(size=(2, 6, dim)).astype("float32")
    if "positions" in call_kwargs:
        # keras-hub uses custom positions as given: pass them as floats.
        call_kwargs = {"positions": call_kwargs["positions"].astype("float32")}
    ours = SinePositionEncoding(max_wavelength=300)(x, **call_kwargs)
    theirs = keras_hub.layers.SinePositionEncoding(max_wavelength=300)(
        x, **call_kwargs
    )
    np.testing.assert_allclose(_np(ours), _np(theirs), atol=1e-5)


def test_decoding_step_equals_slice_of_full():
    x = np.zeros((2, 9, 6), "float32")
    layer = SinePositionEncoding()
    full = _np(layer(x))
    for i in (0, 3, 8):
        step = _np(layer(x[:, :1], start_index=i))
        np.testing.assert_allclose(step, full[:, i : i + 1], atol=1e-5)


def test_output_dtype_follows_policy():
    layer = SinePositionEncoding(dtype="bfloat16")
    out = layer(np.zeros((1, 4, 8), "float32"))
    assert "bfloat16" in str(out.dtype)
