"""`keras_attn.ops.rope` against the papers' formulas written out in NumPy.

The references are written from the published descriptions (YaRN, Peng et
al. 2023, section 3 and its reference code; Llama 3.1's
`apply_scaling`/HF transformers' `_compute_llama3_parameters`), one pair at a
time in plain Python, independent of the library's vectorised code.
"""

import math

import numpy as np
import pytest
from keras import ops

from keras_attn import ops as attn_ops


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


def _base(dim, base):
    return [base ** (-2 * k / dim) for k in range(dim // 2)]


def yarn_reference(dim, base, factor, beta_fast, beta_slow, context, truncate):
    def correction_dim(rotations):
        return (
            dim
            * math.log(context / (rotations * 2 * math.pi))
            / (2 * math.log(base))
        )

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    out = []
    for k, f in enumerate(_base(dim, base)):
        ramp = min(max((k - low) / (high - low), 0.0), 1.0)
        extrapolate = 1.0 - ramp  # 1: keep f, 0: interpolate f / factor
        out.append(f / factor * (1 - extrapolate) + f * extrapolate)
    return np.array(out)


def llama3_reference(dim, base, factor, low_freq, high_freq, context):
    out = []
    for f in _base(dim, base):
        wavelength = 2 * math.pi / f
        if wavelength < context / high_freq:
            out.append(f)
        elif wavelength > context / low_freq:
            out.append(f / factor)
        else:
            smooth = (context / wavelength - low_freq) / (high_freq - low_freq)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


@pytest.mark.parametrize("truncate", [True, False])
@pytest.mark.parametrize(
    "dim,base,factor,betas,context",
    [
        (64, 10000, 4.0, (32.0, 1.0), 2048),
        (128, 1000000, 16.0, (16.0, 2.0), 4096),
    ],
)
def test_yarn_frequencies(dim, base, factor, betas, context, truncate):
    got = attn_ops.rope_inverse_frequencies(
        dim,
        base,
        factor,
        "yarn",
        beta_fast=betas[0],
        beta_slow=betas[1],
        original_max_position_embeddings=context,
        truncate=truncate,
    )
    want = yarn_reference(dim, base, factor, *betas, context, truncate)
    np.testing.assert_allclose(_np(got), want, rtol=1e-5)
    # The blend really spans both ends: high pairs kept, low interpolated.
    assert want[0] == _base(dim, base)[0]
    assert math.isclose(want[-1], _base(dim, base)[-1] / factor)


@pytest.mark.parametrize(
    "dim,base,factor,low,high,context",
    [
        (128, 500000, 8.0, 1.0, 4.0, 8192),  # Llama 3.1
        (64, 500000, 32.0, 1.0, 4.0, 8192),  # Llama 3.2 1B style
        (32, 10000, 4.0, 2.0, 8.0, 512),
    ],
)
def test_llama3_frequencies(dim, base, factor, low, high, context):
    got = attn_ops.rope_inverse_frequencies(
        dim,
        base,
        factor,
        "llama3",
        original_max_position_embeddings=context,
        low_freq_factor=low,
        high_freq_factor=high,
    )
    want = llama3_reference(dim, base, factor, low, high, context)
    np.testing.assert_allclose(_np(got), want, rtol=1e-5)
    # All three regimes occur in the first case.
    kept = np.isclose(want, _base(dim, base))
    divided = np.isclose(want, np.array(_base(dim, base)) / factor)
    if dim == 128:
        assert kept.any() and divided.any() and (~kept & ~divided).any()


def test_linear_and_dynamic_frequencies():
    base = np.array(_base(16, 500.0))
    np.testing.assert_allclose(
        _np(attn_ops.rope_inverse_frequencies(16, 500, 2.0)),
        base / 2.0,
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        _np(attn_ops.rope_inverse_frequencies(16, 500, 2.0, "dynamic")),
        base / 2.0 ** (16 / 14),
        rtol=1e-6,
    )
    # denominator_dim: base ** (-2k / 32) for the 8 pairs of 16 channels.
    np.testing.assert_allclose(
        _np(attn_ops.rope_inverse_frequencies(16, 500, denominator_dim=32)),
        [500.0 ** (-2 * k / 32) for k in range(8)],
        rtol=1e-6,
    )


def test_attention_factor_and_cos_sin():
    assert attn_ops.rope_attention_factor("linear", 4.0) == 1.0
    assert math.isclose(
        attn_ops.rope_attention_factor("yarn", 4.0), 0.1 * math.log(4) + 1
    )
    freqs = np.array([1.0, 0.1])
    cos, sin = attn_ops.rope_cos_sin(np.array([0.0, 3.0]), freqs, 2.0)
    angles = np.array([[0, 0, 0, 0], [3.0, 0.3, 3.0, 0.3]])
    np.testing.assert_allclose(_np(cos), 2 * np.cos(angles), atol=1e-6)
    np.testing.assert_allclose(_np(sin), 2 * np.sin(angles), atol=1e-6)


def test_grid_positions():
    got = _np(attn_ops.grid_positions(2, 3, num_prefix_tokens=1))
    want = [[0, 0], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    np.testing.assert_array_equal(got, want)
    assert _np(attn_ops.grid_positions(3, 1)).tolist() == [
        [0, 0],
        [1, 0],
        [2, 0],
    ]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rotary_dim": 7}, "rotary_dim=7"),
        ({"rope_type": "ntk"}, "rope_type='ntk'"),
        ({"beta_fast": 0}, "beta_fast=0"),
        ({"truncate": 1}, "truncate=1"),
        ({"original_max_position_embeddings": 0.5}, "original_max_position"),
        ({"denominator_dim": 0}, "denominator_dim=0"),
        (
            {"rope_type": "llama3", "low_freq_factor": 4.0},
            "high_freq_factor",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    kwargs = {"rotary_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        attn_ops.rope_inverse_frequencies(**kwargs)


def test_bad_grid():
    with pytest.raises(ValueError, match="num_prefix_tokens=-1"):
        attn_ops.grid_positions(2, 2, num_prefix_tokens=-1)
    with pytest.raises(ValueError, match="height=0"):
        attn_ops.grid_positions(0, 2)
