"""Rotary frequencies: scaled RoPE (linear, dynamic, YaRN, Llama 3), 2-D grids.

Pure functions on `keras.ops` behind `keras_attn.layers.RotaryEmbedding`
and `keras_attn.layers.RotaryEmbedding2D`. Frequencies are float32 tensors
of shape `(rotary_dim / 2,)`: the angle of channel pair `k` at position `p`
is `p * inverse_frequencies[k]`. Pair `k` is the channels `(k, k +
rotary_dim / 2)` (the "rotate half" layout of GPT-NeoX, Llama and
keras-hub).
"""

import math
import numbers

from keras import ops

from keras_attn._validation import check_choice
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number

ROPE_TYPES = ("linear", "dynamic", "yarn", "llama3")
# The arguments of `rope_inverse_frequencies` after `rotary_dim`: what a
# rotary layer stores and serializes.
FREQUENCY_ARGUMENTS = (
    "max_wavelength",
    "scaling_factor",
    "rope_type",
    "beta_fast",
    "beta_slow",
    "original_max_position_embeddings",
    "truncate",
    "denominator_dim",
    "low_freq_factor",
    "high_freq_factor",
)


def check_rope_arguments(
    max_wavelength,
    scaling_factor,
    rope_type,
    beta_fast,
    beta_slow,
    original_max_position_embeddings,
    truncate,
    denominator_dim,
    low_freq_factor,
    high_freq_factor,
):
    """Raises a `ValueError` naming the first bad argument."""
    check_positive_number("max_wavelength", max_wavelength)
    check_positive_number("scaling_factor", scaling_factor)
    check_choice("rope_type", rope_type, ROPE_TYPES)
    check_positive_number("beta_fast", beta_fast)
    check_positive_number("beta_slow", beta_slow)
    check_positive_int(
        "original_max_position_embeddings", original_max_position_embeddings
    )
    if not isinstance(truncate, bool):
        raise ValueError(
            f"`truncate` must be a bool. Received: truncate={truncate!r}"
        )
    check_positive_int("denominator_dim", denominator_dim, allow_none=True)
    check_positive_number("low_freq_factor", low_freq_factor)
    check_positive_number("high_freq_factor", high_freq_factor)
    if rope_type == "llama3" and not high_freq_factor > low_freq_factor:
        raise ValueError(
            "`high_freq_factor` must be greater than `low_freq_factor` for "
            f"rope_type='llama3'. Received: high_freq_factor="
            f"{high_freq_factor}, low_freq_factor={low_freq_factor}"
        )


def _base_inverse_frequencies(rotary_dim, max_wavelength, denominator):
    # max_wavelength ** (-2k / denominator), k = 0 .. rotary_dim / 2 - 1.
    exponent = ops.arange(0, rotary_dim, 2, dtype="float32") / float(
        denominator
    )
    return ops.power(float(max_wavelength), -exponent)


def _yarn_correction_range(
    rotary_dim, max_wavelength, beta_fast, beta_slow, context, truncate
):
    """The pair indices `(low, high)` between which YaRN ramps, floats."""

    def pair_index(rotations):
        # The pair whose wavelength fits `rotations` times in `context`.
        return (
            rotary_dim
            * math.log(context / (rotations * 2 * math.pi))
            / (2 * math.log(max_wavelength))
        )

    low, high = pair_index(beta_fast), pair_index(beta_slow)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0.0), min(high, rotary_dim - 1.0)


def rope_inverse_frequencies(
    rotary_dim,
    max_wavelength=10000,
    scaling_factor=1.0,
    rope_type="linear",
    beta_fast=32.0,
    beta_slow=1.0,
    original_max_position_embeddings=4096,
    truncate=True,
    denominator_dim=None,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
):
    """The inverse frequencies of (scaled) rotary embeddings.

    With `b = max_wavelength`, `s = scaling_factor`, `d = denominator_dim`
    (default `rotary_dim`) and `f_k = b ** (-2k / d)`:

    - `"linear"`: `f_k / s` (position interpolation, Chen et al., 2023).
    - `"dynamic"`: `f_k / s ** (rotary_dim / (rotary_dim - 2))`, as
      `keras_hub.layers.RotaryEmbedding` computes it (a fixed rescaling, not
      a function of the sequence length).
    - `"yarn"`: YaRN's blend (Peng et al., 2023; `d` is `rotary_dim`):
      `f_k / s` for the low-frequency pairs, `f_k` for the high-frequency
      ones, linear in `k` between the pairs that turn `beta_fast` and
      `beta_slow` times over `original_max_position_embeddings` positions.
      Pair with `rope_attention_factor` for YaRN's logit temperature.
    - `"llama3"`: Llama 3.1's smoothing: with `L =
      original_max_position_embeddings` and wavelength `w_k = 2 pi / f_k`,
      `f_k / s` where `w_k > L / low_freq_factor`, `f_k` where
      `w_k < L / high_freq_factor`, and between them `(1 - a) f_k / s + a
      f_k` with `a = (L / w_k - low_freq_factor) / (high_freq_factor -
      low_freq_factor)`.

    Args:
        rotary_dim: int, even, the number of rotated channels.
        max_wavelength: number, the base `b` of the frequencies.
        scaling_factor: number, the context-extension factor `s`.
        rope_type: `"linear"`, `"dynamic"`, `"yarn"` or `"llama3"`.
        beta_fast: number, YaRN's rotation count where the ramp starts.
        beta_slow: number, YaRN's rotation count where the ramp ends.
        original_max_position_embeddings: int, the training context length
            (YaRN and Llama 3).
        truncate: bool, whether YaRN rounds its ramp ends to whole pairs.
        denominator_dim: int or None, `d` above for `"linear"` and
            `"dynamic"` (keras-hub's partial-rotary option).
        low_freq_factor: number, Llama 3's low-frequency bound.
        high_freq_factor: number, Llama 3's high-frequency bound.

    Returns:
        A float32 tensor of shape `(rotary_dim / 2,)`.

    Example:

    ```python
    from keras_attn.ops import rope_inverse_frequencies

    # Llama 3.1 8B: head size 128, base 500000, 8x from an 8192 context.
    freqs = rope_inverse_frequencies(
        128, 500000, 8.0, "llama3", original_max_position_embeddings=8192
    )  # (64,)
    ```

    References:
        - Extending Context Window of Large Language Models via Positional
          Interpolation (Chen et al., 2023).
        - YaRN: Efficient Context Window Extension of Large Language Models
          (Peng et al., 2023).
        - The Llama 3 Herd of Models (Grattafiori et al., 2024).
    """
    check_positive_int("rotary_dim", rotary_dim)
    if rotary_dim % 2:
        raise ValueError(
            "`rotary_dim` must be even (channels rotate in pairs). "
            f"Received: rotary_dim={rotary_dim}"
        )
    check_rope_arguments(
        max_wavelength,
        scaling_factor,
        rope_type,
        beta_fast,
        beta_slow,
        original_max_position_embeddings,
        truncate,
        denominator_dim,
        low_freq_factor,
        high_freq_factor,
    )
    s = float(scaling_factor)
    if rope_type == "yarn":
        base = _base_inverse_frequencies(rotary_dim, max_wavelength, rotary_dim)
        low, high = _yarn_correction_range(
            rotary_dim,
            max_wavelength,
            beta_fast,
            beta_slow,
            original_max_position_embeddings,
            truncate,
        )
        pair = ops.arange(rotary_dim // 2, dtype="float32")
        # 0 up to pair `low` (extrapolate), 1 from pair `high` (interpolate).
        ramp = ops.clip((pair - low) / max(high - low, 0.001), 0.0, 1.0)
        return base / s * ramp + base * (1.0 - ramp)
    denominator = rotary_dim if denominator_dim is None else denominator_dim
    base = _base_inverse_frequencies(rotary_dim, max_wavelength, denominator)
    if rope_type == "linear":
        return base / s
    if rope_type == "dynamic":
        return base / s ** (rotary_dim / max(1, rotary_dim - 2))
    # llama3
    context = float(original_max_position_embeddings)
    wavelength = 2 * math.pi / base
    smooth = (context / wavelength - low_freq_factor) / (
        high_freq_factor - low_freq_factor
    )
    smoothed = (1.0 - smooth) * base / s + smooth * base
    low_wavelength = context / low_freq_factor  # longer: interpolate
    high_wavelength = context / high_freq_factor  # shorter: keep
    return ops.where(
        ops.greater(wavelength, low_wavelength),
        base / s,
        ops.where(ops.less(wavelength, high_wavelength), base, smoothed),
    )


def rope_attention_factor(rope_type, scaling_factor):
    """The factor on cos and sin: `0.1 ln(s) + 1` for YaRN, else `1`.

    YaRN scales both queries and keys by it, so the logits grow by its
    square (the paper's temperature `sqrt(1 / t) = 0.1 ln(s) + 1`).

    Args:
        rope_type: one of `"linear"`, `"dynamic"`, `"yarn"`, `"llama3"`.
        scaling_factor: number, the context-extension factor `s`.

    Returns:
        A Python float.
    """
    check_choice("rope_type", rope_type, ROPE_TYPES)
    check_positive_number("scaling_factor", scaling_factor)
    if rope_type == "yarn":
        return 0.1 * math.log(scaling_factor) + 1.0
    return 1.0


def rope_cos_sin(positions, inverse_frequencies, attention_factor=1.0):
    """Cosines and sines of the rotary angles, "rotate half" layout.

    Args:
        positions: tensor of any shape `P`, integer or float.
        inverse_frequencies: float tensor `(R / 2,)`, for example from
            `rope_inverse_frequencies`.
        attention_factor: number multiplying both (YaRN's temperature).

    Returns:
        `(cos, sin)`, two float32 tensors of shape `P + (R,)`; channels
        `k` and `k + R / 2` share the angle of pair `k`.
    """
    # (..., 1) * (R/2,) -> (..., R/2)
    angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * ops.cast(
        inverse_frequencies, "float32"
    )
    angles = ops.concatenate([angles, angles], axis=-1)
    factor = float(attention_factor)
    return ops.cos(angles) * factor, ops.sin(angles) * factor


def grid_positions(height, width, num_prefix_tokens=0):
    """(row, column) positions of a row-major grid of patches.

    Row `i` of the result is token `i` of a patch sequence: first
    `num_prefix_tokens` tokens (a class token, registers) at `(0, 0)`, then
    the `height * width` patches in row-major order, patch `(r, c)` at
    `(r, c)`. `height` and `width` may be scalar int tensors.

    Args:
        height: int or scalar int tensor, the number of patch rows.
        width: int or scalar int tensor, the number of patch columns.
        num_prefix_tokens: int, tokens in front of the patches.

    Returns:
        A float32 tensor `(num_prefix_tokens + height * width, 2)`.

    Example:

    ```python
    from keras_attn.ops import grid_positions

    grid_positions(2, 3, num_prefix_tokens=1)
    # [[0, 0], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    ```
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, numbers.Number):
            check_positive_int(name, value)
    if (
        isinstance(num_prefix_tokens, bool)
        or not isinstance(num_prefix_tokens, numbers.Integral)
        or num_prefix_tokens < 0
    ):
        raise ValueError(
            "`num_prefix_tokens` must be a non-negative integer. Received: "
            f"num_prefix_tokens={num_prefix_tokens!r}"
        )
    index = ops.arange(height * width, dtype="int32")
    width = ops.cast(width, "int32")
    # (H * W, 2): row and column of each patch.
    grid = ops.stack([index // width, index % width], axis=-1)
    grid = ops.cast(grid, "float32")
    prefix = ops.zeros((num_prefix_tokens, 2), "float32")
    return ops.concatenate([prefix, grid], axis=0)
