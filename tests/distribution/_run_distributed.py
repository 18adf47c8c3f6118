"""Runs the distribution matrix on 8 virtual CPU devices; prints JSON.

Run by `test_distribution.py` in a subprocess: the device count is an XLA
flag that must be set before JAX is imported, so it cannot be set in the
test process. For each of `TransformerLM`, `Transformer` and
`VisionTransformer`, one SGD step on one device (no distribution) is the
reference; the same step under `DataParallel` (8 devices) and
`ModelParallel` (a 2 x 4 mesh, `keras_attn.distribution.layout_map`)
reports its loss, the largest weight difference from the reference, and the
sharding of every variable. Cached generation under `ModelParallel` is
compared with single-device generation token by token.
"""

import os

from tests._subprocess import FAST_COMPILE  # imports no backend

# The compile flags this process inherits (the test runner passes the
# suite's, see tests/conftest.py: they halve this script's compile time,
# 58 -> 33 s of CPU here), then the device count, last so that no
# inherited count overrides it. Run by hand, with no XLA_FLAGS set, it
# compiles at the suite's optimization level.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", FAST_COMPILE)
    + " --xla_force_host_platform_device_count=8"
)
os.environ["KERAS_BACKEND"] = "jax"

import json  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_attn.distribution import layout_map  # noqa: E402
from keras_attn.models import Transformer  # noqa: E402
from keras_attn.models import TransformerLM  # noqa: E402
from keras_attn.models import VisionTransformer  # noqa: E402

BATCH = 8
rng = np.random.RandomState(0)


def _lm():
    # Grouped-query attention with 2 key/value heads on a 4-way model axis
    # (replicated key/value kernels), rotary positions, untied output.
    model = TransformerLM(
        vocabulary_size=24,
        max_sequence_length=12,
        num_layers=1,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        num_key_value_heads=2,
        position="rotary",
        tie_weights=False,
    )
    model.build((None, None))
    return model


def _seq2seq():
    model = Transformer(
        vocabulary_size=24,
        max_sequence_length=12,
        num_layers=1,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
    )
    model.build({"encoder_token_ids": (None, None), "token_ids": (None, None)})
    return model


def _vit():
    return VisionTransformer(
        image_size=8,
        patch_size=4,
        num_layers=1,
        num_heads=4,
        hidden_dim=16,
        intermediate_dim=32,
        num_classes=5,
    )


CASES = {
    # name: (make, inputs, targets, num_key_value_heads)
    "TransformerLM": (
        _lm,
        rng.randint(1, 24, (BATCH, 8)),
        rng.randint(1, 24, (BATCH, 8)),
        2,
    ),
    "Transformer": (
        _seq2seq,
        {
            "encoder_token_ids": rng.randint(1, 24, (BATCH, 6)),
            "token_ids": rng.randint(1, 24, (BATCH, 7)),
        },
        rng.randint(1, 24, (BATCH, 7)),
        None,
    ),
    "VisionTransformer": (
        _vit,
        rng.uniform(size=(BATCH, 8, 8, 3)).astype("float32"),
        rng.randint(0, 5, (BATCH,)),
        None,
    ),
}


def _train_step(model, weights, x, y):
    model.set_weights(weights)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    loss = float(model.train_on_batch(x, y))
    return loss, [np.asarray(w) for w in model.get_weights()]


def _generate(name, model, x):
    if name == "TransformerLM":
        return np.asarray(model.generate(x[:, :3], max_length=6))
    if name == "Transformer":
        return np.asarray(
            model.generate(x["encoder_token_ids"], max_length=5, start_token=1)
        )
    return None


def main():
    devices = keras.distribution.list_devices()
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices)
    report = {"devices": len(devices)}
    for name, (make, x, y, num_kv) in CASES.items():
        strategies = {
            "DataParallel": keras.distribution.DataParallel(devices=devices),
            "ModelParallel": keras.distribution.ModelParallel(
                layout_map=layout_map(
                    mesh, num_heads=4, num_key_value_heads=num_kv
                ),
                batch_dim_name="batch",
            ),
        }
        keras.utils.set_random_seed(0)
        reference = make()
        initial = reference.get_weights()
        ref_loss, ref_weights = _train_step(reference, initial, x, y)
        ref_tokens = _generate(name, reference, x)
        report[name] = {"single": {"loss": ref_loss}}
        for strategy_name, strategy in strategies.items():
            with strategy.scope():
                model = make()
                # Paths without the model's (numbered) name; the layers of
                # the functional ViT have none.
                prefix = model.name + "/"
                shardings = {
                    v.path.removeprefix(prefix): list(v.value.sharding.spec)
                    for v in model.weights
                }
                loss, weights = _train_step(model, initial, x, y)
                entry = {
                    "loss": loss,
                    "max_weight_diff": max(
                        float(np.max(np.abs(a - b)))
                        for a, b in zip(weights, ref_weights)
                    ),
                    "weights_changed": max(
                        float(np.max(np.abs(a - b)))
                        for a, b in zip(weights, initial)
                    ),
                    "shardings": shardings,
                }
                if strategy_name == "ModelParallel" and ref_tokens is not None:
                    tokens = _generate(name, model, x)
                    entry["same_tokens"] = bool(
                        np.array_equal(tokens, ref_tokens)
                    )
                    entry["tokens"] = tokens.tolist()
            report[name][strategy_name] = entry
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
