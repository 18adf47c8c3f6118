"""Benchmark: keras_attn MultiHeadAttention vs keras.layers.MultiHeadAttention.

Self-attention, B=2, T=256, width 256, 4 heads (key_dim 64), on the backend
of `KERAS_BACKEND`: forward (inference) and forward+backward time of both
layers in the same run, jit-compiled on JAX and TensorFlow, eager on
PyTorch; inference with `dropout=0.1` configured; on PyTorch also the
forward time of `torch.nn.MultiheadAttention`. Prints the median times and
the ratio ours / peer (lower is better).

Usage: KERAS_BACKEND=jax python benchmarks/multi_head_attention.py
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# CPU threads per backend (BENCH_THREADS, default 1): on a small shared
# machine one thread gives steadier numbers. Set before the backend loads.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
os.environ.setdefault(
    "XLA_FLAGS",
    f"--xla_cpu_multi_thread_eigen={'true' if THREADS > 1 else 'false'}",
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_attn.layers import MultiHeadAttention  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch":
    import torch

    torch.set_num_threads(THREADS)
elif BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
BATCH, LENGTH, WIDTH, HEADS = 2, 256, 256, 4


def _sync(x):
    if BACKEND == "jax":
        for leaf in keras.tree.flatten(x):
            leaf.block_until_ready()
    elif BACKEND == "tensorflow":
        for leaf in keras.tree.flatten(x):
            leaf.numpy()
    return x


def _compare(fn_a, fn_b, repeats, warmup=3):
    """Median times (ms) of two functions, timed alternately.

    Alternating the two keeps a shared, noisy machine from favouring one.
    """
    for _ in range(warmup):
        _sync(fn_a())
        _sync(fn_b())
    times_a, times_b = [], []
    for _ in range(repeats):
        for fn, times in ((fn_a, times_a), (fn_b, times_b)):
            start = time.perf_counter()
            _sync(fn())
            times.append(time.perf_counter() - start)
    return (
        statistics.median(times_a) * 1e3,
        statistics.median(times_b) * 1e3,
    )


def _forward_fn(layer, x, causal):
    if BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        @jax.jit
        def forward(trainable, non_trainable, x):
            out, _ = layer.stateless_call(
                trainable, non_trainable, x, x, use_causal_mask=causal
            )
            return out

        return lambda: forward(trainable, non_trainable, x)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def forward(x):
            return layer(x, x, use_causal_mask=causal, training=False)

        return lambda: forward(x)
    import torch

    def forward():
        with torch.no_grad():
            return layer(x, x, use_causal_mask=causal, training=False)

    return forward


def _train_fn(layer, x, causal):
    if BACKEND == "jax":
        import jax

        trainable = [v.value for v in layer.trainable_variables]
        non_trainable = [v.value for v in layer.non_trainable_variables]

        def loss(trainable, non_trainable, x):
            out, _ = layer.stateless_call(
                trainable,
                non_trainable,
                x,
                x,
                use_causal_mask=causal,
                training=True,
            )
            return keras.ops.mean(out**2)

        grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 2)))
        return lambda: grad(trainable, non_trainable, x)
    if BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                out = layer(x, x, use_causal_mask=causal, training=True)
                loss = tf.reduce_mean(out**2)
            return tape.gradient(loss, [*layer.trainable_variables, x])

        return lambda: step(x)

    x = x.detach().clone().requires_grad_(True)

    def step():
        out = layer(x, x, use_causal_mask=causal, training=True)
        loss = (out**2).mean()
        loss.backward()
        return loss.detach()

    return step


def _pair(dropout):
    ours = MultiHeadAttention(HEADS, WIDTH // HEADS, dropout=dropout)
    theirs = keras.layers.MultiHeadAttention(
        HEADS, WIDTH // HEADS, dropout=dropout
    )
    x = keras.ops.convert_to_tensor(
        np.random.default_rng(0).standard_normal((BATCH, LENGTH, WIDTH)),
        "float32",
    )
    ours(x, x)
    theirs(x, x)
    ours.set_weights(theirs.get_weights())
    return ours, theirs, x


def _torch_forward(causal):
    import torch

    ref = torch.nn.MultiheadAttention(WIDTH, HEADS, batch_first=True)
    ref.eval()
    x = torch.randn(BATCH, LENGTH, WIDTH)
    mask = torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1)
    mask = mask if causal else None

    def run():
        with torch.no_grad():
            return ref(
                x, x, x, need_weights=False, attn_mask=mask, is_causal=causal
            )[0]

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    rows = []
    for causal in (False, True):
        tag = "causal" if causal else "full"
        ours, theirs, x = _pair(0.0)
        cases = [
            (f"forward, {tag}", _forward_fn),
            (f"forward+backward, {tag}", _train_fn),
        ]
        for name, make in cases:
            ours_ms, peer_ms = _compare(
                make(ours, x, causal), make(theirs, x, causal), args.repeats
            )
            rows.append((name, ours_ms, "keras", peer_ms))
        if BACKEND == "torch":
            ours_ms, peer_ms = _compare(
                _forward_fn(ours, x, causal),
                _torch_forward(causal),
                args.repeats,
            )
            rows.append((f"forward, {tag}", ours_ms, "torch.nn.MHA", peer_ms))
        ours, theirs, x = _pair(0.1)
        ours_ms, peer_ms = _compare(
            _forward_fn(ours, x, causal),
            _forward_fn(theirs, x, causal),
            args.repeats,
        )
        rows.append(
            (f"inference, dropout=0.1, {tag}", ours_ms, "keras", peer_ms)
        )

    print(
        f"\nMultiHeadAttention, backend={BACKEND}, B={BATCH}, T={LENGTH}, "
        f"width={WIDTH}, heads={HEADS}, {THREADS} thread(s); median of "
        f"{args.repeats} (ms)\n"
    )
    print("| case | ours | peer | peer ms | ours/peer |")
    print("|---|---:|---|---:|---:|")
    for name, ours_ms, peer, peer_ms in rows:
        print(
            f"| {name} | {ours_ms:.2f} | {peer} | {peer_ms:.2f} | "
            f"{ours_ms / peer_ms:.2f} |"
        )
    if args.json:
        results = {
            "benchmark": "multi_head_attention",
            "backend": BACKEND,
            "threads": THREADS,
            "repeats": args.repeats,
            "rows": [
                dict(case=name, ours_ms=ours, peer=peer, peer_ms=peer_ms)
                for name, ours, peer, peer_ms in rows
            ],
        }
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
