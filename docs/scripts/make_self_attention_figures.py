"""Figures for the guide "Self-attention".

Writes:

- docs/images/sa_soft_lookup.png: attention as a soft dictionary lookup,
  the weights of one query over four keys at three scales;
- docs/images/sa_masks.png: padding, causal and sliding-window masks;
- docs/images/sa_heads.png: the mean attention maps of the two heads of
  a one-layer model trained to read the tokens 1 and 4 steps back.

Any backend; about a minute on a 2-core CPU:

    KERAS_BACKEND=jax python docs/scripts/make_self_attention_figures.py
"""

import os

import keras
import matplotlib
import numpy as np

import keras_attn
from keras_attn import ops as attn_ops

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "images")

# The worked example of the guide: four keys, one query.
KEYS = np.array(
    [[1.0, 0.0], [0.9, 0.4], [0.0, 1.0], [-0.7, 0.7]], "float32"
)  # (S, 2): "cat", "dog", "car", "truck"
LABELS = ["cat", "dog", "car", "truck"]
VALUES = np.array([[4.0], [3.0], [120.0], [250.0]], "float32")  # (S, 1)
QUERY = np.array([[0.95, 0.3]], "float32")  # (T, 2): close to "cat"/"dog"


def soft_lookup_figure(path):
    fig, axes = plt.subplots(1, 3, figsize=(10, 3), sharey=True)
    for ax, scale in zip(axes, (1.0, 4.0, 16.0)):
        logits = (QUERY @ KEYS.T)[0] * scale  # (S,)
        weights = np.exp(logits - logits.max())
        weights /= weights.sum()
        output = float(weights @ VALUES[:, 0])
        ax.bar(LABELS, weights, color="tab:blue")
        ax.set_title(f"scale {scale:g}: output {output:.1f}")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("attention weight")
    fig.suptitle("One query, four keys: softmax(q . k * scale)")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def masks_figure(path, length=8):
    lengths = np.array([length - 3])
    padding = np.arange(length)[None, :] < lengths[:, None]  # (1, S)
    padding = np.broadcast_to(padding, (length, length))  # (T, S)
    causal = keras.ops.convert_to_numpy(attn_ops.causal_mask(length))
    window = keras.ops.convert_to_numpy(
        attn_ops.combine_masks(
            attn_ops.causal_mask(length),
            attn_ops.sliding_window_mask(length, window=3),
        )
    )
    titles = (
        "padding (last 3 keys are padding)",
        "causal (j <= i)",
        "causal sliding window of 3",
    )
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, mask, title in zip(axes, (padding, causal, window), titles):
        ax.imshow(mask, cmap="Blues", vmin=0, vmax=1.3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
        ax.set_xticks(range(length))
        ax.set_yticks(range(length))
    fig.suptitle("Boolean masks: blue = may attend")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


VOCAB, LENGTH, LAGS = 8, 16, (1, 4)


def lag_data(rng, n):
    """Tokens, and targets `x[t-1] * VOCAB + x[t-4]` (weights 0 before 4)."""
    x = rng.integers(0, VOCAB, size=(n, LENGTH))
    y = np.zeros_like(x)
    y[:, 4:] = x[:, 3:-1] * VOCAB + x[:, :-4]
    weights = np.zeros(x.shape, "float32")
    weights[:, 4:] = 1.0
    return x, y, weights


def heads_figure(path):
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    tokens = keras.Input((LENGTH,), dtype="int32")
    x = keras_attn.layers.TokenAndPositionEmbedding(
        vocabulary_size=VOCAB, sequence_length=LENGTH, embedding_dim=32
    )(tokens)
    # Small value heads (4 numbers each).
    attention = keras_attn.layers.MultiHeadAttention(
        num_heads=2, key_dim=8, value_dim=4
    )
    h, scores = attention(
        x, x, use_causal_mask=True, return_attention_scores=True
    )
    h = keras.layers.LayerNormalization()(x + h)
    h = keras.layers.Dense(256, activation="relu")(h)
    logits = keras.layers.Dense(VOCAB * VOCAB)(h)
    model = keras.Model(tokens, logits)
    inspect = keras.Model(tokens, scores)  # (B, 2, T, T)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
    )
    x_train, y_train, w_train = lag_data(rng, 8000)
    model.fit(
        x_train,
        y_train,
        sample_weight=w_train,
        batch_size=64,
        epochs=15,
        verbose=2,
    )
    x_test, y_test, w_test = lag_data(rng, 500)
    _, accuracy = model.evaluate(
        x_test, y_test, sample_weight=w_test, verbose=0
    )
    print(f"held-out accuracy: {accuracy:.3f}")
    # The average map of each head over the held-out sequences, and the
    # mean weight each head puts on the key `lag` steps back.
    maps = keras.ops.convert_to_numpy(inspect(x_test))  # (B, 2, T, T)
    maps = maps.mean(axis=0)  # (2, T, T)
    rows = np.arange(4, LENGTH)
    profile = {
        head: [maps[head, rows, rows - lag].mean() for lag in range(5)]
        for head in range(2)
    }
    for head, weights in profile.items():
        print(f"head {head}: mean weight on lag 0..4:",
              " ".join(f"{w:.2f}" for w in weights))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for head, ax in enumerate(axes):
        ax.imshow(maps[head], cmap="viridis", vmin=0, vmax=1)
        ax.set_title(
            f"head {head}: weight on i-1 {profile[head][1]:.2f}, "
            f"on i-4 {profile[head][4]:.2f}, on i {profile[head][0]:.2f}",
            fontsize=9,
        )
        ax.set_xlabel("key position j")
        ax.set_ylabel("query position i")
    fig.suptitle(
        "Trained to output (x[i-1], x[i-4]); mean over 500 held-out "
        f"sequences (accuracy {accuracy:.2f})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    soft_lookup_figure(os.path.join(OUT, "sa_soft_lookup.png"))
    masks_figure(os.path.join(OUT, "sa_masks.png"))
    heads_figure(os.path.join(OUT, "sa_heads.png"))
    print("wrote docs/images/sa_soft_lookup.png, sa_masks.png, sa_heads.png")
