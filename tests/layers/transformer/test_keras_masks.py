"""Keras masks reach the blocks inside compiled `predict`, `evaluate`, `fit`.

Defect 12: the blocks read the Keras mask off a private attribute. They
now take it through the call arguments Keras fills in; a model whose
padding comes from `Embedding(mask_zero=True)` must give what the same
model with an explicit `padding_mask` gives, under jit (JAX, TensorFlow).
"""

import keras
import numpy as np
import pytest

from keras_attn.layers import TransformerDecoder
from keras_attn.layers import TransformerEncoder

VOCAB, DIM = 20, 8


def _ids(rng):
    ids = rng.integers(1, VOCAB, (4, 6)).astype("int32")
    ids[1, :2] = 0  # left padding: causal real positions would see it
    ids[3, :3] = 0
    return ids


def _models(kind):
    """(masked model, explicit-mask model, unmasked model), shared layers."""
    masked_embedding = keras.layers.Embedding(VOCAB, DIM, mask_zero=True)
    embedding = keras.layers.Embedding(VOCAB, DIM)
    if kind == "encoder":
        block = TransformerEncoder(16, 2)
    else:
        block = TransformerDecoder(16, 2)
    head = keras.layers.Dense(1)
    ids = keras.Input((None,), dtype="int32")
    pad = keras.Input((None,), dtype="bool")

    def run(x, **kwargs):
        if kind == "cross":
            # The same sequence as memory: its Keras mask is the
            # encoder_padding_mask.
            if "padding_mask" in kwargs:
                kwargs = {
                    "decoder_padding_mask": kwargs["padding_mask"],
                    "encoder_padding_mask": kwargs["padding_mask"],
                }
            return head(block(x, x, **kwargs))
        if kind == "decoder" and "padding_mask" in kwargs:
            kwargs = {"decoder_padding_mask": kwargs["padding_mask"]}
        return head(block(x, **kwargs))

    masked = keras.Model(ids, run(masked_embedding(ids)))
    explicit = keras.Model([ids, pad], run(embedding(ids), padding_mask=pad))
    plain = keras.Model(ids, run(embedding(ids)))
    embedding.set_weights(masked_embedding.get_weights())
    for model in (masked, explicit, plain):
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return masked, explicit, plain


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_embedding_mask_honoured_in_compiled_steps(rng, kind):
    ids = _ids(rng)
    real = ids != 0
    masked, explicit, plain = _models(kind)
    expected = explicit.predict([ids, real], verbose=0)
    got = masked.predict(ids, verbose=0)
    np.testing.assert_allclose(got[real], expected[real], atol=1e-5)
    # The mask matters: without it the real positions change.
    unmasked = plain.predict(ids, verbose=0)
    assert not np.allclose(unmasked[real], expected[real], atol=1e-4)
    # evaluate (the compiled forward of fit) and one fit step (whose loss
    # is the loss before the update): Keras averages the loss over the
    # real positions, the mask travelling to the output.
    target = np.ones_like(expected)
    loss = np.mean((expected[real] - 1.0) ** 2)
    np.testing.assert_allclose(
        masked.evaluate(ids, target, verbose=0), loss, rtol=1e-4
    )
    history = masked.fit(ids, target, batch_size=4, epochs=1, verbose=0)
    np.testing.assert_allclose(history.history["loss"][0], loss, rtol=1e-4)
