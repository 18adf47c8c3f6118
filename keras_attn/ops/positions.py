"""Position math: sinusoid tables, rotary rotation, ALiBi, T5 buckets.

Pure functions on `keras.ops`, shared by the layers in
`keras_attn.layers.embeddings` and usable without a layer (for example
inside an attention layer). Every position and frequency computation runs in
float32 and returns float32; callers cast to their compute dtype at the end,
so that large positions keep their precision under `float16`/`bfloat16`.

Conventions:

- `positions` is a tensor of shape `(T,)` or `(B, T)`, integer or float.
- Relative position is `key_position - query_position` (negative for keys in
  the past), as in the T5 paper's code.
"""

import math
import numbers

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number


def _dtype_name(x):
    """The standard dtype name of a tensor ("int32", "bool", ...)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return type(x).__name__
    return keras.backend.standardize_dtype(dtype)


def _check_positions(positions):
    dtype = _dtype_name(positions)
    if "int" not in dtype and "float" not in dtype:
        raise ValueError(
            "`positions` must be an integer or float tensor. Received: "
            f"positions with dtype={dtype}"
        )
    if len(positions.shape) not in (1, 2):
        raise ValueError(
            "`positions` must have shape `(sequence_length,)` or "
            "`(batch_size, sequence_length)`. Received: "
            f"positions.shape={tuple(positions.shape)}"
        )


def sequence_positions(sequence_length, start_index=0):
    """Positions `start_index, ..., start_index + sequence_length - 1`.

    Args:
        sequence_length: int or scalar int tensor, the number of positions.
        start_index: int or scalar tensor, the first position (the offset of
            a decoding step into its cache).

    Returns:
        A float32 tensor of shape `(sequence_length,)`.
    """
    positions = ops.arange(sequence_length, dtype="float32")
    return positions + ops.cast(start_index, "float32")


def sine_position_encoding(positions, hidden_dim, max_wavelength=10000):
    """The sinusoid table of "Attention Is All You Need", interleaved.

    Channel `2k` holds `sin(p / max_wavelength ** (2k / hidden_dim))` and
    channel `2k + 1` the cosine of the same angle, the layout of
    `keras_hub.layers.SinePositionEncoding`. An odd `hidden_dim` ends with a
    sine channel.

    Args:
        positions: tensor of shape `(T,)` or `(B, T)`.
        hidden_dim: int, the number of channels `D`.
        max_wavelength: number, the longest wavelength (over `2 pi`).

    Returns:
        A float32 tensor of shape `positions.shape + (hidden_dim,)`.

    Example:

    ```python
    import keras
    from keras_attn.ops import sine_position_encoding

    table = sine_position_encoding(keras.ops.arange(4), 8)  # (4, 8)
    ```

    References:
        - Attention Is All You Need (Vaswani et al., 2017).
    """
    check_positive_int("hidden_dim", hidden_dim)
    check_positive_number("max_wavelength", max_wavelength)
    positions = ops.cast(positions, "float32")
    channels = ops.arange(hidden_dim, dtype="int32")
    # Channels 2k and 2k + 1 share the frequency 1 / wavelength_k.
    exponent = ops.cast(2 * (channels // 2), "float32") / float(hidden_dim)
    inverse_wavelength = ops.power(1.0 / float(max_wavelength), exponent)
    # (..., T, 1) * (D,) -> (..., T, D)
    angles = ops.expand_dims(positions, -1) * inverse_wavelength
    is_sine = ops.equal(channels % 2, 0)
    return ops.where(is_sine, ops.sin(angles), ops.cos(angles))


def sincos_1d(positions, dim, max_wavelength=10000):
    """Blocked sin-cos encoding: `[sin(p w_0..w_{D/2-1}), cos(...)]`.

    The layout of MAE and ViT-style fixed encodings (sines in the first half
    of the channels, cosines in the second), with frequencies
    `w_k = max_wavelength ** (-k / (D / 2))`.

    Args:
        positions: tensor of any shape `P`.
        dim: int, even, the number of channels `D`.
        max_wavelength: number, the longest wavelength (over `2 pi`).

    Returns:
        A float32 tensor of shape `P + (dim,)`.
    """
    check_positive_int("dim", dim)
    if dim % 2:
        raise ValueError(f"`dim` must be even. Received: dim={dim}")
    check_positive_number("max_wavelength", max_wavelength)
    half = dim // 2
    exponent = ops.arange(half, dtype="float32") / float(half)
    frequencies = ops.power(1.0 / float(max_wavelength), exponent)
    # (..., 1) * (D/2,) -> (..., D/2)
    angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * frequencies
    return ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1)


def sincos_2d_positions(height, width, dim, max_wavelength=10000):
    """Fixed 2-D sin-cos positions for a `height x width` grid of patches.

    As in MAE: the first `dim / 2` channels encode the row index and the
    last `dim / 2` the column index, each with `sincos_1d`. Rows of the
    result follow the row-major order of patches, the order of
    `reshape((B, height * width, C))` on a `(B, height, width, C)` grid.

    Args:
        height: int, the number of patch rows.
        width: int, the number of patch columns.
        dim: int, divisible by 4, the number of channels `D`.
        max_wavelength: number, the longest wavelength (over `2 pi`).

    Returns:
        A float32 tensor of shape `(height * width, dim)`.

    Example:

    ```python
    from keras_attn.ops import sincos_2d_positions

    pos = sincos_2d_positions(14, 14, 768)  # ViT-B/16 on 224 x 224
    # pos.shape == (196, 768)
    ```

    References:
        - Masked Autoencoders Are Scalable Vision Learners (He et al., 2022).
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    check_positive_int("dim", dim)
    if dim % 4:
        raise ValueError(
            f"`dim` must be divisible by 4 (sin and cos for rows and "
            f"columns). Received: dim={dim}"
        )
    # (H * W,) row and column index of each patch, row-major.
    index = ops.arange(height * width, dtype="int32")
    rows = index // width
    cols = index % width
    return ops.concatenate(
        [
            sincos_1d(rows, dim // 2, max_wavelength),  # (H * W, D/2)
            sincos_1d(cols, dim // 2, max_wavelength),  # (H * W, D/2)
        ],
        axis=-1,
    )


def rotary_cos_sin(
    positions, rotary_dim, max_wavelength=10000, scaling_factor=1.0
):
    """Cosines and sines of the rotary (RoPE) angles, halves layout.

    Channel pairs are `(k, k + rotary_dim / 2)` (the "rotate half" layout of
    GPT-NeoX, Llama and `keras_hub.layers.RotaryEmbedding`), with angle
    `p / scaling_factor * max_wavelength ** (-2k / rotary_dim)`.

    Args:
        positions: tensor of shape `(T,)` or `(B, T)`.
        rotary_dim: int, even, the number of rotated channels `H`.
        max_wavelength: number, the base of the frequencies.
        scaling_factor: number, positions are divided by it (linear
            position interpolation for longer contexts).

    Returns:
        `(cos, sin)`, two float32 tensors of shape
        `positions.shape + (rotary_dim,)`.

    References:
        - RoFormer: Enhanced Transformer with Rotary Position Embedding
          (Su et al., 2021).
    """
    check_positive_int("rotary_dim", rotary_dim)
    if rotary_dim % 2:
        raise ValueError(
            f"`rotary_dim` must be even (channels rotate in pairs). "
            f"Received: rotary_dim={rotary_dim}"
        )
    check_positive_number("max_wavelength", max_wavelength)
    check_positive_number("scaling_factor", scaling_factor)
    exponent = ops.arange(0, rotary_dim, 2, dtype="float32") / rotary_dim
    inverse_freq = ops.power(float(max_wavelength), -exponent)
    inverse_freq = inverse_freq / float(scaling_factor)
    # (..., T, 1) * (H/2,) -> (..., T, H/2)
    angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * inverse_freq
    # Both channels of pair k get angle k: (..., T, H).
    angles = ops.concatenate([angles, angles], axis=-1)
    return ops.cos(angles), ops.sin(angles)


def apply_rotary(inputs, cos, sin):
    """Rotates channel pairs `(k, k + H/2)` of `inputs` by the given angles.

    `x * cos + rotate_half(x) * sin` with
    `rotate_half([x1, x2]) = [-x2, x1]`. The rotation runs in float32 and
    the result is cast back to the dtype of `inputs`.

    Args:
        inputs: tensor whose last axis has `H` (even) channels.
        cos: tensor broadcastable to `inputs`, from `rotary_cos_sin`.
        sin: tensor broadcastable to `inputs`, from `rotary_cos_sin`.

    Returns:
        A tensor of the shape and dtype of `inputs`.
    """
    dtype = inputs.dtype
    x = ops.cast(inputs, "float32")
    x1, x2 = ops.split(x, 2, axis=-1)
    rotated = ops.concatenate([-x2, x1], axis=-1)
    return ops.cast(x * cos + rotated * sin, dtype)


def alibi_slopes(num_heads, alibi_bias_max=8):
    """The per-head slopes of ALiBi.

    For `n` a power of two the slopes are the geometric sequence
    `r, r**2, ..., r**n` with `r = 2 ** (-alibi_bias_max / n)` (for the
    default 8: `1/2, 1/4, ..., 1/256` with 8 heads). For other `n` the paper
    takes the slopes of the closest smaller power of two `m`, then the odd
    terms (1st, 3rd, ...) of the sequence for `2m` until there are `n`.

    Args:
        num_heads: int, the number of heads `N`.
        alibi_bias_max: number, the exponent of the smallest slope for a
            power-of-two head count.

    Returns:
        A float32 tensor of shape `(num_heads,)`.

    References:
        - Train Short, Test Long: Attention with Linear Biases Enables
          Input Length Extrapolation (Press et al., 2022).
    """
    check_positive_int("num_heads", num_heads)
    check_positive_number("alibi_bias_max", alibi_bias_max)

    def geometric(n):
        ratio = 2.0 ** (-alibi_bias_max / n)
        return [ratio ** (i + 1) for i in range(n)]

    closest = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = geometric(closest)
    if closest != num_heads:
        slopes += geometric(2 * closest)[0::2][: num_heads - closest]
    return ops.convert_to_tensor(slopes, dtype="float32")


def alibi_bias(
    num_heads,
    query_length,
    key_length,
    alibi_bias_max=8,
    start_index=None,
    bidirectional=False,
):
    """The additive ALiBi bias `(1, N, T, S)` for attention scores.

    Head `h` adds `slope_h * (j - i')` to the score of query `i` and key
    `j`, where `i' = start_index + i` is the query's key position: 0 on the
    diagonal, `-slope * distance` for keys in the past. With
    `bidirectional=True` the penalty is `-slope * |j - i'|` both ways (for
    encoders; the paper's form is causal).

    Under a causal mask this gives the same softmax as
    `keras_hub.layers.AlibiBias` (which adds `slope * (j - (S - 1))`, a
    per-row constant away from this one).

    Args:
        num_heads: int, the number of heads `N`.
        query_length: int or scalar int tensor, `T`.
        key_length: int or scalar int tensor, `S`.
        alibi_bias_max: number, see `alibi_slopes`.
        start_index: int or scalar tensor, the key position of query 0.
            Defaults to `S - T` (queries are the last positions, as in a
            decoding step against a cache).
        bidirectional: bool, whether to penalize the distance to future keys
            too.

    Returns:
        A float32 tensor of shape `(1, num_heads, query_length, key_length)`.
    """
    for name, value in (
        ("query_length", query_length),
        ("key_length", key_length),
    ):
        # A scalar tensor is a length unknown until run time (a None
        # sequence axis); Python values are checked here.
        if isinstance(value, (numbers.Number, type(None))):
            check_positive_int(name, value)
    if start_index is None:
        start_index = key_length - query_length
    slopes = alibi_slopes(num_heads, alibi_bias_max)
    # (T, S): key position minus query position.
    distance = ops.expand_dims(
        ops.arange(key_length, dtype="float32"), 0
    ) - ops.expand_dims(sequence_positions(query_length, start_index), 1)
    if bidirectional:
        distance = -ops.abs(distance)
    # (N, 1, 1) * (1, T, S) -> (1, N, T, S)
    bias = ops.reshape(slopes, (num_heads, 1, 1)) * distance[None]
    return bias[None]


def t5_relative_position_bucket(
    relative_position, bidirectional=True, num_buckets=32, max_distance=128
):
    """T5's bucket index for each relative position `key - query`.

    Half the buckets (per direction when bidirectional) hold the exact
    distances `0 .. max_exact - 1`; the rest cover `max_exact ..
    max_distance` on a log scale, and all larger distances share the last
    bucket. Bidirectional: buckets `[0, num_buckets / 2)` are keys at or
    before the query, `[num_buckets / 2, num_buckets)` keys after it.
    Unidirectional: keys after the query fall in bucket 0 (they are masked
    in a causal decoder anyway).

    Args:
        relative_position: integer tensor of any shape, `key - query`.
        bidirectional: bool.
        num_buckets: int, the number of buckets.
        max_distance: int, distances from here on share the last bucket.

    Returns:
        An int32 tensor of the shape of `relative_position`.

    References:
        - Exploring the Limits of Transfer Learning with a Unified
          Text-to-Text Transformer (Raffel et al., 2020).
    """
    check_positive_int("num_buckets", num_buckets)
    check_positive_int("max_distance", max_distance)
    n = -ops.cast(relative_position, "int32")  # query - key
    bucket = ops.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        bucket = bucket + ops.cast(ops.less(n, 0), "int32") * num_buckets
        n = ops.abs(n)
    else:
        n = ops.maximum(n, 0)
    max_exact = num_buckets // 2
    if max_exact < 1:
        raise ValueError(
            "`num_buckets` is too small: it needs at least 2 buckets per "
            f"direction. Received: num_buckets={num_buckets}"
        )
    # Log-spaced buckets; the maximum(.., 1) only keeps log() finite for the
    # small distances that `where` discards below.
    n_float = ops.cast(ops.maximum(n, 1), "float32")
    large = max_exact + ops.cast(
        ops.log(n_float / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact),
        "int32",
    )
    large = ops.minimum(large, num_buckets - 1)
    return bucket + ops.where(ops.less(n, max_exact), n, large)


def relative_position_buckets(
    query_length,
    key_length,
    start_index=0,
    bidirectional=True,
    num_buckets=32,
    max_distance=128,
):
    """T5 buckets `(T, S)` for queries at `start_index + i` and keys at `j`.

    Args:
        query_length: int or scalar int tensor, `T`.
        key_length: int or scalar int tensor, `S`.
        start_index: int or scalar int tensor, the key position of query 0
            (the cache index of a decoding step).
        bidirectional: bool, see `t5_relative_position_bucket`.
        num_buckets: int, see `t5_relative_position_bucket`.
        max_distance: int, see `t5_relative_position_bucket`.

    Returns:
        An int32 tensor of shape `(query_length, key_length)`.
    """
    query = ops.arange(query_length, dtype="int32") + ops.cast(
        start_index, "int32"
    )
    key = ops.arange(key_length, dtype="int32")
    # (1, S) - (T, 1) -> (T, S)
    relative = key[None, :] - query[:, None]
    return t5_relative_position_bucket(
        relative, bidirectional, num_buckets, max_distance
    )
