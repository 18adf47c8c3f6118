"""Data- and model-parallel training of a language model (keras.distribution).

The task of `char_lm.py` (next-character prediction on the Python standard
library's source, every tenth file held out for validation), trained three
times from the same initial weights on the same batches:

- on one device (no distribution): the reference;
- `keras.distribution.DataParallel` over all devices: every device holds
  all the weights and a slice of each batch;
- `keras.distribution.ModelParallel` over a `(batch, model)` mesh with
  `keras_attn.distribution.layout_map`: the attention heads, the
  feed-forward units and the embedding width are split over the `model`
  axis (4 ways with 8 devices), the batch over the `batch` axis.

The table compares validation bits per character, the training time, the
largest weight difference from the single-device run and the weight memory
each device holds. Greedy generation from the model-parallel model is
checked token by token against the same weights on one device.

    KERAS_BACKEND=jax python examples/distributed_lm.py --devices 8
    KERAS_BACKEND=jax python examples/distributed_lm.py --devices 8 --quick
    KERAS_BACKEND=jax python examples/distributed_lm.py --predict "def "

The same command runs on a host with 8 GPUs or TPU cores and uses them.
On a host without accelerators, `--devices 8` makes 8 virtual CPU devices
(XLA's `--xla_force_host_platform_device_count`, set before JAX starts):
the sharding and the collectives are real, the speed-up is not (they share
the same cores). `keras.distribution` runs on the JAX backend only: on
TensorFlow or PyTorch the script says so and exits with status 0 without
training (the test suite checks that message there).

Results: the full run (the defaults below: 300 steps of 32 windows of 64
characters, a 2-layer 128-wide model) was not measured: the shared 2-core
machine of this session (load average above 15) could not give it the
time. `--quick` (one layer, 6 steps on 12 files) is run by the test suite
on every backend; on JAX with 8 virtual devices it shows the three runs
agreeing to about 1e-6 in the weights.
"""

import argparse
import json
import math
import os
import pathlib
import sys
import sysconfig
import time

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--devices",
        type=int,
        default=None,
        help="number of devices (virtual CPU devices if the host has fewer "
        "accelerators); defaults to every device JAX sees",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=pathlib.Path, default="examples/output")
    parser.add_argument("--figures", type=pathlib.Path, default=None)
    parser.add_argument("--predict", nargs="+", metavar="PROMPT")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


ARGS = parse_args()
if ARGS.devices:
    # Before JAX is imported: the host (CPU) platform gets this many
    # devices. Accelerator platforms ignore the flag.
    # First: XLA stops reading at a malformed flag of an inherited value.
    os.environ["XLA_FLAGS"] = (
        f"--xla_force_host_platform_device_count={ARGS.devices} "
        + os.environ.get("XLA_FLAGS", "")
    )

import keras  # noqa: E402

from keras_attn.distribution import layout_map  # noqa: E402
from keras_attn.models import TransformerLM  # noqa: E402

QUICK = dict(files=12, steps=6, batch=16, length=32, dim=32, layers=1)
FULL = dict(files=None, steps=300, batch=32, length=64, dim=128, layers=2)
HEADS = 4
VALIDATION_WINDOWS = 256
PROMPTS = ("def ", "for ", "if n", "    ")

# -- data ---------------------------------------------------------------------


def load_corpus(max_files):
    """The stdlib's top-level modules; every tenth file held out."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(root.glob("*.py"))[:max_files]
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    train = [t for i, t in enumerate(texts) if i % 10]
    return train, [t for i, t in enumerate(texts) if i % 10 == 0]


def make_vocabulary(texts, size=96):
    """The most frequent characters; id 0 is the unknown character."""
    chars, counts = np.unique(list("".join(texts)), return_counts=True)
    kept = chars[np.argsort(-counts, kind="stable")][: size - 1]
    return ["\0"] + sorted(kept.tolist())


def encode(vocabulary, text):
    index = {c: i for i, c in enumerate(vocabulary)}
    return np.array([index.get(c, 0) for c in text], dtype="int32")


def windows(stream, length, starts):
    index = np.asarray(starts)[:, None] + np.arange(length + 1)
    w = stream[index]
    return w[:, :-1], w[:, 1:]  # inputs and next characters, (n, T)


# -- training -----------------------------------------------------------------


def make_model(config, vocabulary_size):
    model = TransformerLM(
        vocabulary_size=vocabulary_size,
        max_sequence_length=config["length"],
        num_layers=config["layers"],
        num_heads=HEADS,
        hidden_dim=config["dim"],
        name="lm",
    )
    model.build((None, None))
    return model


def weight_bytes_per_device(model):
    """Bytes of weights on the first device (a shard of each variable)."""
    return sum(v.value.addressable_shards[0].data.nbytes for v in model.weights)


def train_one(config, vocabulary_size, initial, data, strategy):
    x, y, val_x, val_y = data
    losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: losses.append(logs["loss"])
    )
    scope = strategy.scope() if strategy else _no_scope()
    with scope:
        model = make_model(config, vocabulary_size)
        model.set_weights(initial)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=3e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        start = time.perf_counter()
        # Unshuffled: the three runs see the same batches in order.
        model.fit(
            x,
            y,
            batch_size=config["batch"],
            epochs=1,
            shuffle=False,
            callbacks=[record],
        )
        seconds = time.perf_counter() - start
        val_loss = model.evaluate(
            val_x, val_y, batch_size=config["batch"], verbose=0
        )
        memory = weight_bytes_per_device(model)
    return model, {
        "bits_per_char": val_loss / math.log(2),
        "train_seconds": seconds,
        "weight_bytes_per_device": memory,
        "losses": losses,
    }


class _no_scope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def greedy(model, vocabulary, prompts, max_length):
    ids = np.stack([encode(vocabulary, p) for p in prompts])
    tokens = keras.ops.convert_to_numpy(
        model.generate(ids, max_length=max_length, method="greedy")
    )
    return tokens, ["".join(vocabulary[t] for t in row) for row in tokens]


def plot_losses(results, directory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (name, r), style in zip(results.items(), ("-", "--", ":")):
        ax.plot(r["losses"], style, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (running mean, nats)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(directory / "distributed_lm_loss.png", dpi=120)
    plt.close(fig)


def train(args):
    config = dict(QUICK if args.quick else FULL)
    if args.steps:
        config["steps"] = args.steps
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    devices = keras.distribution.list_devices()
    count = args.devices or len(devices)
    if len(devices) < count:
        sys.exit(
            f"--devices {count}: JAX sees only {len(devices)} devices "
            f"({devices})"
        )
    devices = devices[:count]
    model_axis = math.gcd(count, HEADS)
    batch_axis = count // model_axis
    if config["batch"] % count:
        config["batch"] = count * math.ceil(config["batch"] / count)

    train_texts, validation_texts = load_corpus(config["files"])
    vocabulary = make_vocabulary(train_texts)
    stream = encode(vocabulary, "\n\n".join(train_texts))
    val_stream = encode(vocabulary, "\n\n".join(validation_texts))
    n = config["steps"] * config["batch"]
    length = config["length"]
    x, y = windows(stream, length, rng.integers(0, len(stream) - length, n))
    total = (len(val_stream) - 1) // length
    count_val = min(total, VALIDATION_WINDOWS)
    if count_val % config["batch"]:
        count_val -= count_val % config["batch"]
    val_starts = np.linspace(0, total - 1, count_val).astype("int64") * length
    val_x, val_y = windows(val_stream, length, val_starts)
    print(
        f"{len(train_texts)} training files ({len(stream):,} characters), "
        f"{len(validation_texts)} validation files ({len(val_stream):,}); "
        f"{count} devices: {devices}"
    )

    initial = make_model(config, len(vocabulary)).get_weights()
    mesh = keras.distribution.DeviceMesh(
        (batch_axis, model_axis), ("batch", "model"), devices
    )
    strategies = {
        "single device": None,
        f"DataParallel ({count})": keras.distribution.DataParallel(
            devices=devices
        ),
        f"ModelParallel ({batch_axis}x{model_axis})": (
            keras.distribution.ModelParallel(
                layout_map=layout_map(mesh, num_heads=HEADS),
                batch_dim_name="batch",
            )
        ),
    }
    data = (x, y, val_x, val_y)
    results, trained = {}, {}
    for name, strategy in strategies.items():
        print(f"--- {name}")
        trained[name], results[name] = train_one(
            config, len(vocabulary), initial, data, strategy
        )
    reference = trained["single device"].get_weights()
    for name, model in trained.items():
        results[name]["max_weight_diff"] = max(
            float(np.max(np.abs(a - b)))
            for a, b in zip(model.get_weights(), reference)
        )

    # Generation: the model-parallel model against its own weights on one
    # device.
    parallel_name = list(strategies)[-1]
    parallel = trained[parallel_name]
    with strategies[parallel_name].scope():
        sharded_tokens, completions = greedy(
            parallel, vocabulary, PROMPTS, length
        )
    single = make_model(config, len(vocabulary))
    single.set_weights(parallel.get_weights())
    single_tokens, _ = greedy(single, vocabulary, PROMPTS, length)

    print(
        f"\n{'run':<24} {'val bits/char':>13} {'train s':>8} "
        f"{'max |dw|':>9} {'weights/device':>15}"
    )
    for name, r in results.items():
        print(
            f"{name:<24} {r['bits_per_char']:>13.3f} "
            f"{r['train_seconds']:>8.1f} {r['max_weight_diff']:>9.1e} "
            f"{r['weight_bytes_per_device']:>13,} B"
        )
    same = bool(np.array_equal(sharded_tokens, single_tokens))
    print(f"\nmodel-parallel generation equals one device: {same}")
    for prompt, text in zip(PROMPTS, completions):
        print(f"  {prompt!r} -> {text!r}")

    single.save(args.out / "distributed_lm.keras")
    (args.out / "distributed_lm_vocabulary.json").write_text(
        json.dumps(vocabulary)
    )
    if args.figures:
        plot_losses(results, args.figures)
    summary = {
        "backend": keras.backend.backend(),
        "devices": count,
        "mesh": [batch_axis, model_axis],
        "same_generation": same,
        "completions": completions,
        "runs": {
            name: {k: v for k, v in r.items() if k != "losses"}
            for name, r in results.items()
        },
    }
    print("RESULT " + json.dumps(summary))


def predict(args):
    model = keras.saving.load_model(args.out / "distributed_lm.keras")
    vocabulary = json.loads(
        (args.out / "distributed_lm_vocabulary.json").read_text()
    )
    lengths = {len(p) for p in args.predict}
    if len(lengths) != 1:
        sys.exit("--predict: give prompts of one length (one batch)")
    _, completions = greedy(
        model, vocabulary, args.predict, model.max_sequence_length
    )
    for prompt, text in zip(args.predict, completions):
        print(f"--- {prompt!r}\n{text}")
    print("RESULT " + json.dumps({"completions": completions}))


def main(args):
    if keras.backend.backend() != "jax":
        print(
            "keras.distribution (DataParallel, ModelParallel) runs on the "
            "JAX backend only; run this example with KERAS_BACKEND=jax. "
            f"Backend here: {keras.backend.backend()}. Nothing to do."
        )
        print("RESULT " + json.dumps({"skipped": keras.backend.backend()}))
        return
    if args.predict:
        predict(args)
    else:
        train(args)


if __name__ == "__main__":
    main(ARGS)
