"""Quick start: a tiny attention model learns to find a marked token.

Each sequence holds random tokens, one of them marked (token t is written
t + VOCAB); the model must name the marked token. Its position changes from
sequence to sequence, so a fixed pooling cannot find it: attention, keyed on
the marking, is what looks there.

    KERAS_BACKEND=jax python examples/quickstart.py
    KERAS_BACKEND=jax python examples/quickstart.py --quick   # seconds

`--quick` trains on a third of the data for a few epochs (what the test
suite runs on every backend).
"""

import argparse

import keras
import numpy as np
from keras import layers

from keras_attn import ops as attn_ops
from keras_attn.layers import PositionEmbedding

VOCAB, LENGTH = 16, 12


def make_data(n, rng):
    tokens = rng.integers(0, VOCAB, size=(n, LENGTH))
    where = rng.integers(0, LENGTH, size=n)
    targets = tokens[np.arange(n), where]
    tokens[np.arange(n), where] += VOCAB  # the marked copy of the token
    return tokens, targets


class SelfAttention(layers.Layer):
    """Multi-head self-attention written on `keras_attn.ops`.

    `keras_attn.layers.MultiHeadAttention` is the full layer; this shows the
    core call.
    """

    def __init__(self, dim, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads = dim, num_heads

    def build(self, input_shape):
        self.qkv = layers.Dense(3 * self.dim, dtype=self.dtype_policy)
        self.qkv.build(input_shape)
        self.out = layers.Dense(self.dim, dtype=self.dtype_policy)
        self.out.build((*input_shape[:-1], self.dim))

    def call(self, x):
        length, head_dim = x.shape[1], self.dim // self.num_heads
        # (B, T, 3 * D) -> (B, T, 3, N, D / N)
        qkv = keras.ops.reshape(
            self.qkv(x), (-1, length, 3, self.num_heads, head_dim)
        )
        q, k, v = (qkv[:, :, i] for i in range(3))
        attended = attn_ops.scaled_dot_product_attention(q, k, v)
        # (B, T, N, D / N) -> (B, T, D)
        return self.out(keras.ops.reshape(attended, (-1, length, self.dim)))


def build_model(dim=32):
    inputs = keras.Input((LENGTH,), dtype="int32")
    h = layers.Embedding(2 * VOCAB, dim)(inputs)
    h = h + PositionEmbedding(sequence_length=LENGTH)(h)
    for _ in range(2):
        h = layers.LayerNormalization()(h + SelfAttention(dim, 4)(h))
        mlp = layers.Dense(dim)(layers.Dense(2 * dim, activation="relu")(h))
        h = layers.LayerNormalization()(h + mlp)
    logits = layers.Dense(VOCAB)(layers.GlobalAveragePooling1D()(h))
    return keras.Model(inputs, logits)


def main(num_train=4000, epochs=10):
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(num_train, rng)
    x_test, y_test = make_data(500, rng)
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"backend={keras.backend.backend()} test accuracy={accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a small run, in seconds"
    )
    args = parser.parse_args()
    if args.quick:
        main(num_train=1500, epochs=4)
    else:
        main()
