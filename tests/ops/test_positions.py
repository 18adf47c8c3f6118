"""`keras_attn.ops.positions` against formulas written out in NumPy."""

import math

import numpy as np
import pytest
from keras import ops

from keras_attn import ops as attn_ops


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _sinusoid_reference(positions, dim, base=10000.0):
    # PE[p, 2i] = sin(p / base^(2i/d)), PE[p, 2i+1] = cos(p / base^(2i/d)).
    table = np.zeros((len(positions), dim))
    for row, p in enumerate(positions):
        for c in range(dim):
            angle = p / base ** (2 * (c // 2) / dim)
            table[row, c] = math.sin(angle) if c % 2 == 0 else math.cos(angle)
    return table


@pytest.mark.parametrize("dim", [8, 7])
def test_sine_position_encoding_formula(dim):
    positions = np.array([0, 1, 2, 5, 50, 99])
    got = _np(attn_ops.sine_position_encoding(positions, dim))
    np.testing.assert_allclose(
        got, _sinusoid_reference(positions, dim), atol=1e-5
    )


def test_sine_position_encoding_batched_positions_and_base():
    positions = np.array([[0, 3, 4], [7, 7, 1]])
    got = _np(attn_ops.sine_position_encoding(positions, 6, max_wavelength=50))
    assert got.shape == (2, 3, 6)
    for b in range(2):
        np.testing.assert_allclose(
            got[b], _sinusoid_reference(positions[b], 6, 50.0), atol=1e-5
        )


def test_sequence_positions():
    np.testing.assert_array_equal(
        _np(attn_ops.sequence_positions(4, 3)), [3, 4, 5, 6]
    )


def _rotate_reference(x, positions, base=10000.0, scale=1.0):
    # Pair (k, k + H/2) turns by theta_k = (p / scale) * base^(-2k / H).
    x = np.asarray(x, np.float64)
    half = x.shape[-1] // 2
    out = np.empty_like(x)
    for t, p in enumerate(positions):
        for k in range(half):
            theta = p / scale * base ** (-2 * k / x.shape[-1])
            a, b = x[..., t, k], x[..., t, k + half]
            out[..., t, k] = a * math.cos(theta) - b * math.sin(theta)
            out[..., t, k + half] = b * math.cos(theta) + a * math.sin(theta)
    return out


def test_rotary_rotation_against_numpy(rng):
    x = rng.normal(size=(2, 5, 8)).astype("float32")  # (B, T, H)
    positions = np.array([0, 1, 4, 9, 30])
    cos, sin = attn_ops.rotary_cos_sin(positions, 8, scaling_factor=2.0)
    got = _np(attn_ops.apply_rotary(x, cos, sin))
    np.testing.assert_allclose(
        got, _rotate_reference(x, positions, scale=2.0), atol=1e-5
    )


def test_rotary_scores_depend_only_on_offset(rng):
    q = rng.normal(size=(6, 16)).astype("float32")  # (T, H)
    k = rng.normal(size=(6, 16)).astype("float32")

    def scores(start):
        cos, sin = attn_ops.rotary_cos_sin(np.arange(6) + start, 16)
        return (
            _np(attn_ops.apply_rotary(q, cos, sin))
            @ _np(attn_ops.apply_rotary(k, cos, sin)).T
        )

    base = scores(0)
    np.testing.assert_allclose(scores(37), base, atol=1e-4)
    # The rotation does change the scores (the test can fail).
    assert np.abs(base - q.astype("float64") @ k.T).max() > 1e-2


def test_alibi_slopes_power_of_two():
    # Press et al.: for 8 heads the slopes are 1/2, 1/4, ..., 1/256.
    expected = [2.0**-i for i in range(1, 9)]
    np.testing.assert_allclose(
        _np(attn_ops.alibi_slopes(8)), expected, rtol=1e-6
    )


def test_alibi_slopes_non_power_of_two():
    # 12 heads: the 8 slopes of 8 heads, then every other slope of the
    # 16-head sequence (2^-0.5, 2^-1, 2^-1.5, ...), i.e. 2^-0.5, 2^-1.5,
    # 2^-2.5, 2^-3.5.
    expected = [2.0**-i for i in range(1, 9)] + [
        2.0**-0.5,
        2.0**-1.5,
        2.0**-2.5,
        2.0**-3.5,
    ]
    np.testing.assert_allclose(
        _np(attn_ops.alibi_slopes(12)), expected, rtol=1e-6
    )


def test_alibi_bias_values():
    # Query i at key position (S - T) + i; bias = slope * (j - position).
    bias = _np(attn_ops.alibi_bias(2, 2, 4))
    slopes = np.array([2.0**-4, 2.0**-8])
    j = np.arange(4)[None, :]
    i = np.array([2, 3])[:, None]
    np.testing.assert_allclose(
        bias, (slopes[:, None, None] * (j - i))[None], rtol=1e-6
    )
    symmetric = _np(attn_ops.alibi_bias(2, 4, 4, bidirectional=True))
    i = np.arange(4)[:, None]
    np.testing.assert_allclose(
        symmetric,
        (-slopes[:, None, None] * np.abs(j - i))[None],
        rtol=1e-6,
    )


# relative = key - query; T5's n = query - key.
# Bidirectional, 32 buckets, max_distance 128: 16 buckets per direction,
# keys at/before the query in [0, 16), after it in [16, 32); max_exact = 8.
#   rel   0 -> n 0 -> 0            rel  +3 -> 16 + 3 = 19
#   rel  -3 -> 3                   rel  -7 -> 7; rel +7 -> 16 + 7 = 23
#   rel  -8 -> 8 + int(log(8/8) / log(128/8) * 8) = 8 + 0 = 8
#   rel -20 -> 8 + int(log(2.5) / log(16) * 8) = 8 + int(2.64) = 10
#   rel +20 -> 16 + 10 = 26
#   rel -50 -> 8 + int(log(6.25) / log(16) * 8) = 8 + int(5.29) = 13
#   rel -127 -> 8 + int(log(15.875) / log(16) * 8) = 8 + int(7.98) = 15
#   rel -1000 -> 8 + int(21.0) = 29, capped at 15;  rel +1000 -> 31
BIDIRECTIONAL = {
    0: 0,
    -3: 3,
    3: 19,
    -7: 7,
    7: 23,
    -8: 8,
    -20: 10,
    20: 26,
    -50: 13,
    -127: 15,
    -1000: 15,
    1000: 31,
}
# Unidirectional, 32 buckets, max_distance 128: max_exact = 16; future keys
# (rel > 0) clip to n = 0.
#   rel +5 -> 0;  rel -5 -> 5;  rel -15 -> 15
#   rel -16 -> 16 + int(log(1) / log(8) * 16) = 16
#   rel -40 -> 16 + int(log(2.5) / log(8) * 16) = 16 + int(7.05) = 23
#   rel -100 -> 16 + int(log(6.25) / log(8) * 16) = 16 + int(14.1) = 30
#   rel -200 -> 16 + int(17.1) = 33, capped at 31
UNIDIRECTIONAL = {
    5: 0,
    0: 0,
    -5: 5,
    -15: 15,
    -16: 16,
    -40: 23,
    -100: 30,
    -200: 31,
}


@pytest.mark.parametrize(
    "bidirectional,table",
    [(True, BIDIRECTIONAL), (False, UNIDIRECTIONAL)],
    ids=["bidirectional", "unidirectional"],
)
def test_t5_buckets_hand_computed(bidirectional, table):
    relative = np.array(list(table), "int32")
    got = ops.convert_to_numpy(
        attn_ops.t5_relative_position_bucket(
            relative, bidirectional=bidirectional
        )
    )
    np.testing.assert_array_equal(got, list(table.values()))


def test_relative_position_buckets_offset():
    # Query 0 at position 2 against keys 0..3: relative -2, -1, 0, 1.
    got = ops.convert_to_numpy(
        attn_ops.relative_position_buckets(1, 4, start_index=2)
    )
    np.testing.assert_array_equal(got, [[2, 1, 0, 17]])


def _sincos_1d_reference(positions, dim, base=10000.0):
    # MAE: omega_k = base^(-k / (D/2)); [sin(p omega), cos(p omega)].
    omega = base ** (-np.arange(dim // 2) / (dim / 2))
    angles = np.asarray(positions, np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def test_sincos_2d_positions():
    height, width, dim = 3, 4, 16
    got = _np(attn_ops.sincos_2d_positions(height, width, dim))
    assert got.shape == (12, 16)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    expected = np.concatenate(
        [
            _sincos_1d_reference(rows.reshape(-1), dim // 2),
            _sincos_1d_reference(cols.reshape(-1), dim // 2),
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Patch (1, 2) is row 1 * 4 + 2 = 6 of the flattened grid.
    np.testing.assert_allclose(
        got[6, :8], _sincos_1d_reference([1], 8)[0], atol=1e-6
    )


@pytest.mark.parametrize(
    "fn,kwargs,match",
    [
        (
            attn_ops.sincos_2d_positions,
            dict(height=0, width=2, dim=8),
            "height=0",
        ),
        (attn_ops.sincos_2d_positions, dict(height=2, width=2, dim=6), "dim=6"),
        (
            attn_ops.sine_position_encoding,
            dict(positions=np.arange(3), hidden_dim=-1),
            "hidden_dim=-1",
        ),
        (
            attn_ops.rotary_cos_sin,
            dict(positions=np.arange(3), rotary_dim=5),
            "rotary_dim=5",
        ),
        (attn_ops.alibi_slopes, dict(num_heads=0), "num_heads=0"),
        (attn_ops.alibi_slopes, dict(num_heads=2.5), "num_heads=2.5"),
        (
            attn_ops.t5_relative_position_bucket,
            dict(relative_position=np.arange(3), num_buckets=0),
            "num_buckets=0",
        ),
    ],
)
def test_bad_arguments(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn(**kwargs)
