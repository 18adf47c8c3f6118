import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn.ops import positions as position_ops
from keras_attn.ops.score_mods import relative_position_score_mod


@keras.saving.register_keras_serializable(package="keras_attn")
class RelativePositionBias(keras.layers.Layer):
    """T5's learned, bucketed relative position bias for attention scores.

    Each query-key pair is put in one of `num_buckets` buckets by its
    relative position `key - query`: exact buckets for short distances,
    log-spaced ones up to `max_distance`, one shared bucket beyond (see
    `keras_attn.ops.t5_relative_position_bucket`). A learned table
    `(num_buckets, num_heads)` gives each head a scalar per bucket, and the
    result is an additive bias `(1, N, T, S)` for the attention scores, shared
    across layers in T5.

    The layer is called on the query (and optionally key) tensors, of which
    only the sequence lengths (axis 1) are used, so it fits a functional
    model; `compute_bias` takes the lengths as integers instead. Query `i`
    sits at position `start_index + i` and key `j` at `j`: for one decoding
    step against a cache of `S` keys pass `start_index` = the cache index.

    Args:
        num_heads: int. The number of attention heads `N`.
        num_buckets: int. The number of buckets (per direction when
            bidirectional: half each). Defaults to `32`.
        max_distance: int. Distances from here on share the last bucket.
            Defaults to `128`.
        bidirectional: bool. Whether keys after the query get their own
            buckets (encoders). `False` for causal decoders. Defaults to
            `True`.
        initializer: the initializer of the table. Defaults to
            `"glorot_uniform"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        query: a tensor `(B, T, ...)`; only `T` is used.
        key: optional tensor `(B, S, ...)`; only `S` is used. Defaults to
            `query` (self-attention).
        start_index: int or scalar int tensor. The position of query 0.
            Defaults to `0`.

    Returns:
        The bias, of shape `(1, num_heads, T, S)` in the compute dtype.

    Example:

    ```python
    import keras
    import keras_attn

    bias_layer = keras_attn.layers.RelativePositionBias(num_heads=4)
    hidden = keras.random.normal((2, 10, 32))  # (B, T, D)
    bias = bias_layer(hidden)  # (1, 4, 10, 10)
    # One decoding step at position 6 against a cache of 10 keys.
    step_bias = bias_layer.compute_bias(1, 10, start_index=6)  # (1, 4, 1, 10)
    ```

    References:
        - Self-Attention with Relative Position Representations (Shaw et al.,
          2018).
        - Exploring the Limits of Transfer Learning with a Unified
          Text-to-Text Transformer (Raffel et al., 2020).
    """

    def __init__(
        self,
        num_heads,
        num_buckets=32,
        max_distance=128,
        bidirectional=True,
        initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_buckets = check_positive_int("num_buckets", num_buckets)
        self.max_distance = check_positive_int("max_distance", max_distance)
        self.bidirectional = bool(bidirectional)
        per_direction = num_buckets // 2 if bidirectional else num_buckets
        if per_direction < 2:
            raise ValueError(
                "`num_buckets` must leave at least 2 buckets per direction. "
                f"Received: num_buckets={num_buckets}, "
                f"bidirectional={bidirectional}"
            )
        self.initializer = keras.initializers.get(initializer)

    def build(self, query_shape, key_shape=None):
        self.relative_attention_bias = self.add_weight(
            name="embeddings",
            shape=(self.num_buckets, self.num_heads),
            initializer=self.initializer,
            trainable=True,
        )
        self.built = True

    def compute_bias(self, query_length, key_length, start_index=0):
        """The bias `(1, N, T, S)` for given lengths.

        Args:
            query_length: int or scalar int tensor, `T`.
            key_length: int or scalar int tensor, `S`.
            start_index: int or scalar int tensor, the position of query 0.

        Returns:
            A tensor of shape `(1, num_heads, query_length, key_length)`.
        """
        for name, value in (
            ("query_length", query_length),
            ("key_length", key_length),
        ):
            if isinstance(value, (int, float)):
                check_positive_int(name, value)
        if not self.built:
            self.build(None)
        # (T, S) int32
        buckets = position_ops.relative_position_buckets(
            query_length,
            key_length,
            start_index=start_index,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        table = ops.convert_to_tensor(self.relative_attention_bias)
        bias = ops.take(table, buckets, axis=0)  # (T, S, N)
        bias = ops.transpose(bias, (2, 0, 1))[None]  # (1, N, T, S)
        return ops.cast(bias, self.compute_dtype)

    def score_mod(self):
        """This layer's bias as a score modifier for the attention op.

        Returns `keras_attn.ops.relative_position_score_mod` over this
        layer's table: a function `(scores, batch, head, q_idx, kv_idx)`
        that adds the bias of `compute_bias`, for
        `scaled_dot_product_attention(..., score_mod=...)`, whose chunked
        path then never builds the `(N, T, S)` bias. `q_idx` and `kv_idx`
        are positions (shift `q_idx` by the start index of a decoding
        step).

        Returns:
            A function `(scores, batch, head, q_idx, kv_idx) -> scores`.
        """
        if not self.built:
            self.build(None)
        return relative_position_score_mod(
            self.relative_attention_bias,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )

    def call(self, query, key=None, start_index=0):
        for name, tensor in (("query", query), ("key", key)):
            if tensor is not None and len(tensor.shape) < 2:
                raise ValueError(
                    f"`{name}` must have rank 2 or more, (batch, sequence, "
                    f"...). Received: {name}.shape={tuple(tensor.shape)}"
                )
        query_length = ops.shape(query)[1]
        key_length = query_length if key is None else ops.shape(key)[1]
        return self.compute_bias(query_length, key_length, start_index)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_buckets": self.num_buckets,
                "max_distance": self.max_distance,
                "bidirectional": self.bidirectional,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config

    def compute_output_shape(self, query_shape, key_shape=None):
        key_length = query_shape[1] if key_shape is None else key_shape[1]
        return (1, self.num_heads, query_shape[1], key_length)
