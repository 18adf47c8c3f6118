import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn.layers.embeddings.position_embedding import PositionEmbedding
from keras_attn.ops import positions as position_ops


def _clone_initializer(initializer):
    # A shared initializer object with a seed would give both tables the same
    # values; each sublayer gets its own copy.
    if isinstance(initializer, keras.initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


@keras.saving.register_keras_serializable(package="keras_attn")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sums a token embedding and a learned position embedding.

    Looks token ids `(B, T)` up in a `keras.layers.ReversibleEmbedding` of
    shape `(vocabulary_size, embedding_dim)` and adds a `PositionEmbedding`
    of `sequence_length` rows. With `mask_zero=True`, id 0 is padding and
    the Keras mask `ids != 0` propagates to the next layers.

    The token table also projects hidden states back to vocabulary logits,
    the output layer of a language model: call the `token_embedding`
    sublayer with `reverse=True`, as in keras-hub. With `tie_weights=True`
    (the default) the projection is the transposed token table; otherwise it
    is a separate `(embedding_dim, vocabulary_size)` variable.

    Compatible with `keras_hub.layers.TokenAndPositionEmbedding`: same
    arguments, outputs and variables in the same order (token table, reverse
    table when untied, position table), so weights transfer with
    `set_weights`.

    Args:
        vocabulary_size: int. The number of token ids.
        sequence_length: int. The longest sequence.
        embedding_dim: int. The size `D` of each embedding.
        tie_weights: bool. Whether the reverse projection reuses the token
            table. Defaults to `True`.
        embeddings_initializer: the initializer of both tables. Defaults to
            `"uniform"`.
        mask_zero: bool. Whether id 0 is padding to mask. Defaults to
            `False`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: token ids of shape `(B, T)`.
        start_index: int or scalar int tensor. The position of the first
            token: the cache index during cached decoding. Defaults to `0`.
        positions: optional integer tensor of shape `(T,)` or `(B, T)`, the
            position of every token. When given, `start_index` is ignored.

    Returns:
        The embeddings, of shape `(B, T, embedding_dim)`.

    Example:

    ```python
    import keras
    import keras_attn

    layer = keras_attn.layers.TokenAndPositionEmbedding(
        vocabulary_size=100, sequence_length=16, embedding_dim=32
    )
    ids = keras.random.randint((2, 16), 0, 100)
    hidden = layer(ids)  # (2, 16, 32)
    logits = layer.token_embedding(hidden, reverse=True)  # (2, 16, 100)
    ```

    References:
        - Attention Is All You Need (Vaswani et al., 2017).
        - Using the Output Embedding to Improve Language Models (Press and
          Wolf, 2017).
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        tie_weights=True,
        embeddings_initializer="uniform",
        mask_zero=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int(
            "vocabulary_size", vocabulary_size
        )
        self.sequence_length = check_positive_int(
            "sequence_length", sequence_length
        )
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.tie_weights = bool(tie_weights)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer
        )
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                "`inputs` must be token ids of shape (batch, sequence). "
                f"Received: inputs.shape={input_shape}"
            )
        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.embedding_dim,
            tie_weights=self.tie_weights,
            embeddings_initializer=_clone_initializer(
                self.embeddings_initializer
            ),
            mask_zero=self.mask_zero,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        self.token_embedding.build(input_shape)
        self.position_embedding = PositionEmbedding(
            sequence_length=self.sequence_length,
            initializer=_clone_initializer(self.embeddings_initializer),
            dtype=self.dtype_policy,
            name="position_embedding",
        )
        self.position_embedding.build(input_shape + (self.embedding_dim,))
        self.built = True

    def call(self, inputs, start_index=0, positions=None):
        dtype = position_ops._dtype_name(inputs)
        if "int" not in dtype and "float" not in dtype:
            raise ValueError(
                "`inputs` must be integer token ids. Received: inputs with "
                f"dtype={dtype}"
            )
        if len(inputs.shape) != 2:
            raise ValueError(
                "`inputs` must be token ids of shape (batch, sequence). "
                f"Received: inputs.shape={tuple(inputs.shape)}"
            )
        tokens = self.token_embedding(inputs)  # (B, T, D)
        return tokens + self.position_embedding(
            tokens, start_index=start_index, positions=positions
        )

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "tie_weights": self.tie_weights,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "mask_zero": self.mask_zero,
            }
        )
        return config

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.embedding_dim,)
