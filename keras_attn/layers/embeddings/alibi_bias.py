import keras
from keras import ops

from keras_attn._validation import check_positive_number
from keras_attn.ops import positions as position_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class AlibiBias(keras.layers.Layer):
    """Adds the ALiBi linear distance bias to attention scores.

    ALiBi (Attention with Linear Biases) uses no position embeddings: each
    head penalizes a score in proportion to the query-key distance, with a
    fixed head-specific slope from a geometric sequence (see
    `keras_attn.ops.alibi_slopes`). Models trained this way extrapolate to
    sequences longer than those seen in training. The layer has no weights.

    Called on scores `(B, N, T, S)`, it adds `slope_h * (j - (S - 1))` for
    key `j`, as `keras_hub.layers.AlibiBias` does (compatible: same
    arguments and outputs). Under a causal mask this equals the paper's
    `-slope_h * (i - j)` up to a per-row constant, which softmax ignores.

    For an attention layer that takes an additive bias (such as
    `keras_attn.layers.MultiHeadAttention(..., attention_bias=...)`), use
    `compute_bias(num_heads, query_length, key_length)`, which returns the
    paper's bias `(1, N, T, S)` with true query positions (optionally
    symmetric for encoders).

    Args:
        alibi_bias_max: number. For `N` a power of two the slopes are
            `2 ** (-alibi_bias_max * h / N)` for `h = 1 .. N`. Defaults to
            `8`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        attention_scores: the scores `(B, N, T, S)` before softmax.

    Returns:
        The scores plus the bias, of the shape of `attention_scores`.

    Example:

    ```python
    import keras
    import keras_attn

    scores = keras.random.normal((2, 4, 8, 8))  # (B, N, T, S)
    biased = keras_attn.layers.AlibiBias()(scores)
    # The same bias for an attention layer: (1, 4, 8, 8).
    bias = keras_attn.layers.AlibiBias().compute_bias(4, 8, 8)
    ```

    References:
        - Train Short, Test Long: Attention with Linear Biases Enables Input
          Length Extrapolation (Press et al., 2022).
    """

    def __init__(self, alibi_bias_max=8, **kwargs):
        super().__init__(**kwargs)
        check_positive_number("alibi_bias_max", alibi_bias_max)
        self.alibi_bias_max = alibi_bias_max
        self.built = True

    def call(self, attention_scores):
        shape = tuple(attention_scores.shape)
        if len(shape) != 4 or shape[1] is None:
            raise ValueError(
                "`attention_scores` must have shape (batch_size, num_heads, "
                "query_length, key_length) with a known num_heads. "
                f"Received: attention_scores.shape={shape}"
            )
        dtype = position_ops._dtype_name(attention_scores)
        if "float" not in dtype:
            raise ValueError(
                "`attention_scores` must be a float tensor. Received: "
                f"attention_scores with dtype={dtype}"
            )
        num_heads = shape[1]
        key_length = ops.shape(attention_scores)[-1]
        slopes = position_ops.alibi_slopes(num_heads, self.alibi_bias_max)
        # (S,): j - (S - 1), zero at the last key.
        distance = ops.arange(key_length, dtype="float32") - ops.cast(
            key_length - 1, "float32"
        )
        # (N, 1) * (1, S) -> (1, N, 1, S)
        bias = ops.reshape(slopes, (num_heads, 1)) * distance[None]
        bias = ops.cast(bias[None, :, None, :], self.compute_dtype)
        return ops.add(attention_scores, bias)

    def compute_bias(
        self,
        num_heads,
        query_length,
        key_length,
        start_index=None,
        bidirectional=False,
    ):
        """The additive bias `(1, N, T, S)` in the compute dtype.

        Args:
            num_heads: int, `N`.
            query_length: int, `T`.
            key_length: int, `S`.
            start_index: int or scalar tensor, the key position of query 0.
                Defaults to `S - T` (queries are the last positions).
            bidirectional: bool, whether future keys are penalized by their
                distance too (encoders). Defaults to `False` (the paper's
                causal form: `slope * (j - i)`, positive for future keys that
                a causal mask removes).

        Returns:
            A tensor of shape `(1, num_heads, query_length, key_length)`.
        """
        bias = position_ops.alibi_bias(
            num_heads,
            query_length,
            key_length,
            alibi_bias_max=self.alibi_bias_max,
            start_index=start_index,
            bidirectional=bidirectional,
        )
        return ops.cast(bias, self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"alibi_bias_max": self.alibi_bias_max})
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
