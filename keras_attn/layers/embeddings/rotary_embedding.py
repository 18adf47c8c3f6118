import keras
from keras import ops

from keras_attn.ops import positions as position_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (RoPE), applied to queries or keys.

    Rotates each pair of channels `(k, k + H/2)` of the input by an angle
    proportional to the token's position, with a frequency that falls
    geometrically with `k`. Applied to both queries and keys, the dot product
    `q_i . k_j` then depends on the positions only through `i - j`, so
    attention sees relative positions while each token is encoded on its own
    (which keeps KV caches valid). The layer has no weights.

    Compatible with `keras_hub.layers.RotaryEmbedding` (its default
    `rope_type="linear"`): same arguments and outputs. The rotation runs in
    float32 and the result is cast to the compute dtype.

    Args:
        max_wavelength: number. The base of the geometric frequencies.
            Defaults to `10000`.
        scaling_factor: number. Positions are divided by it (linear position
            interpolation, to stretch a trained model to longer inputs).
            Defaults to `1.0`.
        sequence_axis: int. The sequence axis of the input. Defaults to `1`.
        feature_axis: int. The feature axis of the input, of even size.
            Defaults to `-1`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: a tensor of rank 3 or more, for example `(B, T, N, H)`
            (queries or keys per head) or `(B, T, H)`.
        start_index: int or scalar int tensor. The position of the first
            token: the cache index during cached decoding. Defaults to `0`.
        positions: optional tensor of shape `(T,)` or `(B, T)`, the position
            of every token. When given, `start_index` is ignored.

    Returns:
        The rotated tensor, of the shape of `inputs`.

    Example:

    ```python
    import keras
    import keras_attn

    rope = keras_attn.layers.RotaryEmbedding()
    query = keras.random.normal((2, 16, 4, 32))  # (B, T, N, H)
    key = keras.random.normal((2, 16, 4, 32))
    query, key = rope(query), rope(key)
    # One decoding step at position 16 against a cache.
    step_query = rope(keras.random.normal((2, 1, 4, 32)), start_index=16)
    ```

    References:
        - RoFormer: Enhanced Transformer with Rotary Position Embedding
          (Su et al., 2021).
    """

    def __init__(
        self,
        max_wavelength=10000,
        scaling_factor=1.0,
        sequence_axis=1,
        feature_axis=-1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        position_ops._check_positive_number("max_wavelength", max_wavelength)
        position_ops._check_positive_number("scaling_factor", scaling_factor)
        for name, axis in (
            ("sequence_axis", sequence_axis),
            ("feature_axis", feature_axis),
        ):
            if isinstance(axis, bool) or not isinstance(axis, int):
                raise ValueError(
                    f"`{name}` must be an integer. Received: {name}={axis!r}"
                )
        self.max_wavelength = max_wavelength
        self.scaling_factor = scaling_factor
        self.sequence_axis = sequence_axis
        self.feature_axis = feature_axis
        self.built = True

    def _axes(self, shape):
        rank = len(shape)
        if rank < 3:
            raise ValueError(
                "`inputs` must have rank 3 or more, e.g. (batch, sequence, "
                f"features). Received: inputs.shape={tuple(shape)}"
            )
        sequence_axis = self.sequence_axis % rank
        feature_axis = self.feature_axis % rank
        if not -rank <= self.sequence_axis < rank:
            raise ValueError(
                f"`sequence_axis` is out of range for inputs of rank {rank}. "
                f"Received: sequence_axis={self.sequence_axis}"
            )
        if not -rank <= self.feature_axis < rank:
            raise ValueError(
                f"`feature_axis` is out of range for inputs of rank {rank}. "
                f"Received: feature_axis={self.feature_axis}"
            )
        if sequence_axis == feature_axis or 0 in (sequence_axis, feature_axis):
            raise ValueError(
                "`sequence_axis` and `feature_axis` must be distinct and not "
                f"the batch axis 0. Received: sequence_axis="
                f"{self.sequence_axis}, feature_axis={self.feature_axis}"
            )
        features = shape[feature_axis]
        if features is not None and features % 2:
            raise ValueError(
                "The feature axis of `inputs` must have an even size "
                f"(channels rotate in pairs). Received: inputs.shape="
                f"{tuple(shape)}"
            )
        return sequence_axis, feature_axis

    def call(self, inputs, start_index=0, positions=None):
        sequence_axis, feature_axis = self._axes(tuple(inputs.shape))
        if positions is not None:
            position_ops._check_positions(positions)
        # Work on (B, T, ..., H): sequence second, features last.
        x = ops.moveaxis(inputs, (sequence_axis, feature_axis), (1, -1))
        rank = len(x.shape)
        if positions is None:
            positions = position_ops.sequence_positions(
                ops.shape(x)[1], start_index
            )
        cos, sin = position_ops.rotary_cos_sin(
            positions,
            x.shape[-1],
            self.max_wavelength,
            self.scaling_factor,
        )
        # (T, H) or (B, T, H) -> (1 or B, T, 1, ..., 1, H) against x.
        if len(cos.shape) == 2:
            cos, sin = cos[None], sin[None]
        middle = (1,) * (rank - 3)
        cos = ops.reshape(cos, (ops.shape(cos)[0], -1, *middle, x.shape[-1]))
        sin = ops.reshape(sin, (ops.shape(sin)[0], -1, *middle, x.shape[-1]))
        x = position_ops.apply_rotary(x, cos, sin)
        x = ops.cast(x, self.compute_dtype)
        return ops.moveaxis(x, (1, -1), (sequence_axis, feature_axis))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor,
                "sequence_axis": self.sequence_axis,
                "feature_axis": self.feature_axis,
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
