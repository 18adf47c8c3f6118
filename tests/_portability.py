"""Saves and loads the four models as `.keras` files, on one backend.

Run as a script, in a process whose `KERAS_BACKEND` is the backend to use
(Keras picks it at import time):

    python -m tests._portability save DIR   # DIR/<backend>_<model>.keras
    python -m tests._portability load DIR...  # checks every file in DIRs
    python -m tests._portability save-load DIR DIR...  # both, in one process

`save` writes, per model, the `.keras` file and an `.npz` of the inputs and
of the outputs the saving backend computed. `load` loads every `.keras` file
it finds, runs it on the stored inputs and compares with the stored outputs;
it prints one line per file and exits non-zero on any mismatch.

`tests/test_portability.py` runs it across the three backends (the 9 pairs)
and loads the committed files of `tests/fixtures/keras/` in process.
"""

import glob
import os
import sys

import numpy as np

# Same outputs across backends: float32 matmuls of a few hundred terms,
# summed in different orders.
ATOL = 1e-4
RTOL = 1e-4


def _models():
    """`{name: (model, inputs)}`: small models with random weights."""
    import keras

    from keras_attn.models import RNNSeq2Seq
    from keras_attn.models import Transformer
    from keras_attn.models import TransformerLM
    from keras_attn.models import VisionTransformer

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 20, size=(2, 7)).astype("int32")
    source = rng.integers(1, 20, size=(2, 5)).astype("int32")
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    models = {
        "transformer_lm": (
            TransformerLM(
                vocabulary_size=20,
                max_sequence_length=8,
                num_layers=1,
                num_heads=2,
                hidden_dim=8,
                num_key_value_heads=1,
                position="rotary",
            ),
            tokens,
        ),
        "transformer": (
            Transformer(
                vocabulary_size=20,
                max_sequence_length=8,
                num_layers=1,
                num_heads=2,
                hidden_dim=8,
                padding_token=0,
            ),
            {"encoder_token_ids": source, "token_ids": tokens},
        ),
        "vision_transformer": (
            VisionTransformer(
                image_size=8,
                patch_size=4,
                num_layers=1,
                num_heads=2,
                hidden_dim=8,
                intermediate_dim=16,
                num_classes=3,
            ),
            images,
        ),
        "rnn_seq2seq": (
            RNNSeq2Seq(
                vocabulary_size=20,
                embedding_dim=4,
                hidden_dim=6,
                padding_token=0,
            ),
            (source, tokens),
        ),
    }
    for model, inputs in models.values():
        model(inputs)
        # Random weights of unit scale (and unit norm scales): the models'
        # own initial weights make near-constant outputs, which would hide
        # a weight loaded into the wrong place.
        model.set_weights(
            [
                np.ones(w.shape, "float32")
                if w.path.endswith("gamma")
                else rng.standard_normal(w.shape).astype("float32")
                for w in model.weights
            ]
        )
    del keras
    return models


def _flatten_inputs(inputs):
    if isinstance(inputs, dict):
        return {f"input_{k}": v for k, v in inputs.items()}
    if isinstance(inputs, tuple):
        return {f"input_{i}": v for i, v in enumerate(inputs)}
    return {"input": inputs}


def _unflatten_inputs(stored):
    keys = [k for k in stored.files if k.startswith("input")]
    if keys == ["input"]:
        return stored["input"]
    names = [k[len("input_") :] for k in keys]
    if all(n.isdigit() for n in names):
        return tuple(stored[f"input_{i}"] for i in range(len(names)))
    return {n: stored[f"input_{n}"] for n in names}


def _run(model, inputs):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(model(inputs)), "float32")


def save(directory):
    import keras

    os.makedirs(directory, exist_ok=True)
    backend = keras.backend.backend()
    for name, (model, inputs) in _models().items():
        stem = os.path.join(directory, f"{backend}_{name}")
        model.save(stem + ".keras")
        np.savez(
            stem + ".npz", output=_run(model, inputs), **_flatten_inputs(inputs)
        )
        print(f"saved {stem}.keras")


def check_file(path):
    """Loads one `.keras` file; returns the max abs difference of outputs.

    Raises AssertionError when the outputs differ beyond the tolerance.
    """
    import keras

    import keras_attn  # noqa: F401  (registers the classes for loading)

    stored = np.load(path[: -len(".keras")] + ".npz")
    model = keras.saving.load_model(path)
    actual = _run(model, _unflatten_inputs(stored))
    expected = stored["output"]
    np.testing.assert_allclose(
        actual,
        expected,
        atol=ATOL,
        rtol=RTOL,
        err_msg=f"{path} loaded on {keras.backend.backend()}",
    )
    return float(np.max(np.abs(actual - expected)))


def load(directories):
    import keras

    backend = keras.backend.backend()
    paths = sorted(
        p for d in directories for p in glob.glob(os.path.join(d, "*.keras"))
    )
    if not paths:
        print(f"no .keras files in {directories}")
        return 1
    failed = 0
    for path in paths:
        try:
            diff = check_file(path)
            print(
                f"ok {os.path.basename(path)} on {backend}: max diff {diff:.2e}"
            )
        except Exception as error:  # report every file, then fail
            failed += 1
            print(
                f"FAILED {os.path.basename(path)} on {backend}: {error!r:.2000}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "save":
        save(args[0])
        sys.exit(0)
    if command == "load":
        sys.exit(load(args))
    if command == "save-load":
        # One process instead of two (an import of Keras and a backend
        # less): saves into the first DIR, then loads every DIR.
        save(args[0])
        sys.exit(load(args))
    sys.exit(
        f"unknown command {command!r}: use save DIR, load DIR... or "
        "save-load DIR DIR..."
    )
