import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding2D
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _reference(x, positions, base=100.0):
    # x (B, T, N, H); positions (T, 2). The first H/2 channels turn with the
    # row, the last H/2 with the column; within a half of size D, pair
    # (k, k + D/2) turns by position * base ** (-2k / D).
    x = np.asarray(x, np.float64)
    quarter = x.shape[-1] // 4
    half = 2 * quarter
    out = np.empty_like(x)
    for t, position in enumerate(positions):
        for axis in (0, 1):
            offset = axis * half
            for k in range(quarter):
                theta = position[axis] * base ** (-2 * k / half)
                i, j = offset + k, offset + k + quarter
                a, b = x[:, t, :, i], x[:, t, :, j]
                out[:, t, :, i] = a * math.cos(theta) - b * math.sin(theta)
                out[:, t, :, j] = b * math.cos(theta) + a * math.sin(theta)
    return out


def test_conformance(rng):
    run_layer_test(
        RotaryEmbedding2D,
        init_kwargs={"num_prefix_tokens": 1},
        input_data=rng.normal(size=(2, 10, 2, 8)).astype("float32"),
        expected_output_shape=(2, 10, 2, 8),
        # The sequence length is a grid: 1 + 3 * 3 tokens, no other length.
        sequence_axes=None,
        bad_inputs=[
            BadInput(
                "divisible by 4",
                input_data=np.zeros((2, 10, 6), "float32"),
            ),
            BadInput("must be a square", input_data=np.zeros((2, 9, 8))),
            BadInput("grid_size=\\(3,\\)", init_kwargs={"grid_size": (3,)}),
            BadInput("grid_size=", init_kwargs={"grid_size": (2, 2)}),
            BadInput(
                "num_prefix_tokens=-1", init_kwargs={"num_prefix_tokens": -1}
            ),
            BadInput(
                "positions.shape",
                call_kwargs={"positions": np.zeros((10,), "int32")},
            ),
        ],
    )


@pytest.mark.parametrize("prefix", [0, 1])
def test_grid_against_numpy(rng, prefix):
    x = rng.normal(size=(2, prefix + 12, 3, 16)).astype("float32")
    layer = RotaryEmbedding2D(grid_size=(3, 4), num_prefix_tokens=prefix)
    positions = [(0, 0)] * prefix + [(r, c) for r in range(3) for c in range(4)]
    np.testing.assert_allclose(
        _np(layer(x)), _reference(x, positions), atol=1e-5
    )


def test_square_grid_and_explicit_positions(rng):
    x = rng.normal(size=(1, 9, 2, 8)).astype("float32")
    square = [(r, c) for r in range(3) for c in range(3)]
    np.testing.assert_allclose(
        _np(RotaryEmbedding2D(max_wavelength=10)(x)),
        _reference(x, square, 10.0),
        atol=1e-5,
    )
    positions = rng.integers(0, 20, size=(9, 2))
    want = _reference(x, positions)
    got = RotaryEmbedding2D()(x, positions=positions)
    np.testing.assert_allclose(_np(got), want, atol=1e-5)
    # Batched positions (B, T, 2): row b of the batch at positions[b].
    batch = np.concatenate([x, x])
    other = rng.integers(0, 20, size=(9, 2))
    got = _np(
        RotaryEmbedding2D()(batch, positions=np.stack([positions, other]))
    )
    np.testing.assert_allclose(got[:1], want, atol=1e-5)
    np.testing.assert_allclose(got[1:], _reference(x, other), atol=1e-5)


def test_matches_keras_hub_gemma4_vision(rng):
    # keras-hub's Gemma 4 vision attention uses the same axial layout.
    from keras_hub.src.models.gemma4.gemma4_attention import (
        Gemma4VisionAttention,
    )

    x = rng.normal(size=(2, 12, 2, 16)).astype("float32")
    positions = rng.integers(0, 30, size=(2, 12, 2))
    hub = Gemma4VisionAttention(
        head_dim=16,
        num_query_heads=2,
        num_key_value_heads=2,
        rope_wavelength=100.0,
    )
    theirs = hub._apply_rope(ops.convert_to_tensor(x), positions)
    ours = RotaryEmbedding2D(max_wavelength=100)(x, positions=positions)
    np.testing.assert_allclose(_np(ours), _np(theirs), atol=1e-5)


def test_scores_depend_on_2d_offset_only(rng):
    q = rng.normal(size=(1, 6, 1, 16)).astype("float32")
    k = rng.normal(size=(1, 6, 1, 16)).astype("float32")
    positions = rng.integers(0, 8, size=(6, 2))
    rope = RotaryEmbedding2D()

    def scores(shift):
        at = positions + np.array(shift)
        return np.einsum(
            "btnh,bsnh->bnts",
            _np(rope(q, positions=at)),
            _np(rope(k, positions=at)),
        )

    np.testing.assert_allclose(scores((5, -3)), scores((0, 0)), atol=1e-4)
    # Swapping rows and columns changes the scores: both axes count.
    swapped = np.einsum(
        "btnh,bsnh->bnts",
        _np(rope(q, positions=positions[:, ::-1])),
        _np(rope(k, positions=positions[:, ::-1])),
    )
    assert np.abs(swapped - scores((0, 0))).max() > 1e-2


def test_in_attention_with_unknown_length(rng):
    # A functional model over (None, 64) tokens: the square grid is found at
    # run time, so one model runs at two resolutions (1 + 3x3, 1 + 4x4).
    rope = RotaryEmbedding2D(num_prefix_tokens=1)
    attention = MultiHeadAttention(
        num_heads=2, key_dim=16, rotary_embedding=rope
    )
    tokens = keras.Input((None, 32))
    model = keras.Model(tokens, attention(tokens, tokens))
    for length in (10, 17):
        x = rng.normal(size=(2, length, 32)).astype("float32")
        eager = attention(x, x)
        np.testing.assert_allclose(_np(model(x)), _np(eager), atol=1e-5)
    # Reference: the same projections with the NumPy rotation.
    x = rng.normal(size=(1, 10, 32)).astype("float32")
    q = _np(attention._query_dense(x))
    k = _np(attention._key_dense(x))
    v = _np(attention._value_dense(x))
    grid = [(0, 0)] + [(r, c) for r in range(3) for c in range(3)]
    q, k = _reference(q, grid), _reference(k, grid)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(16)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    context = np.einsum("bnts,bsnh->btnh", weights, v)
    want = _np(attention._output_dense(context.astype("float32")))
    np.testing.assert_allclose(_np(attention(x, x)), want, atol=1e-4)
