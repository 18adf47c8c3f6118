import keras
from keras import ops

from keras_attn._validation import check_positive_number
from keras_attn.ops import positions as position_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class SinePositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal position encoding, to add to token embeddings.

    Returns, for each position `p` and channel `c` of the input, `sin` (even
    `c`) or `cos` (odd `c`) of `p / max_wavelength ** (2 * (c // 2) / D)`:
    wavelengths grow geometrically from `2 pi` to `2 pi * max_wavelength`
    across the channels. Any fixed offset between two positions is a linear
    map of the encodings, which lets attention learn relative offsets. The
    layer has no weights and returns the encoding only (add it yourself).

    Compatible with `keras_hub.layers.SinePositionEncoding`. The table is
    computed in float32 and cast to the compute dtype.

    Args:
        max_wavelength: number. The longest wavelength (over `2 pi`).
            Defaults to `10000`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: a tensor `(B, T, D)` (rank 2 or more); only its shape is used.
        start_index: int or scalar int tensor. The position of the first
            token: the cache index during cached decoding. Defaults to `0`.
        positions: optional tensor of shape `(T,)` or `(B, T)`, the position
            of every token. When given, `start_index` is ignored.

    Returns:
        The encoding, broadcast to the shape of `inputs`.

    Example:

    ```python
    import keras
    import keras_attn

    tokens = keras.random.normal((2, 10, 16))  # (B, T, D) embeddings
    encoding = keras_attn.layers.SinePositionEncoding()(tokens)
    outputs = tokens + encoding
    ```

    References:
        - Attention Is All You Need (Vaswani et al., 2017).
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        check_positive_number("max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        self.built = True

    def call(self, inputs, start_index=0, positions=None):
        shape = tuple(inputs.shape)
        if len(shape) < 2:
            raise ValueError(
                "`inputs` must have rank 2 or more, e.g. (batch, sequence, "
                f"features). Received: inputs.shape={shape}"
            )
        if positions is None:
            positions = position_ops.sequence_positions(
                ops.shape(inputs)[-2], start_index
            )
        else:
            position_ops._check_positions(positions)
        # (T, D) or (B, T, D)
        encoding = position_ops.sine_position_encoding(
            positions, shape[-1], self.max_wavelength
        )
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding, ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
