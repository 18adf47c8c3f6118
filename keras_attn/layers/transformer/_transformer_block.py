"""The arguments, sublayers and config shared by the two blocks (private)."""

import keras

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_choice
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn._validation import check_rate
from keras_attn.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attn.layers.embeddings.alibi_bias import AlibiBias
from keras_attn.layers.embeddings.relative_position_bias import (
    RelativePositionBias,
)
from keras_attn.layers.embeddings.rotary_embedding import RotaryEmbedding
from keras_attn.layers.transformer._utils import NORMS
from keras_attn.layers.transformer._utils import POSITIONS
from keras_attn.layers.transformer._utils import clone_initializer
from keras_attn.layers.transformer._utils import make_norm
from keras_attn.layers.transformer.feed_forward import FeedForward


class TransformerBlock(AdapterMixin, keras.layers.Layer):
    """Base of `TransformerEncoder` and `TransformerDecoder`."""

    # Whether ALiBi and relative position biases see keys on both sides.
    _bidirectional = True

    def __init__(
        self,
        intermediate_dim,
        num_heads,
        dropout=0,
        activation="relu",
        layer_norm_epsilon=1e-05,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        normalize_first=False,
        num_key_value_heads=None,
        gated=False,
        norm="layer_norm",
        position=None,
        sliding_window=None,
        attention_dropout=None,
        **kwargs,
    ):
        check_positive_int("intermediate_dim", intermediate_dim)
        check_positive_int("num_heads", num_heads)
        check_positive_int(
            "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        if num_key_value_heads is not None and num_heads % num_key_value_heads:
            raise ValueError(
                "`num_heads` must be a multiple of `num_key_value_heads`. "
                f"Received: num_heads={num_heads}, "
                f"num_key_value_heads={num_key_value_heads}"
            )
        check_positive_int("sliding_window", sliding_window, allow_none=True)
        check_rate("dropout", dropout)
        check_rate("attention_dropout", attention_dropout, allow_none=True)
        check_choice("norm", norm, NORMS)
        if isinstance(position, dict):
            position = keras.saving.deserialize_keras_object(position)
        if not isinstance(position, RotaryEmbedding):
            check_choice("position", position, POSITIONS)
        check_positive_number("layer_norm_epsilon", layer_norm_epsilon)
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.normalize_first = normalize_first
        self.num_key_value_heads = num_key_value_heads
        self.gated = bool(gated)
        self.norm = norm
        self.position = position
        self.sliding_window = sliding_window
        self.attention_dropout = attention_dropout
        self.supports_masking = True

    # Sublayers, created in `build()`.

    def _key_dim(self, hidden_dim):
        key_dim = int(hidden_dim // self.num_heads)
        if key_dim == 0:
            raise ValueError(
                "The feature size of the inputs must be at least `num_heads` "
                f"(head size = features // num_heads). Received: features="
                f"{hidden_dim}, num_heads={self.num_heads}"
            )
        return key_dim

    def _attention(self, key_dim, name, self_attention):
        dropout = self.dropout
        if self.attention_dropout is not None:
            dropout = self.attention_dropout
        rotary = None
        if self_attention and self.position == "rotary":
            rotary = RotaryEmbedding(dtype=self.dtype_policy, name="rotary")
        elif self_attention and isinstance(self.position, RotaryEmbedding):
            # A fresh copy of the given rotary layer (scaled, partial, 2-D).
            rotary = self.position.__class__.from_config(
                {
                    **self.position.get_config(),
                    "dtype": self.dtype_policy,
                    "name": "rotary",
                }
            )
        return MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=key_dim,
            dropout=dropout,
            num_key_value_heads=self.num_key_value_heads,
            sliding_window=self.sliding_window if self_attention else None,
            rotary_embedding=rotary,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def _norm(self, name):
        return make_norm(
            self.norm, self.layer_norm_epsilon, self.dtype_policy, name
        )

    def _dropout(self, name):
        return keras.layers.Dropout(
            rate=self.dropout, dtype=self.dtype_policy, name=name
        )

    def _feedforward(self):
        return FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            gated=self.gated,
            # Not cloned: FeedForward clones per Dense, as keras-hub does.
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="feedforward",
        )

    def _build_position_bias(self, sequence_shape):
        # Beyond keras-hub: created last, so the default variables line up.
        self._position_bias_layer = None
        if self.position == "alibi":
            self._position_bias_layer = AlibiBias(
                dtype=self.dtype_policy, name="alibi_bias"
            )
        elif self.position == "relative":
            self._position_bias_layer = RelativePositionBias(
                num_heads=self.num_heads,
                bidirectional=self._bidirectional,
                dtype=self.dtype_policy,
                name="relative_position_bias",
            )
            self._position_bias_layer.build(sequence_shape)

    def _position_bias(self, query_length, key_length, start_index):
        """The additive self-attention bias `(1, N, T, S)` or None."""
        if self.position == "alibi":
            return self._position_bias_layer.compute_bias(
                self.num_heads,
                query_length,
                key_length,
                start_index=start_index,
                bidirectional=self._bidirectional,
            )
        if self.position == "relative":
            return self._position_bias_layer.compute_bias(
                query_length, key_length, start_index=start_index
            )
        return None

    def _residual(self, x, residual, norm, dropout, training):
        if self.dropout > 0:  # a layer call less per sublayer when decoding
            x = dropout(x, training=training)
        x = x + residual
        return x if self.normalize_first else norm(x)

    def _feedforward_block(self, x, training):
        """The feed-forward sublayer with its residual and normalization."""
        residual = x
        if self.normalize_first:
            x = self._feedforward_layer_norm(x)
        x = self._feedforward_layer(x, training=training)
        return self._residual(
            x,
            residual,
            self._feedforward_layer_norm,
            self._feedforward_dropout,
            training,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "num_heads": self.num_heads,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "normalize_first": self.normalize_first,
                "num_key_value_heads": self.num_key_value_heads,
                "gated": self.gated,
                "norm": self.norm,
                "position": (
                    keras.saving.serialize_keras_object(self.position)
                    if isinstance(self.position, RotaryEmbedding)
                    else self.position
                ),
                "sliding_window": self.sliding_window,
                "attention_dropout": self.attention_dropout,
            }
        )
        return config
