"""Trains a tiny attentional seq2seq model and draws its alignment.

Writes `docs/images/rnn_alignment.png` for the guide "RNNs, seq2seq and
attention". The task is reversing a sequence of letters, whose alignment is
known in advance (the anti-diagonal), so the figure shows that attention
learned where to look. Runs in about a minute on a CPU with any backend:

    KERAS_BACKEND=jax python docs/scripts/make_rnn_figures.py
"""

import os
import string

import keras
import numpy as np

from keras_attn.models import RNNSeq2Seq
from keras_attn.plot import plot_attention

LETTERS = list(string.ascii_lowercase[:20])  # source vocabulary: 20 tokens
START = len(LETTERS)  # the target vocabulary adds a start token
LENGTH = 10
OUT = os.path.join(os.path.dirname(__file__), "..", "images")


def reverse_data(rng, n):
    source = rng.integers(0, len(LETTERS), size=(n, LENGTH))
    target = source[:, ::-1]
    decoder_in = np.concatenate([np.full((n, 1), START), target[:, :-1]], 1)
    return source, decoder_in, target


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    source, decoder_in, target = reverse_data(rng, 6000)
    model = RNNSeq2Seq(
        vocabulary_size=len(LETTERS),
        target_vocabulary_size=len(LETTERS) + 1,
        embedding_dim=32,
        hidden_dim=64,
        attention_type="bahdanau",
    )
    # A high learning rate decayed to zero, with clipping: converges in a
    # few epochs on every backend.
    epochs, batch_size = 10, 64
    schedule = keras.optimizers.schedules.CosineDecay(
        5e-3, decay_steps=epochs * (len(source) // batch_size)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(
        (source, decoder_in),
        target,
        batch_size=batch_size,
        epochs=epochs,
        verbose=2,
    )

    test_source, _, test_target = reverse_data(rng, 200)
    tokens, alignments = model.generate(
        test_source,
        LENGTH + 1,
        start_token=START,
        return_attention_scores=True,
    )
    # Drop the start token and its (empty) alignment row.
    tokens = keras.ops.convert_to_numpy(tokens)[:, 1:]
    alignments = keras.ops.convert_to_numpy(alignments)[:, 1:]
    exact = np.mean(np.all(tokens == test_target, axis=1))
    print(f"exact match on 200 new sequences: {exact:.3f}")

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "rnn_alignment.png")
    fig = plot_attention(
        alignments[0],
        [LETTERS[t] for t in test_source[0]],
        [LETTERS[t] for t in tokens[0]],
        path=path,
    )
    fig.axes[0].set_title("Bahdanau attention, reversing a sequence")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
