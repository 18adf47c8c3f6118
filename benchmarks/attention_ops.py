"""Time and peak memory of the attention implementations, per backend.

For each backend, sequence length and causal setting it measures
`keras_attn.ops.scaled_dot_product_attention` with `implementation=`
`"reference"`, `"fused"`, `"chunked"` and `"auto"`, and the peer
`keras.ops.dot_product_attention`, all in the same run, each in a fresh
subprocess (so that peak RSS growth belongs to that call alone). Shapes:
B=1, 8 heads, head size 64, float32, self-attention. JAX and TensorFlow
calls are jit-compiled (XLA), PyTorch runs eagerly. Prints a Markdown table
with the ratio of time and memory to `keras.ops.dot_product_attention`.

    python benchmarks/attention_ops.py                      # all backends
    python benchmarks/attention_ops.py --backends jax --lengths 1024 4096

Calls whose dense weight matrix would not fit the memory budget are not run
and are shown as "skipped".
"""

import argparse
import json
import os
import subprocess
import sys

CANDIDATES = ["keras.ops", "reference", "fused", "chunked", "auto"]


def child(name, n, causal, repeats):
    """Runs one measurement in this (fresh) process and prints it."""
    import resource
    import time

    import keras
    import numpy as np
    from keras import ops

    from keras_attn.ops import scaled_dot_product_attention

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    q, k, v = (
        ops.convert_to_tensor(rng.normal(size=(1, n, 8, 64)).astype("float32"))
        for _ in range(3)
    )

    def fn(q, k, v):
        if name == "keras.ops":
            return ops.dot_product_attention(q, k, v, is_causal=causal)
        return scaled_dot_product_attention(
            q, k, v, is_causal=causal, implementation=name
        )

    if backend == "jax":
        import jax

        fn = jax.jit(fn)
    elif backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(fn, jit_compile=True)

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ops.convert_to_numpy(fn(q, k, v))  # compile / warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ops.convert_to_numpy(fn(q, k, v))
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": min(times), "peak_mib": (after - before) / 1024}
    print("RESULT", json.dumps(result))


def dense_bytes(n):
    # Logits and weights of (1, 8, n, n) in float32: the dense paths hold at
    # least two such matrices at once.
    return 2 * 8 * n * n * 4


def needs_dense(name, backend, causal):
    if name in ("reference",):
        return True
    if name == "keras.ops" or name == "fused":
        # PyTorch's native kernel is flash-style on a plain causal or
        # unmasked call; JAX and TensorFlow on CPU build the dense matrix.
        return backend != "torch"
    return False  # chunked; auto picks chunked (or torch's kernel) when large


def run_one(backend, name, n, causal, budget_gib):
    if (
        needs_dense(name, backend, causal)
        and dense_bytes(n) > budget_gib * 2**30
    ):
        return None
    repeats = 3 if n <= 4096 else 1
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            name,
            str(n),
            str(int(causal)),
            str(repeats),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}


def fmt(result, base, key, unit):
    if result is None:
        return "skipped"
    if "error" in result:
        return "error"
    value = result[key]
    text = f"{value:.3f} s" if unit == "s" else f"{value:,.0f} MiB"
    if base and "error" not in base and base[key] > 0:
        text += f" ({value / base[key]:.2f}x)"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["jax", "tensorflow", "torch"]
    )
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[1024, 4096, 8192, 16384]
    )
    parser.add_argument(
        "--budget-gib",
        type=float,
        default=6.0,
        help="skip dense calls whose two (B, N, T, S) matrices exceed this",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, n, causal, repeats = args.child
        child(name, int(n), causal == "1", int(repeats))
        return
    print(
        "B=1, 8 heads, head size 64, float32 self-attention; time (ratio to "
        "keras.ops.dot_product_attention) and peak RSS growth (ratio)."
    )
    rows = []  # for --json: one dict per (backend, N, causal)
    for backend in args.backends:
        print(f"\n### {backend}\n")
        print("| N | causal | " + " | ".join(CANDIDATES) + " |")
        print("|---|---|" + "---|" * len(CANDIDATES))
        for n in args.lengths:
            for causal in (False, True):
                results = {
                    name: run_one(backend, name, n, causal, args.budget_gib)
                    for name in CANDIDATES
                }
                base = results["keras.ops"]
                cells = [
                    fmt(results[name], base, "seconds", "s")
                    + "<br>"
                    + fmt(results[name], base, "peak_mib", "MiB")
                    for name in CANDIDATES
                ]
                print(
                    f"| {n} | {causal} | " + " | ".join(cells) + " |",
                    flush=True,
                )
                rows.append(
                    dict(backend=backend, n=n, causal=causal, results=results)
                )
                if args.json:  # after each row: a cut-off run keeps them
                    with open(args.json, "w") as f:
                        json.dump(
                            {"benchmark": "attention_ops", "rows": rows}, f
                        )


if __name__ == "__main__":
    main()
