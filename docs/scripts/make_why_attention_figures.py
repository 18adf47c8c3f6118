"""Measures two limits of recurrent networks, for the guide "Why attention".

Writes:

- docs/images/why_gradients.png: how much the last output of a network
  depends on each input, `||d y_T / d x_t||`, against the distance `T - t`,
  for a SimpleRNN, an LSTM, a SimpleRNN whose recurrence amplifies (no
  activation, recurrent gain 1.2) and one self-attention layer;
- docs/images/why_sequential_time.png: the time of a forward pass against
  the sequence length, LSTM against a transformer encoder block.

Untrained networks with Keras' default initializers, float32. Any backend:

    KERAS_BACKEND=jax python docs/scripts/make_why_attention_figures.py
"""

import os
import sys
import time

import keras
import numpy as np

import keras_attn

OUT = os.path.join(os.path.dirname(__file__), "..", "images")


def input_gradient_norms(model, x):
    """`||d sum(y_T) / d x_t||` for every step `t` of one sequence `x`.

    `y_T` is the model's output at the last step. The gradient is taken
    with the backend's own autodiff.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        def last(inputs):
            return keras.ops.sum(model(inputs)[:, -1])

        grad = np.asarray(jax.grad(last)(x))
    elif backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = tf.reduce_sum(model(inputs)[:, -1])
        grad = tape.gradient(y, inputs).numpy()
    else:
        import torch

        inputs = torch.tensor(x, requires_grad=True)
        torch.sum(model(inputs)[:, -1]).backward()
        grad = inputs.grad.numpy()
    return np.linalg.norm(grad[0], axis=-1)  # (T,)


def sequence_model(layer, length, dim):
    inputs = keras.Input((length, dim))
    return keras.Model(inputs, layer(inputs))


class SelfAttention(keras.layers.Layer):
    """One causal self-attention layer, as a sequence-to-sequence map."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras_attn.layers.MultiHeadAttention(
            num_heads=4, key_dim=dim // 4
        )

    def call(self, x):
        return self.attention(x, x, use_causal_mask=True)


def gradient_figure(path, length=100, dim=32):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(1, length, dim))
    x = x.astype("float32")
    models = {
        "SimpleRNN (tanh)": keras.layers.SimpleRNN(dim, return_sequences=True),
        "LSTM": keras.layers.LSTM(dim, return_sequences=True),
        "SimpleRNN, linear, recurrent gain 1.2": keras.layers.SimpleRNN(
            dim,
            activation=None,
            recurrent_initializer=keras.initializers.Orthogonal(gain=1.2),
            return_sequences=True,
        ),
        "self-attention (causal)": SelfAttention(dim),
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    distance = np.arange(length)[::-1]  # T - 1 - t
    for label, layer in models.items():
        norms = input_gradient_norms(sequence_model(layer, length, dim), x)
        ax.semilogy(distance, np.maximum(norms, 1e-30), label=label)
        print(f"{label:40s} |dy/dx| at distance 0: {norms[-1]:.2e}, "
              f"at {length - 1}: {norms[0]:.2e}")
    ax.set_xlabel("distance T - t between the input and the last output")
    ax.set_ylabel("||d y_T / d x_t||")
    ax.set_ylim(1e-20, 1e10)
    ax.set_title("How far back can a gradient reach? (untrained, default init)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def timed(fn, x, repeats=7):
    fn(x)  # Compile / warm up.
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(fn(x))
        best = min(best, time.perf_counter() - start)
    return best


def timing_figure(path, lengths=(16, 32, 64, 128, 256, 512), dim=64):
    keras.utils.set_random_seed(0)
    rows = []
    for length in lengths:
        x = np.random.rand(8, length, dim).astype("float32")
        lstm = sequence_model(
            keras.layers.LSTM(dim, return_sequences=True), length, dim
        )
        block = sequence_model(
            keras_attn.layers.TransformerEncoder(
                intermediate_dim=2 * dim, num_heads=4
            ),
            length,
            dim,
        )
        rows.append(
            (
                length,
                timed(lambda v, m=lstm: m.predict_on_batch(v), x),
                timed(lambda v, m=block: m.predict_on_batch(v), x),
            )
        )
        print(f"T={length:4d}  LSTM {rows[-1][1] * 1e3:8.1f} ms   "
              f"transformer block {rows[-1][2] * 1e3:8.1f} ms")
    rows = np.array(rows)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.loglog(
        rows[:, 0], rows[:, 1] * 1e3, "o-", label="LSTM: T sequential steps"
    )
    ax.loglog(
        rows[:, 0],
        rows[:, 2] * 1e3,
        "s-",
        label="transformer block: 1 parallel step, T^2 work",
    )
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("forward pass, ms (batch 8, width 64)")
    ax.set_title(
        f"Measured on a shared 2-core CPU ({keras.backend.backend()}), "
        "best of 7"
    )
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    if "--timing-only" not in sys.argv:
        gradient_figure(os.path.join(OUT, "why_gradients.png"))
    timing_figure(os.path.join(OUT, "why_sequential_time.png"))
    print("wrote docs/images/why_gradients.png, why_sequential_time.png")
