"""Quick start: a tiny attention model learns to find a marked token.

Each sequence holds random tokens and one marker; the model must output the
token that follows the marker. Attention is what lets it look there.

    KERAS_BACKEND=jax python examples/quickstart.py
"""

import keras
import numpy as np
from keras import layers

from keras_attn import ops as attn_ops

VOCAB, LENGTH, MARKER = 16, 12, 0


def make_data(n, rng):
    tokens = rng.integers(1, VOCAB, size=(n, LENGTH))
    where = rng.integers(0, LENGTH - 1, size=n)
    tokens[np.arange(n), where] = MARKER
    return tokens, tokens[np.arange(n), where + 1]


class SelfAttention(layers.Layer):
    """Single-head self-attention on `keras_attn.ops` (the layer library
    wraps this in `keras_attn.layers.MultiHeadAttention`)."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def build(self, input_shape):
        self.qkv = layers.Dense(3 * self.dim, dtype=self.dtype_policy)
        self.qkv.build(input_shape)

    def call(self, x):
        q, k, v = keras.ops.split(self.qkv(x), 3, axis=-1)
        # (B, T, D) -> (B, T, 1, D): one head.
        q, k, v = (keras.ops.expand_dims(t, 2) for t in (q, k, v))
        return keras.ops.squeeze(
            attn_ops.scaled_dot_product_attention(q, k, v), 2
        )


def main():
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(4000, rng)
    x_test, y_test = make_data(500, rng)
    inputs = keras.Input((LENGTH,), dtype="int32")
    h = layers.Embedding(VOCAB, 32)(inputs)
    h = h + layers.Embedding(LENGTH, 32)(keras.ops.arange(LENGTH))
    h = h + SelfAttention(32)(h)
    h = layers.Dense(64, activation="relu")(h)
    logits = layers.Dense(VOCAB)(layers.GlobalAveragePooling1D()(h))
    model = keras.Model(inputs, logits)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=15, batch_size=64, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"backend={keras.backend.backend()} test accuracy={accuracy:.3f}")


if __name__ == "__main__":
    main()
