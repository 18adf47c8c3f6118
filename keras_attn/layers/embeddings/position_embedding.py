import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import static_shape
from keras_attn.ops import positions as position_ops


@keras.saving.register_keras_serializable(package="keras_attn")
class PositionEmbedding(keras.layers.Layer):
    """A learned embedding for each position, to add to token embeddings.

    Holds a trainable table of shape `(sequence_length, D)`, `D` the last
    axis of the input, and returns its first `T` rows for an input of `T`
    positions (rows `start_index .. start_index + T - 1` when decoding, or
    the rows named by `positions`), broadcast to the input's shape. Inputs
    may be shorter than `sequence_length` but not longer. A Keras mask on
    the input passes through unchanged.

    Compatible with `keras_hub.layers.PositionEmbedding`: same arguments,
    outputs and variable (`embeddings`), so weights transfer with
    `set_weights`.

    Args:
        sequence_length: int. The longest sequence (rows of the table).
        initializer: the initializer of the table. Defaults to
            `"glorot_uniform"`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: a tensor `(B, T, D)` (rank 2 or more); only its shape is used.
        start_index: int or scalar int tensor. The position of the first
            token: the cache index during cached decoding. Defaults to `0`.
        positions: optional integer tensor of shape `(T,)` or `(B, T)`, the
            row for every token. When given, `start_index` is ignored.

    Returns:
        The position embeddings, broadcast to the shape of `inputs`.

    Example:

    ```python
    import keras
    import keras_attn

    tokens = keras.random.normal((2, 10, 16))  # (B, T, D) embeddings
    layer = keras_attn.layers.PositionEmbedding(sequence_length=32)
    outputs = tokens + layer(tokens)
    ```

    References:
        - BERT: Pre-training of Deep Bidirectional Transformers for Language
          Understanding (Devlin et al., 2019).
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = check_positive_int(
            "sequence_length", sequence_length
        )
        self.initializer = keras.initializers.get(initializer)
        # The output has the input's shape: pass a Keras mask through.
        self.supports_masking = True

    def build(self, inputs_shape):
        if len(inputs_shape) < 2 or inputs_shape[-1] is None:
            raise ValueError(
                "`inputs` must have rank 2 or more and a known last axis. "
                f"Received: inputs.shape={tuple(inputs_shape)}"
            )
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, inputs_shape[-1]),
            initializer=self.initializer,
            trainable=True,
        )
        self.built = True

    def call(self, inputs, start_index=0, positions=None):
        shape = tuple(inputs.shape)
        length = static_shape(inputs)[-2]  # None when symbolic (JAX export)
        if length is not None and length > self.sequence_length:
            raise ValueError(
                f"`inputs` has {length} positions, more than "
                f"sequence_length={self.sequence_length}. Received: "
                f"inputs.shape={shape}"
            )
        table = ops.convert_to_tensor(self.position_embeddings)
        if positions is not None:
            position_ops._check_positions(positions)
            # (T, D) or (B, T, D)
            embeddings = ops.take(table, ops.cast(positions, "int32"), axis=0)
        else:
            # (T, D): rows start_index .. start_index + T - 1, gathered:
            # a slice of size T fails JAX's shape-polymorphic export
            # (jax2tf), which cannot prove a symbolic T fits the table.
            rows = ops.arange(ops.shape(inputs)[-2], dtype="int32")
            rows = rows + ops.cast(start_index, "int32")  # (T,)
            embeddings = ops.take(table, rows, axis=0)
        return ops.broadcast_to(embeddings, ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return input_shape
