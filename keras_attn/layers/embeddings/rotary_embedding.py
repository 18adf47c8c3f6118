import keras
from keras import ops

from keras_attn._validation import check_positive_number
from keras_attn.ops import positions as position_ops
from keras_attn.ops import rope as rope_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (RoPE), applied to queries or keys.

    Rotates each pair of channels `(k, k + R/2)` of the input by an angle
    proportional to the token's position, with a frequency that falls
    geometrically with `k`. Applied to both queries and keys, the dot product
    `q_i . k_j` then depends on the positions only through `i - j`, so
    attention sees relative positions while each token is encoded on its own
    (which keeps KV caches valid). The layer has no weights.

    Compatible with `keras_hub.layers.RotaryEmbedding`: the same arguments
    (`rope_type` `"linear"`, `"dynamic"` or `"yarn"` with `beta_fast`,
    `beta_slow`, `original_max_position_embeddings`, `truncate`,
    `denominator_dim`), so `RotaryEmbedding.from_config(hub_layer.get_config())`
    builds the same layer, with the same outputs. Beyond keras-hub:

    - `rope_type="llama3"`: Llama 3.1's frequency smoothing
      (`low_freq_factor`, `high_freq_factor`, `scaling_factor` as the factor
      and `original_max_position_embeddings` as the training context);
    - `partial_rotary_factor`: rotate only the first
      `R = int(H * partial_rotary_factor)` channels of each head and pass
      the others through (GPT-NeoX, Phi; frequencies computed for `R`).

    The frequency formulas are in `keras_attn.ops.rope_inverse_frequencies`.
    YaRN also multiplies cos and sin by `0.1 ln(scaling_factor) + 1`. The
    rotation runs in float32 and the result is cast to the compute dtype.

    Args:
        max_wavelength: number. The base of the geometric frequencies.
            Defaults to `10000`.
        scaling_factor: number. The context-extension factor: linear
            scaling divides positions by it; see `rope_type`. Defaults to
            `1.0`.
        rope_type: `"linear"`, `"dynamic"`, `"yarn"` or `"llama3"`.
            Defaults to `"linear"`.
        beta_fast: number. YaRN: pairs turning more than this many times
            over the original context keep their frequency. Defaults to
            `32.0`.
        beta_slow: number. YaRN: pairs turning fewer times are interpolated.
            Defaults to `1.0`.
        original_max_position_embeddings: int. The training context length
            (YaRN and Llama 3). Defaults to `4096`.
        truncate: bool. YaRN: round the ramp's ends to whole pairs. Defaults
            to `True`.
        sequence_axis: int. The sequence axis of the input. Defaults to `1`.
        feature_axis: int. The feature axis of the input. Defaults to `-1`.
        denominator_dim: int or None. For `"linear"` and `"dynamic"`,
            frequencies `max_wavelength ** (-2k / denominator_dim)` instead
            of `-2k / R` (keras-hub's option). Defaults to `None`.
        low_freq_factor: number. Llama 3: wavelengths longer than
            `original_max_position_embeddings / low_freq_factor` are
            interpolated. Defaults to `1.0`.
        high_freq_factor: number. Llama 3: wavelengths shorter than
            `original_max_position_embeddings / high_freq_factor` are kept;
            those between are smoothed. Defaults to `4.0`.
        partial_rotary_factor: number in `(0, 1]`. The fraction of the
            feature axis that rotates (its first channels); `R` must come
            out even. Defaults to `1.0`.
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

    # Llama 3.1: base 500000, 8x context extension of an 8192 context.
    llama = keras_attn.layers.RotaryEmbedding(
        max_wavelength=500000,
        scaling_factor=8.0,
        rope_type="llama3",
        original_max_position_embeddings=8192,
    )
    # YaRN, 4x; and GPT-NeoX style, rotating a quarter of each head.
    yarn = keras_attn.layers.RotaryEmbedding(
        scaling_factor=4.0, rope_type="yarn"
    )
    neox = keras_attn.layers.RotaryEmbedding(partial_rotary_factor=0.25)
    query = neox(llama(query))
    ```

    References:
        - RoFormer: Enhanced Transformer with Rotary Position Embedding
          (Su et al., 2021).
        - Extending Context Window of Large Language Models via Positional
          Interpolation (Chen et al., 2023).
        - YaRN: Efficient Context Window Extension of Large Language Models
          (Peng et al., 2023).
        - The Llama 3 Herd of Models (Grattafiori et al., 2024).
    """

    def __init__(
        self,
        max_wavelength=10000,
        scaling_factor=1.0,
        rope_type="linear",
        beta_fast=32.0,
        beta_slow=1.0,
        original_max_position_embeddings=4096,
        truncate=True,
        sequence_axis=1,
        feature_axis=-1,
        denominator_dim=None,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        partial_rotary_factor=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_number("partial_rotary_factor", partial_rotary_factor)
        if partial_rotary_factor > 1:
            raise ValueError(
                "`partial_rotary_factor` must be in (0, 1]. Received: "
                f"partial_rotary_factor={partial_rotary_factor!r}"
            )
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
        self.rope_type = rope_type
        self.beta_fast = beta_fast
        self.beta_slow = beta_slow
        self.original_max_position_embeddings = original_max_position_embeddings
        self.truncate = truncate
        self.sequence_axis = sequence_axis
        self.feature_axis = feature_axis
        self.denominator_dim = denominator_dim
        self.low_freq_factor = low_freq_factor
        self.high_freq_factor = high_freq_factor
        self.partial_rotary_factor = partial_rotary_factor
        rope_ops.check_rope_arguments(**self._frequency_arguments())
        self.built = True

    def _frequency_arguments(self):
        """The keyword arguments of `rope_inverse_frequencies` set here."""
        return {
            name: getattr(self, name) for name in rope_ops.FREQUENCY_ARGUMENTS
        }

    # The number of channels of a rotary unit: the head (1-D), half of it
    # (2-D, see RotaryEmbedding2D).
    _units = 1

    def _rotary_dim(self, features):
        """`R`: the rotated channels of each unit of `features` channels."""
        rotary_dim = int(features * self.partial_rotary_factor)
        if rotary_dim == 0 or rotary_dim % 2:
            raise ValueError(
                "The rotated channels `int(features * partial_rotary_factor)`"
                " must be a positive even number (channels rotate in pairs)."
                f" Received: features={features}, partial_rotary_factor="
                f"{self.partial_rotary_factor}"
            )
        return rotary_dim

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
        if features is None:
            raise ValueError(
                "The feature axis of `inputs` must have a known size. "
                f"Received: inputs.shape={tuple(shape)}"
            )
        if features % (2 * self._units):
            size = (
                "an even size" if self._units == 1 else "a size divisible by 4"
            )
            raise ValueError(
                f"The feature axis of `inputs` must have {size} (channels "
                f"rotate in pairs). Received: inputs.shape={tuple(shape)}"
            )
        self._rotary_dim(features // self._units)
        return sequence_axis, feature_axis

    def _rotate(self, x, positions):
        """Rotates float32 `x` `(B, T, ..., H)` at `positions` `(B|1, T)`."""
        features = x.shape[-1]
        rotary_dim = self._rotary_dim(features)
        inverse_frequencies = rope_ops.rope_inverse_frequencies(
            rotary_dim, **self._frequency_arguments()
        )
        cos, sin = rope_ops.rope_cos_sin(
            positions,
            inverse_frequencies,
            rope_ops.rope_attention_factor(self.rope_type, self.scaling_factor),
        )
        # (T, R) or (B, T, R) -> (1 or B, T, 1, ..., 1, R) against x.
        if len(cos.shape) == 2:
            cos, sin = cos[None], sin[None]
        middle = (1,) * (len(x.shape) - 3)
        cos = ops.reshape(cos, (ops.shape(cos)[0], -1, *middle, rotary_dim))
        sin = ops.reshape(sin, (ops.shape(sin)[0], -1, *middle, rotary_dim))
        if rotary_dim == features:
            return position_ops.apply_rotary(x, cos, sin)
        rotated = position_ops.apply_rotary(x[..., :rotary_dim], cos, sin)
        return ops.concatenate([rotated, x[..., rotary_dim:]], axis=-1)

    def call(self, inputs, start_index=0, positions=None):
        sequence_axis, feature_axis = self._axes(tuple(inputs.shape))
        if positions is not None:
            position_ops._check_positions(positions)
        # Work on (B, T, ..., H): sequence second, features last.
        x = ops.moveaxis(inputs, (sequence_axis, feature_axis), (1, -1))
        if positions is None:
            positions = position_ops.sequence_positions(
                ops.shape(x)[1], start_index
            )
        x = self._rotate(ops.cast(x, "float32"), positions)
        x = ops.cast(x, self.compute_dtype)
        return ops.moveaxis(x, (1, -1), (sequence_axis, feature_axis))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                **self._frequency_arguments(),
                "sequence_axis": self.sequence_axis,
                "feature_axis": self.feature_axis,
                "partial_rotary_factor": self.partial_rotary_factor,
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
