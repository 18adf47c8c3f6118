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
- on PyTorch, a plain `torch.nn.Module` of the same sizes with an
  in-place KV cache and a greedy Python loop, written here: the floor of
  what eager Python overhead allows.

Also the time of one cached step at position 32 and 480 of a 512-long
cache (on PyTorch at a Python int position and with the cache written in
place, as the decoding loop of `generate()` calls it, and also as a plain
`call_with_cache`, which copies each cache it writes; a tensor position
elsewhere). Generations and steps are jit-compiled on JAX
and TensorFlow (XLA) and eager on PyTorch, the same for every contender.
`generate()` reads the prompt on the host, so it is not jit-compiled as
a whole: on JAX and TensorFlow our loop is compiled from the same public
pieces as keras-hub's (`call_with_cache` and the sampler that
`generate()` runs), see `ours_generate`. Contenders are timed in turn,
repeat after repeat (medians), so that a shared, noisy machine favours
none; `uptime`'s load is printed before and after. Targets:
cached/uncached >= 8x, step at 480 / step at 32 <= 1.2, ours/keras-hub
time <= 0.8, one cached step on PyTorch <= 3 ms.

On a GPU (PyTorch with CUDA, JAX with a GPU as its default device) every
contender runs there, the plain PyTorch one included, and the clock is
read after synchronizing the device; the header names the device.

Usage: KERAS_BACKEND=jax python benchmarks/generation.py [--repeats 5]
"""

import argparse
import json
import os
import statistics
import subprocess
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
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402  (the plain PyTorch contender)
from _device import gpu_name  # noqa: E402
from _device import torch_device  # noqa: E402
from keras import ops  # noqa: E402

from keras_attn._compat import decoding_owns_caches  # noqa: E402
from keras_attn.generation import GreedySampler  # noqa: E402
from keras_attn.models import TransformerLM  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "torch":
    torch.set_num_threads(THREADS)
elif BACKEND == "tensorflow":
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)

# The device Keras computes on; the plain PyTorch contender and its inputs
# go to the same device.
DEVICE = torch_device()
DEVICE_NAME = gpu_name(BACKEND) or "CPU"
GPU = DEVICE_NAME != "CPU"
if BACKEND == "jax":
    import jax

VOCAB, WIDTH, HEADS, LAYERS, FF = 512, 128, 4, 2, 512
BATCH, PROMPT, NEW, MAX_POSITIONS = 4, 32, 256, 512


def _sync(x):
    """Waits for `x` to be computed before the clock is read.

    JAX dispatches asynchronously (on the CPU too): wait for its arrays.
    PyTorch on a GPU: wait for the device. PyTorch and TensorFlow on the CPU
    return computed tensors. Nothing is copied to the host: a copy of the
    whole KV cache after each step would cost as much as a small model's
    step, and is no part of decoding.
    """
    if BACKEND == "jax":
        jax.block_until_ready(x)
    elif GPU and BACKEND == "torch":
        torch.cuda.synchronize(DEVICE)
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
    """`fn` jit-compiled on JAX and TensorFlow; under `no_grad` on PyTorch.

    keras-hub's `generate` and ours run without gradient tracking on
    PyTorch; the steps timed alone get the same.
    """
    if BACKEND == "jax":
        import jax

        return jax.jit(fn)
    if BACKEND == "tensorflow":
        return tf.function(fn, jit_compile=True)

    def no_grad(*args):
        with torch.no_grad():
            return fn(*args)

    return no_grad


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


class TorchLM(torch.nn.Module):
    """The same LM in plain PyTorch: a floor for eager Python overhead.

    Pre-norm blocks with a fused query/key/value projection, tied
    embeddings, and a `(B, N, L, H)` key and value cache per block written
    in place; greedy decoding in a Python loop under `torch.no_grad`.
    """

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.tokens = nn.Embedding(VOCAB, WIDTH)
        self.positions = nn.Embedding(MAX_POSITIONS, WIDTH)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm1": nn.LayerNorm(WIDTH, eps=1e-5),
                    "qkv": nn.Linear(WIDTH, 3 * WIDTH),
                    "out": nn.Linear(WIDTH, WIDTH),
                    "norm2": nn.LayerNorm(WIDTH, eps=1e-5),
                    "up": nn.Linear(WIDTH, FF),
                    "down": nn.Linear(FF, WIDTH),
                }
            )
            for _ in range(LAYERS)
        )
        self.norm = nn.LayerNorm(WIDTH, eps=1e-5)

    def empty_cache(self, batch, length):
        shape = (batch, HEADS, length, WIDTH // HEADS)
        return [
            (
                torch.zeros(shape, device=DEVICE),
                torch.zeros(shape, device=DEVICE),
            )
            for _ in self.blocks
        ]

    def step(self, token_ids, cache, index):
        """Logits `(B, T, V)` of `token_ids (B, T)` at `index` (an int)."""
        batch, length = token_ids.shape
        positions = torch.arange(index, index + length, device=DEVICE)
        x = self.tokens(token_ids) + self.positions(positions)
        for block, (keys, values) in zip(self.blocks, cache):
            # (B, T, 3D) -> 3 x (B, N, T, H)
            qkv = block["qkv"](block["norm1"](x))
            qkv = qkv.view(batch, length, 3, HEADS, WIDTH // HEADS)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            keys[:, :, index : index + length] = k
            values[:, :, index : index + length] = v
            attended = torch.nn.functional.scaled_dot_product_attention(
                q,
                keys[:, :, : index + length],
                values[:, :, : index + length],
                is_causal=length > 1,
            )
            # (B, N, T, H) -> (B, T, D)
            attended = attended.transpose(1, 2).reshape(batch, length, WIDTH)
            x = x + block["out"](attended)
            hidden = torch.nn.functional.gelu(block["up"](block["norm2"](x)))
            x = x + block["down"](hidden)
        return self.norm(x) @ self.tokens.weight.T

    @torch.no_grad()
    def generate(self, prompt, max_length):
        prompt = torch.as_tensor(prompt, device=DEVICE)
        batch, length = prompt.shape
        tokens = torch.zeros(
            (batch, max_length), dtype=prompt.dtype, device=DEVICE
        )
        tokens[:, :length] = prompt
        cache = self.empty_cache(batch, max_length)
        self.step(prompt[:, :-1], cache, 0)
        for index in range(length, max_length):
            logits = self.step(tokens[:, index - 1 : index], cache, index - 1)
            tokens[:, index] = logits[:, -1].argmax(-1)
        return tokens


def ours_generate(model, prompt, max_length, use_cache=True):
    """Greedy decoding through `TransformerLM`'s public step functions.

    `generate()` reads the prompt on the host (ragged prompts, the start
    index), so under `jax.jit` / `tf.function` the loop is compiled from
    here, as `HubLM.generate` does for keras-hub: the same loop
    (`keras_attn.generation.GreedySampler`) that `generate()` runs.
    """
    batch, length = prompt.shape
    tokens = ops.concatenate(
        [prompt, ops.zeros((batch, max_length - length), "int32")], axis=1
    )
    cache = None
    if use_cache:
        cache = model.empty_cache(batch, max_length)
        _, cache = model.call_with_cache(prompt, cache, 0)

    def next_fn(tokens, cache, index):
        if not use_cache:
            # (B, L, V) -> (B, V): the whole buffer, causal, every step.
            return ops.take(model(tokens), index - 1, axis=1), cache
        previous = ops.slice(tokens, [0, index - 1], [batch, 1])
        logits, cache = model.call_with_cache(previous, cache, index - 1)
        return logits[:, 0, :], cache

    return GreedySampler()(next_fn, tokens, cache, start_index=length)


def _load():
    return subprocess.run(
        ["uptime"], capture_output=True, text=True
    ).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    print("load before:", _load())
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

    if BACKEND == "torch":
        # Eager, as users call it.
        ours_cached = _compiled(lambda p: model.generate(p, length))
        ours_uncached = _compiled(
            lambda p: model.generate(p, length, use_cache=False)
        )
    else:
        ours_cached = _compiled(lambda p: ours_generate(model, p, length))
        ours_uncached = _compiled(
            lambda p: ours_generate(model, p, length, use_cache=False)
        )
    hub_cached = _compiled(lambda p: hub.generate(p, length))
    generations = {
        "ours, cached": lambda: ours_cached(prompt),
        "ours, no cache": lambda: ours_uncached(prompt),
        "keras-hub, cached": lambda: hub_cached(prompt),
    }
    if BACKEND == "torch":
        torch_lm = TorchLM().to(DEVICE).eval()
        generations["torch.nn, cached"] = lambda: torch_lm.generate(
            prompt, length
        )
    times = _alternate(generations, args.repeats)

    # One cached step at a given position of a 512-long cache.
    token = prompt[:, :1]
    ours_step = _compiled(
        lambda token, cache, index: model.call_with_cache(token, cache, index)
    )
    if BACKEND == "torch":
        # As `generate()` runs it: its loop owns the caches, so on eager
        # PyTorch each write updates the cache in place. A user's own loop
        # over `call_with_cache` gets a new cache from each write (a copy
        # of the whole cache per block and step): "ours, functional".
        ours_functional_step = ours_step

        def ours_step(token, cache, index):
            with decoding_owns_caches():
                return ours_functional_step(token, cache, index)

    hub_step = _compiled(hub.call_with_cache)
    ours_cache = model.empty_cache(BATCH, MAX_POSITIONS)
    hub_cache = ops.zeros(
        (BATCH, LAYERS, 2, MAX_POSITIONS, HEADS, WIDTH // HEADS)
    )
    torch_step = _compiled(torch_lm.step) if BACKEND == "torch" else None
    steps = {}
    for position in (32, 480):
        # The decoding loop's own index: an int on PyTorch, else a tensor.
        index = position
        if BACKEND != "torch":
            index = ops.convert_to_tensor(position, "int32")
        contenders = {
            "ours": lambda i=index: ours_step(token, ours_cache, i),
            "keras-hub": lambda i=index: hub_step(token, hub_cache, i),
        }
        if BACKEND == "torch":
            contenders["ours, functional"] = lambda i=index: (
                ours_functional_step(token, ours_cache, i)
            )
            torch_cache = torch_lm.empty_cache(BATCH, MAX_POSITIONS)

            contenders["torch.nn"] = lambda i=index, c=torch_cache: torch_step(
                token, c, i
            )
        for name, ms in _alternate(
            contenders, args.repeats * 20, warmup=3
        ).items():
            steps[name, position] = ms

    on = f", device {DEVICE_NAME}" if GPU else ""
    print(
        f"backend {BACKEND}{on}, {THREADS} thread(s), batch {BATCH}, prompt "
        f"{PROMPT}, {NEW} new tokens, width {WIDTH}, {LAYERS} blocks, "
        f"median of {args.repeats} alternating repeats"
    )
    print(f"{'generation':<20} {'ms':>10} {'tokens/s':>10} {'ms/step':>9}")
    for name, ms in times.items():
        rate = BATCH * NEW / (ms / 1e3)
        print(f"{name:<20} {ms:>10.1f} {rate:>10.0f} {ms / NEW:>9.3f}")
    names = ("ours", "ours, functional", "keras-hub", "torch.nn")
    names = [name for name in names if (name, 32) in steps]
    print(f"{'one step (ms)':<20} " + " ".join(f"{n:>16}" for n in names))
    for position in (32, 480):
        print(
            f"{'at ' + str(position):<20} "
            + " ".join(f"{steps[n, position]:>16.3f}" for n in names)
        )
    rows = [
        (
            "cached / uncached speed-up",
            times["ours, no cache"] / times["ours, cached"],
            ">= 8",
        ),
        (
            "ours: step at 480 / at 32",
            steps["ours", 480] / steps["ours", 32],
            "<= 1.2",
        ),
        (
            "ours / keras-hub, generation",
            times["ours, cached"] / times["keras-hub, cached"],
            "<= 0.8",
        ),
        (
            "ours / keras-hub, step at 32",
            steps["ours", 32] / steps["keras-hub", 32],
            "",
        ),
        (
            "ours / keras-hub, step at 480",
            steps["ours", 480] / steps["keras-hub", 480],
            "",
        ),
    ]
    if BACKEND == "torch":
        rows += [
            ("ours: one cached step (ms)", steps["ours", 32], "<= 3"),
            (
                "ours / torch.nn, generation",
                times["ours, cached"] / times["torch.nn, cached"],
                "",
            ),
            (
                "ours / torch.nn, step at 32",
                steps["ours", 32] / steps["torch.nn", 32],
                "",
            ),
        ]
    print("ratios")
    for name, value, target in rows:
        print(f"  {name:<32} {value:>8.2f}  {target}")
    print("load after:", _load())
    if args.json:
        results = {
            "benchmark": "generation",
            "backend": BACKEND,
            "device": DEVICE_NAME,
            "threads": THREADS,
            "batch": BATCH,
            "new_tokens": NEW,
            "times_ms": times,
            # our single cached step, by cache position
            "step_ms": {str(p): steps["ours", p] for p in (32, 480)},
            "steps_ms": {f"{n} at {p}": ms for (n, p), ms in steps.items()},
            "ratios": {name: value for name, value, _ in rows},
        }
        with open(args.json, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
