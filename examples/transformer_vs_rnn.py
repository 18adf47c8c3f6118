"""The lecture's "Transformer vs RNN" table, with measurements for yes/no.

| property | RNN | Transformer |
|---|---|---|
| sequential computation | yes | no |
| parallel computation | no | yes |
| long-term dependencies | hard | easy |
| scalability | limited | high |

A causal transformer (keras_attn.layers.TransformerDecoder blocks on sine
position encodings) and an LSTM with the same parameter budget learn the
same long-range recall task: a sequence of `T` tokens starts with a value
token (one of 8) followed by `T - 1` noise tokens (16 others), and the
model must name the value at the last position, a distance `T - 1` away.
Both train on the lengths 16 to 512 mixed, for the same number of steps,
and are then measured at every length:

- long-term dependencies: recall accuracy against distance, on fresh
  sequences; and the norm of the gradient of the loss reaching the first
  position's input, against length (vanishing gradients), at
  initialization and after training;
- sequential / parallel computation: the time of one training step on the
  whole sequence against the time of `T` training steps on single
  positions (what a position-by-position model pays): their ratio is the
  speed-up that parallel computation gives;
- scalability: training step time against length.

Output: a markdown table (printed and written to `--out`) and two figures
(`--figures`): accuracy against distance, and step time and gradient norm
against length.

    KERAS_BACKEND=jax python examples/transformer_vs_rnn.py
    KERAS_BACKEND=jax python examples/transformer_vs_rnn.py --quick

Full run (2026-11-26): JAX backend, 2-core CPU shared with other jobs (load
average about 28 during the run, so every timing is inflated and noisy),
120 steps of 16 sequences per model (transformer 490 s, LSTM 161 s of
training), about 12 minutes in all:

- parameters: transformer 70,168, LSTM 69,960 (96 units);
- recall accuracy, distances 15 to 511: transformer 0.25 to 0.43 (still
  learning after 120 steps), LSTM 0.09 to 0.14 (chance is 0.125: it did
  not learn the task at any length);
- gradient norm reaching position 0 at initialization, length 16 -> 512:
  transformer 4.7e-2 -> 3.1e-3, LSTM 1.0e-3 -> 6e-11 (length 128) ->
  9e-19 (256) -> 0.0 (512, below float32);
- training step time, length 16 -> 512: transformer 31 ms -> 6.7 s
  (x218, the O(T^2) attention), LSTM 22 ms -> 0.88 s (x41);
- speed-up over T single-position steps: transformer 4.5x at length 16
  down to 0.7x at 512, LSTM 9 to 15x. On two oversubscribed CPU cores
  there is no parallel hardware to use, so the transformer's parallelism
  does not show; the LSTM's ratio is the per-call overhead its compiled
  loop avoids. On a GPU the transformer's ratio is the one that grows.
"""

import argparse
import json
import pathlib
import time

import keras
import numpy as np

from keras_attn.layers import SinePositionEncoding
from keras_attn.layers import TransformerDecoder

NUM_VALUES, NUM_NOISE = 8, 16
VALUES = np.arange(NUM_VALUES)  # value tokens are 0..7
VOCABULARY = NUM_VALUES + NUM_NOISE  # noise tokens are 8..23

# -- task ---------------------------------------------------------------------


def make_batch(rng, batch_size, length):
    """Value at position 0, noise after; the target is the value."""
    tokens = rng.integers(NUM_VALUES, VOCABULARY, size=(batch_size, length))
    values = rng.integers(0, NUM_VALUES, size=batch_size)
    tokens[:, 0] = values
    return tokens.astype("int32"), values.astype("int32")


# -- models -------------------------------------------------------------------


def transformer_body(dim, num_layers, num_heads, intermediate_dim):
    """Embedded sequence (B, T, D) -> logits of the last position (B, V)."""
    x = inputs = keras.Input((None, dim))
    x = x + SinePositionEncoding()(x)
    for _ in range(num_layers):
        x = TransformerDecoder(
            intermediate_dim, num_heads, normalize_first=True
        )(x)  # causal self-attention
    x = keras.layers.LayerNormalization()(x[:, -1, :])  # (B, D)
    return keras.Model(inputs, keras.layers.Dense(VOCABULARY)(x))


def rnn_body(dim, units):
    x = inputs = keras.Input((None, dim))
    x = keras.layers.LSTM(units)(x)  # (B, units), the last state
    return keras.Model(inputs, keras.layers.Dense(VOCABULARY)(x))


def lstm_parameters(dim, units):
    return 4 * (units * (dim + units) + units) + units * VOCABULARY + VOCABULARY


def build_models(config):
    """Transformer and LSTM with (about) the same number of parameters.

    Each is `(embedding, body, model)`: `body` maps embedded inputs to
    logits, so gradients with respect to each position's input can be
    taken.
    """
    dim = config["dim"]
    bodies = {
        "transformer": transformer_body(
            dim, config["layers"], config["heads"], 2 * dim
        )
    }
    budget = bodies["transformer"].count_params()
    units = 4
    while lstm_parameters(dim, units + 1) <= budget:
        units += 1
    bodies["lstm"] = rnn_body(dim, units)
    models = {}
    for name, body in bodies.items():
        embedding = keras.layers.Embedding(VOCABULARY, dim)
        token_ids = keras.Input((None,), dtype="int32")
        model = keras.Model(token_ids, body(embedding(token_ids)), name=name)
        model.compile(
            optimizer=keras.optimizers.Adam(config["learning_rate"]),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        models[name] = (embedding, body, model)
    return models


# -- measurements -------------------------------------------------------------


def input_gradient(body, inputs, targets):
    """d loss / d inputs (B, T, D) for the embedded inputs; per backend."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: loss_fn(targets, body(x)))(inputs))
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.convert_to_tensor(inputs)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = loss_fn(targets, body(inputs))
        return tape.gradient(loss, inputs).numpy()
    if backend == "torch":
        import torch

        inputs = torch.tensor(inputs, requires_grad=True)
        loss_fn(torch.tensor(targets), body(inputs)).backward()
        return inputs.grad.cpu().numpy()
    raise ValueError(f"Unsupported backend: {backend}")


def first_position_gradient(models, lengths, rng, batch_size):
    """Mean norm of the gradient reaching position 0's input, per length."""
    norms = {name: [] for name in models}
    for length in lengths:
        tokens, values = make_batch(rng, batch_size, length)
        for name, (embedding, body, _) in models.items():
            inputs = keras.ops.convert_to_numpy(embedding(tokens))
            grad = input_gradient(body, inputs, values)  # (B, T, D)
            norms[name].append(
                float(np.mean(np.linalg.norm(grad[:, 0, :], axis=-1)))
            )
    return norms


def train(models, config, rng):
    """Each model in turn: the lengths cycled, one batch of each per cycle."""
    lengths, steps = config["lengths"], config["steps"]
    for name, (_, _, model) in models.items():
        print(f"\n{name}: {model.count_params():,} parameters")
        batch_rng = np.random.default_rng(rng.integers(1 << 31))
        progress = keras.utils.Progbar(steps, stateful_metrics=["loss"])
        start, losses = time.perf_counter(), []
        for step in range(steps):
            length = lengths[step % len(lengths)]
            tokens, values = make_batch(batch_rng, config["batch_size"], length)
            logs = model.train_on_batch(tokens, values, return_dict=True)
            progress.update(step + 1, [("loss", logs["loss"])])
            losses.append(float(logs["loss"]))
        config[f"{name}_train_seconds"] = time.perf_counter() - start
        config[f"{name}_losses"] = losses


def accuracy(models, lengths, rng, count):
    result = {name: [] for name in models}
    for length in lengths:
        tokens, values = make_batch(rng, count, length)
        for name, (_, _, model) in models.items():
            logits = model.predict(tokens, batch_size=64, verbose=0)
            result[name].append(float(np.mean(logits.argmax(-1) == values)))
    return result


def step_seconds(model, tokens, values, repeats):
    model.train_on_batch(tokens, values)  # compiles for this shape
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.train_on_batch(tokens, values)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timings(models, lengths, rng, batch_size, repeats):
    """Step time per length, and the T single-position steps it replaces."""
    seconds = {name: [] for name in models}
    single = {}
    for name, (_, _, model) in models.items():
        single[name] = step_seconds(
            model, *make_batch(rng, batch_size, 1), repeats
        )
        for length in lengths:
            batch = make_batch(rng, batch_size, length)
            seconds[name].append(step_seconds(model, *batch, repeats))
    return seconds, single


# -- report -------------------------------------------------------------------


def table(results):
    lengths = results["lengths"]
    names = ("transformer", "lstm")
    r = {name: results[name] for name in names}
    first, last = 0, len(lengths) - 1

    def both(fn):
        return " | ".join(fn(r[name]) for name in names)

    def speedup(m, i):
        return lengths[i] * m["single_step_seconds"] / m["step_seconds"][i]

    rows = [
        "| property | measured as | transformer | LSTM |",
        "|---|---|---:|---:|",
        "| parameters | trainable weights | "
        + both(lambda m: f"{m['parameters']:,}")
        + " |",
        "| sequential computation | steps that must run one after another "
        f"per layer, length {lengths[last]} | 1 | {lengths[last]} |",
        "| parallel computation | speed-up of one step on the whole "
        f"sequence over {lengths[last]} single-position steps | "
        + both(lambda m: f"{speedup(m, last):.1f}x")
        + " |",
        f"| long-term dependencies | recall accuracy at distance "
        f"{lengths[first] - 1} | "
        + both(lambda m: f"{m['accuracy'][first]:.2f}")
        + " |",
        f"| | recall accuracy at distance {lengths[last] - 1} | "
        + both(lambda m: f"{m['accuracy'][last]:.2f}")
        + " |",
        f"| | gradient norm at position 0, length {lengths[last]} / "
        f"length {lengths[first]} (at initialization) | "
        + both(
            lambda m: (
                f"{m['gradient_init'][last] / m['gradient_init'][first]:.1e}"
            )  # noqa: E501
        )
        + " |",
        f"| scalability | training step time, length {lengths[last]} / "
        f"length {lengths[first]} | "
        + both(
            lambda m: (
                f"{m['step_seconds'][last] / m['step_seconds'][first]:.1f}x"
            )
        )  # noqa: E501
        + " |",
        "",
        "| length T | accuracy (transformer / LSTM) | step ms (transformer "
        "/ LSTM) | parallel speed-up (transformer / LSTM) | gradient norm at "
        "position 0, init (transformer / LSTM) | same, trained |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    t, s = r["transformer"], r["lstm"]
    for i, length in enumerate(lengths):
        rows.append(
            f"| {length} | {t['accuracy'][i]:.2f} / {s['accuracy'][i]:.2f} "
            f"| {1e3 * t['step_seconds'][i]:.1f} / "
            f"{1e3 * s['step_seconds'][i]:.1f} "
            f"| {speedup(t, i):.1f}x / {speedup(s, i):.1f}x "
            f"| {t['gradient_init'][i]:.1e} / {s['gradient_init'][i]:.1e} "
            f"| {t['gradient'][i]:.1e} / {s['gradient'][i]:.1e} |"
        )
    return "\n".join(rows)


def plot(results, directory):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    lengths = np.array(results["lengths"])
    styles = {"transformer": "o-", "lstm": "s-"}
    colors = {"transformer": "tab:blue", "lstm": "tab:orange"}
    labels = {"transformer": "transformer", "lstm": "LSTM"}

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, style in styles.items():
        ax.plot(
            lengths - 1,
            results[name]["accuracy"],
            style,
            color=colors[name],
            label=labels[name],
        )
    ax.axhline(1 / NUM_VALUES, color="gray", ls=":", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("distance between the value and the answer (tokens)")
    ax.set_ylabel("recall accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(directory / "transformer_vs_rnn_accuracy.png", dpi=120)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, style in styles.items():
        m = results[name]
        left.plot(
            lengths,
            1e3 * np.array(m["step_seconds"]),
            style,
            color=colors[name],
            label=f"{labels[name]}: one step on the sequence",
        )
        left.plot(
            lengths,
            1e3 * lengths * m["single_step_seconds"],
            style[0] + "--",
            color=colors[name],
            alpha=0.6,
            label=f"{labels[name]}: T single-position steps",
        )
        right.plot(
            lengths,
            m["gradient_init"],
            style,
            color=colors[name],
            label=f"{labels[name]}, init",
        )
        right.plot(
            lengths,
            m["gradient"],
            style[0] + "--",
            color=colors[name],
            alpha=0.6,
            label=f"{labels[name]}, trained",
        )
    left.set_title("training step time")
    left.set_ylabel("milliseconds")
    right.set_title("gradient reaching position 0")
    right.set_ylabel("mean norm of d loss / d input[0]")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(directory / "transformer_vs_rnn_scaling.png", dpi=120)
    plt.close(fig)


# -- main ---------------------------------------------------------------------

FULL = dict(
    lengths=[16, 32, 64, 128, 256, 512], dim=64, layers=2, heads=4,
    batch_size=16, steps=120, learning_rate=3e-3, eval_count=128,
    gradient_batch=8, repeats=3,
)  # fmt: skip
QUICK = dict(
    lengths=[16, 64], dim=16, layers=1, heads=2,
    batch_size=16, steps=30, learning_rate=1e-2, eval_count=64,
    gradient_batch=8, repeats=1,
)  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default="examples/output")
    parser.add_argument("--figures", type=pathlib.Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = dict(QUICK if args.quick else FULL)
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    models = build_models(config)
    lengths = config["lengths"]
    gradient_init = first_position_gradient(
        models, lengths, rng, config["gradient_batch"]
    )
    train(models, config, rng)
    correct = accuracy(models, lengths, rng, config["eval_count"])
    gradient = first_position_gradient(
        models, lengths, rng, config["gradient_batch"]
    )
    seconds, single = timings(
        models, lengths, rng, config["batch_size"], config["repeats"]
    )
    results = {"lengths": lengths, "backend": keras.backend.backend()}
    for name, (_, _, model) in models.items():
        results[name] = {
            "parameters": model.count_params(),
            "accuracy": correct[name],
            "gradient_init": gradient_init[name],
            "gradient": gradient[name],
            "step_seconds": seconds[name],
            "single_step_seconds": single[name],
            "train_seconds": config[f"{name}_train_seconds"],
            "losses": config[f"{name}_losses"],
        }
    markdown = table(results)
    print("\n" + markdown)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transformer_vs_rnn.md").write_text(markdown + "\n")
    if args.figures:
        plot(results, args.figures)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
