"""Benchmark: autoregressive generation with and without a KV cache.

A small pre-norm `TransformerLM` (vocabulary 512, width 128, 4 heads, 2
blocks, feed-forward 512, learned positions, batch 4) continues a
32-token prompt by 256 tokens with greedy search, on the backend of
`KERAS_BACKEND`:

- ours with the preallocated KV cache (`generate()`),
- ours without it (every step re-runs the whole buffer),
- a same-size stack of `keras_hub.layers.TransformerDecoder` blocks with
  keras-hub's embeddings, driven by `keras_hub.samplers.GreedySampler`
  through keras-hub's cached decoding (`CachedMultiHeadAttention`),
  the way keras-hub's GPT-2 generates;

and the time of one cached step at position 32 and at position 480 of a
512-long cache. Whole generations are jit-compiled on JAX and TensorFlow
(XLA) and eager on PyTorch, the same for both libraries. Prints median
times, tokens/s and the ratios (targets: cached/uncached >= 5x, step at
480 / step at 32 <= 1.5, ours/keras-hub time <= 1.0).

Usage: KERAS_BACKEND=jax python benchmarks/generation.py [--repeats 5]
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
    f"--xla_cpu_multi_thread_eigen={'true' if THREADS > 1 else 'false'} "
    f"intra_op_parallelism_threads={THREADS}",
)

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402

from keras_attn.models import TransformerLM  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch":
    import torch

    torch.set_num_threads(THREADS)
elif BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)

VOCAB, WIDTH, HEADS, LAYERS, FF = 512, 128, 4, 2, 512
BATCH, PROMPT, NEW, MAX_POSITIONS = 4, 32, 256, 512


def _sync(x):
    for leaf in keras.tree.flatten(x):
        ops.convert_to_numpy(leaf)
    return x


def _median_ms(fn, repeats, warmup=1):
    for _ in range(warmup):
        _sync(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _sync(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _alternate(fns, repeats, warmup=1):
    """Median times (ms) of several functions, timed in turn."""
    for fn in fns.values():
        for _ in range(warmup):
            _sync(fn())
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            _sync(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def _compiled(fn):
    """`fn(x)` jit-compiled on JAX and TensorFlow, as is on PyTorch."""
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        return tf.function(fn, jit_compile=True)
    return fn


class HubLM:
    """keras-hub blocks with keras-hub's cached decoding (as GPT-2)."""

    def __init__(self):
        self.embedding = keras_hub.layers.TokenAndPositionEmbedding(
            VOCAB, MAX_POSITIONS, WIDTH, tie_weights=True
        )
        self.blocks = [
            keras_hub.layers.TransformerDecoder(
                FF, HEADS, activation="gelu", normalize_first=True
            )
            for _ in range(LAYERS)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-5)
        x = self.embedding(np.zeros((1, 8), "int32"))
        for block in self.blocks:
            x = block(x)
        self.norm(x)

    def call_with_cache(self, token_ids, cache, index):
        # cache: (B, layers, 2, L, N, H), as keras-hub's GPT-2.
        x = self.embedding(token_ids, start_index=index)
        caches = []
        for i, block in enumerate(self.blocks):
            x, layer_cache = block(
                x,
                self_attention_cache=cache[:, i],
                self_attention_cache_update_index=index,
            )
            caches.append(layer_cache)
        logits = self.embedding.token_embedding(self.norm(x), reverse=True)
        return logits, ops.stack(caches, axis=1)

    def generate(self, prompt, max_length):
        batch = prompt.shape[0]
        shape = (batch, LAYERS, 2, max_length, HEADS, WIDTH // HEADS)
        _, cache = self.call_with_cache(prompt, ops.zeros(shape), 0)
        tokens = ops.concatenate(
            [prompt, ops.zeros((batch, max_length - prompt.shape[1]), "int32")],
            axis=1,
        )

        def next_fn(tokens, cache, index):
            previous = ops.slice(tokens, [0, index - 1], [batch, 1])
            logits, cache = self.call_with_cache(previous, cache, index - 1)
            return logits[:, 0, :], None, cache

        sampler = keras_hub.samplers.GreedySampler()
        return sampler(next_fn, tokens, cache=cache, index=prompt.shape[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    keras.utils.set_random_seed(0)
    model = TransformerLM(
        VOCAB,
        MAX_POSITIONS,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=WIDTH,
        intermediate_dim=FF,
    )
    model.build((None, None))
    hub = HubLM()
    prompt = ops.convert_to_tensor(
        np.random.default_rng(0).integers(1, VOCAB, (BATCH, PROMPT)), "int32"
    )
    length = PROMPT + NEW

    ours_cached = _compiled(lambda p: model.generate(p, length))
    ours_uncached = _compiled(
        lambda p: model.generate(p, length, use_cache=False)
    )
    hub_cached = _compiled(lambda p: hub.generate(p, length))

    # Timed alternately, so that a shared, noisy machine favours none.
    fns = {
        "ours, cached": lambda: ours_cached(prompt),
        "keras-hub, cached": lambda: hub_cached(prompt),
    }
    times = _alternate(fns, args.repeats)
    times["ours, no cache"] = _median_ms(
        lambda: ours_uncached(prompt), max(1, args.repeats // 2)
    )

    # One cached step at a given position of a 512-long cache.
    cache = model.empty_cache(BATCH, MAX_POSITIONS)
    token = prompt[:, :1]
    step = _compiled(
        lambda token, cache, index: model.call_with_cache(token, cache, index)
    )
    step_ms = {}
    for position in (32, 480):
        index = ops.convert_to_tensor(position, "int32")
        step_ms[position] = _median_ms(
            lambda index=index: step(token, cache, index),
            args.repeats * 20,
            warmup=3,
        )

    print(
        f"backend {BACKEND}, {THREADS} thread(s), batch {BATCH}, prompt "
        f"{PROMPT}, {NEW} new tokens, width {WIDTH}, {LAYERS} blocks"
    )
    print(f"{'generation':<20} {'ms':>10} {'tokens/s':>10}")
    for name in ("ours, cached", "ours, no cache", "keras-hub, cached"):
        ms = times[name]
        rate = BATCH * NEW / (ms / 1e3)
        print(f"{name:<20} {ms:>10.1f} {rate:>10.0f}")
    print(f"{'step at 32 (ms)':<20} {step_ms[32]:>10.3f}")
    print(f"{'step at 480 (ms)':<20} {step_ms[480]:>10.3f}")
    print("ratios")
    print(
        "  cached / uncached speed-up: "
        f"{times['ours, no cache'] / times['ours, cached']:.2f}x (>= 5)"
    )
    print(
        "  step at 480 / step at 32:   "
        f"{step_ms[480] / step_ms[32]:.2f} (<= 1.5)"
    )
    print(
        "  ours / keras-hub time:      "
        f"{times['ours, cached'] / times['keras-hub, cached']:.2f} (<= 1.0)"
    )
    if args.json:
        results = {
            "benchmark": "generation",
            "backend": BACKEND,
            "threads": THREADS,
            "batch": BATCH,
            "new_tokens": NEW,
            "times_ms": times,
            "step_ms": {str(k): v for k, v in step_ms.items()},
        }
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
