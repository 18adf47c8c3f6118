"""`enable_lora` on the attention layer, the feed-forward, the blocks and
the models: only the adapters train, outputs start unchanged, the adapted
kernel is `W + alpha/r * A @ B` (checked against Keras' own
MultiHeadAttention with the merged kernels), and `.keras` files keep it."""

import keras
import numpy as np
import pytest

from keras_attn import layers
from tests.adapters._cases import CASES
from tests.adapters._cases import SEQ
from tests.adapters._cases import loss_for
from tests.adapters._cases import model_inputs
from tests.adapters._cases import predict

LORA_VARIABLES = ("lora_kernel_a", "lora_kernel_b")
_np = keras.ops.convert_to_numpy


def _expected_paths(targets):
    return sorted(f"{t}/{v}" for t in targets for v in LORA_VARIABLES)


def _matching(paths, expected):
    """For each expected suffix, the one path ending with it."""
    found = []
    for suffix in expected:
        hits = [p for p in paths if p == suffix or p.endswith("/" + suffix)]
        assert len(hits) == 1, (suffix, paths)
        found.append(hits[0])
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_lora_trains_only_the_adapters_and_saves(name, tmp_path):
    keras.utils.set_random_seed(0)
    owner, model, inputs, targets, lora_targets = CASES[name]()
    base = predict(model, inputs)
    owner.enable_lora(rank=2)

    trainable = [w.path for w in model.trainable_weights]
    expected = _expected_paths(lora_targets)
    assert len(trainable) == len(expected)
    assert sorted(_matching(trainable, expected)) == sorted(trainable)
    # Zero-initialized B: the outputs are the base model's.
    np.testing.assert_allclose(predict(model, inputs), base, atol=1e-6)

    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.5), loss=loss_for(name)
    )
    # Copies: on torch, convert_to_numpy shares the variable's memory.
    before = {
        w.path: np.array(keras.ops.convert_to_numpy(w)) for w in model.weights
    }
    model.train_on_batch(model_inputs(inputs), targets)
    changed = {
        w.path
        for w in model.weights
        if not np.array_equal(before[w.path], keras.ops.convert_to_numpy(w))
    }
    # Only adapters moved, and every B did (A's first gradient is zero:
    # it is multiplied by B = 0).
    assert changed <= set(trainable), changed - set(trainable)
    assert {p for p in trainable if p.endswith("lora_kernel_b")} <= changed
    tuned = predict(model, inputs)
    assert np.max(np.abs(tuned - base)) > 1e-4

    path = tmp_path / "lora.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(predict(loaded, inputs), tuned, atol=1e-5)
    # Still a LoRA model: the same projections adapted, nothing else
    # trainable.
    reloaded = [w.path for w in loaded.trainable_weights]
    assert len(reloaded) == len(expected)
    _matching(reloaded, expected)


def test_lora_kernel_is_the_low_rank_update_of_keras_attention():
    rank, alpha = 2, 3.0
    keras.utils.set_random_seed(1)
    layer = layers.MultiHeadAttention(num_heads=4, key_dim=4)
    layer(SEQ, SEQ)
    layer.enable_lora(rank, lora_alpha=alpha, target_names=["query", "key"])
    rng = np.random.RandomState(2)
    merged = []
    for sub in (layer.query_dense, layer.key_dense):
        sub.lora_kernel_b.assign(rng.normal(size=sub.lora_kernel_b.shape))
    for sub in (
        layer.query_dense,
        layer.key_dense,
        layer.value_dense,
        layer.output_dense,
    ):
        kernel = _np(sub.kernel)
        if sub.lora_enabled:
            # (D, N, r) @ (r, H) -> (D, N, H)
            kernel = _np(sub._kernel) + alpha / rank * np.matmul(
                _np(sub.lora_kernel_a), _np(sub.lora_kernel_b)
            )
        merged += [kernel, _np(sub.bias)]
    reference = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    reference(SEQ, SEQ)
    reference.set_weights(merged)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(SEQ, SEQ)),
        keras.ops.convert_to_numpy(reference(SEQ, SEQ)),
        atol=1e-5,
    )


def test_lora_bad_arguments():
    layer = layers.FeedForward(8)
    with pytest.raises(ValueError, match="not built"):
        layer.enable_lora(2)
    layer(SEQ)
    with pytest.raises(ValueError, match="rank=0"):
        layer.enable_lora(0)
    with pytest.raises(ValueError, match="lora_alpha=-1"):
        layer.enable_lora(2, lora_alpha=-1)
    with pytest.raises(ValueError, match="target_names=\\['query'\\]"):
        layer.enable_lora(2, target_names=["query"])
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="already enabled"):
        layer.enable_lora(2)
