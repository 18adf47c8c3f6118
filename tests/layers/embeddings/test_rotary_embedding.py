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
