"""Mixed-precision training of `TransformerLM` does not diverge.

A small model learns "the next token is this one plus one (mod V)" in
float32 and under `mixed_float16` (with Keras' loss scaling, which
`compile` adds under that policy), 120 steps each: every loss is finite
and float16 reaches a loss close to float32's. (`mixed_bfloat16` needs no
loss scaling; the conformance checks cover its forward pass.)
"""

import keras
import numpy as np
import pytest

from keras_attn.models import TransformerLM

VOCAB = 11
STEPS = 120


def _train(policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = TransformerLM(
        vocabulary_size=VOCAB,
        max_sequence_length=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=16,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    starts = rng.integers(0, VOCAB, (STEPS * 8, 1))
    x = ((starts + np.arange(8)) % VOCAB).astype("int32")
    y = (x + 1) % VOCAB
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loss = history.history["loss"][-1]
    # The average over the epoch hides divergence at its end: the last
    # batch's loss too.
    last = float(model.evaluate(x[-64:], y[-64:], verbose=0))
    keras.config.set_dtype_policy("float32")
    return model, loss, last


@pytest.mark.large
def test_mixed_precision_training_tracks_float32():
    _, loss32, last32 = _train("float32")
    assert last32 < 0.5, "float32 did not learn the task"
    for policy in ("mixed_float16", "mixed_bfloat16"):
        model, loss, last = _train(policy)
        if policy == "mixed_float16":
            assert isinstance(
                model.optimizer, keras.optimizers.LossScaleOptimizer
            )
        assert np.isfinite(loss) and np.isfinite(last), policy
        assert last < max(2 * last32, 0.5), (policy, last, last32)
