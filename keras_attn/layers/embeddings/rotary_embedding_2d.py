import math
import numbers

import keras
from keras import ops

from keras_attn.layers.embeddings.rotary_embedding import RotaryEmbedding
from keras_attn.ops import positions as position_ops
from keras_attn.ops import rope as rope_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class RotaryEmbedding2D(RotaryEmbedding):
    """Axial 2-D rotary embedding for image patches (RoPE on a grid).

    Each token has a `(row, column)` position. The first half of the feature
    axis is rotated like a 1-D `RotaryEmbedding` of `H / 2` channels by the
    row, the second half by the column. The score `q_i . k_j` then depends on
    the positions only through the 2-D offset between patches `i` and `j`.
    This is the axial RoPE of Heo et al. (2024) and of keras-hub's Gemma 4
    vision encoder (the same layout), applied to queries and keys of a
    vision transformer.

    Without `positions`, token `t` of the sequence gets the positions of
    `keras_attn.ops.grid_positions`: `num_prefix_tokens` tokens (a class
    token) first, unrotated at `(0, 0)`, then the patches of a row-major
    `grid_size` grid, as `keras_attn.layers.PatchEmbedding` orders them. With
    `grid_size=None` the grid is square, its side the square root of the
    number of patches (known at call time); the layer then follows the
    input's resolution.

    All the frequency arguments of `RotaryEmbedding` apply to each half.
    `max_wavelength` defaults to `100` here (Heo et al.): a grid is short,
    and a base of 10000 would leave most channels nearly unrotated.

    Args:
        max_wavelength: number. The base of the geometric frequencies.
            Defaults to `100`.
        grid_size: None or a pair of ints `(rows, columns)`. Defaults to
            `None` (a square grid).
        num_prefix_tokens: int. Tokens before the patches, at `(0, 0)`.
            Defaults to `0`.
        **kwargs: the other arguments of `RotaryEmbedding` (`scaling_factor`,
            `rope_type`, `sequence_axis`, `feature_axis`,
            `partial_rotary_factor`, ...) and of `keras.layers.Layer`.

    Call arguments:
        inputs: a tensor of rank 3 or more, for example `(B, T, N, H)`, with
            `H` divisible by 4.
        start_index: ignored (accepted so that attention layers can call
            every rotary layer alike; a grid is not decoded step by step).
        positions: optional tensor `(T, 2)` or `(B, T, 2)`, the (row,
            column) of every token. Overrides the grid.

    Returns:
        The rotated tensor, of the shape of `inputs`.

    Example:

    ```python
    import keras
    import keras_attn

    # A 4 x 4 grid of patches behind a class token: T = 17.
    rope = keras_attn.layers.RotaryEmbedding2D(num_prefix_tokens=1)
    query = rope(keras.random.normal((2, 17, 4, 32)))  # (B, T, N, H)

    # Through the attention layer, as a vision transformer uses it.
    attention = keras_attn.layers.MultiHeadAttention(
        num_heads=4, key_dim=32, rotary_embedding=rope
    )
    tokens = keras.random.normal((2, 17, 64))
    out = attention(tokens, tokens)  # (2, 17, 64)
    ```

    References:
        - Rotary Position Embedding for Vision Transformer (Heo et al.,
          2024).
    """

    _units = 2

    def __init__(
        self,
        max_wavelength=100,
        grid_size=None,
        num_prefix_tokens=0,
        **kwargs,
    ):
        super().__init__(max_wavelength=max_wavelength, **kwargs)
        if grid_size is not None:
            if (
                not isinstance(grid_size, (tuple, list))
                or len(grid_size) != 2
                or not all(
                    isinstance(s, numbers.Integral)
                    and not isinstance(s, bool)
                    and s > 0
                    for s in grid_size
                )
            ):
                raise ValueError(
                    "`grid_size` must be None or a pair of positive integers."
                    f" Received: grid_size={grid_size!r}"
                )
            grid_size = tuple(int(s) for s in grid_size)
        if (
            isinstance(num_prefix_tokens, bool)
            or not isinstance(num_prefix_tokens, numbers.Integral)
            or num_prefix_tokens < 0
        ):
            raise ValueError(
                "`num_prefix_tokens` must be a non-negative integer. "
                f"Received: num_prefix_tokens={num_prefix_tokens!r}"
            )
        self.grid_size = grid_size
        self.num_prefix_tokens = int(num_prefix_tokens)

    def _grid(self, inputs, sequence_axis):
        """The `(T, 2)` positions of the tokens of `inputs`."""
        prefix = self.num_prefix_tokens
        length = inputs.shape[sequence_axis]
        if self.grid_size is not None:
            rows, columns = self.grid_size
            if length is not None and length != prefix + rows * columns:
                raise ValueError(
                    "The sequence length of `inputs` must be num_prefix_tokens"
                    " + rows * columns of `grid_size`. Received: sequence "
                    f"length={length}, grid_size={self.grid_size}, "
                    f"num_prefix_tokens={prefix}"
                )
            return rope_ops.grid_positions(rows, columns, prefix)
        if length is not None:
            side = math.isqrt(max(length - prefix, 0))
            if length - prefix < 1 or side * side != length - prefix:
                raise ValueError(
                    "Without `grid_size` the patches must form a square grid:"
                    " sequence length - num_prefix_tokens must be a square. "
                    f"Received: sequence length={length}, num_prefix_tokens="
                    f"{prefix}"
                )
            return rope_ops.grid_positions(side, side, prefix)
        # Unknown length (a symbolic trace): the side as a tensor.
        side = ops.sqrt(
            ops.cast(ops.shape(inputs)[sequence_axis] - prefix, "float32")
        )
        side = ops.cast(ops.round(side), "int32")
        return rope_ops.grid_positions(side, side, prefix)

    def call(self, inputs, start_index=0, positions=None):
        sequence_axis, feature_axis = self._axes(tuple(inputs.shape))
        if positions is not None:
            dtype = position_ops._dtype_name(positions)
            if "int" not in dtype and "float" not in dtype:
                raise ValueError(
                    "`positions` must be an integer or float tensor. "
                    f"Received: positions with dtype={dtype}"
                )
            if len(positions.shape) not in (2, 3) or positions.shape[-1] != 2:
                raise ValueError(
                    "`positions` must have shape `(sequence_length, 2)` or "
                    "`(batch_size, sequence_length, 2)`. Received: "
                    f"positions.shape={tuple(positions.shape)}"
                )
        if positions is None:
            positions = self._grid(inputs, sequence_axis)
        # Work on (B, T, ..., H): sequence second, features last.
        x = ops.moveaxis(inputs, (sequence_axis, feature_axis), (1, -1))
        x = ops.cast(x, "float32")
        first, second = ops.split(x, 2, axis=-1)
        x = ops.concatenate(
            [
                self._rotate(first, positions[..., 0]),
                self._rotate(second, positions[..., 1]),
            ],
            axis=-1,
        )
        x = ops.cast(x, self.compute_dtype)
        return ops.moveaxis(x, (1, -1), (sequence_axis, feature_axis))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grid_size": self.grid_size,
                "num_prefix_tokens": self.num_prefix_tokens,
            }
        )
        return config
