"""Time and peak memory of the attention implementations, per backend.

For each backend, sequence length and causal setting it measures
`keras_attn.ops.scaled_dot_product_attention` with `implementation=`
`"reference"` (the dense path), `"fused"`, `"chunked"` and `"auto"`, the
peer `keras.ops.dot_product_attention`, and PyTorch's native kernel
(`torch.nn.functional.scaled_dot_product_attention`, called directly), all
in the same run. Each measurement runs in a fresh subprocess; the
contenders alternate over `--rounds` rounds and the table shows medians.
Shapes: B=1, 8 heads, head size 64, float32, self-attention. JAX and
TensorFlow calls are jit-compiled (XLA), PyTorch runs eagerly. With
`--train` the measured call is a training step's attention: the gradients
of `sum(out * d_out)` with respect to the query, key and value.

Time is the best of a few calls after a warm-up call (so compilation is
not counted), shown with its ratio to PyTorch's kernel. Memory is the peak
RSS growth of those calls (freed buffers are returned to the system at
once), with its ratio to the dense path. TensorFlow's XLA runtime keeps
its buffers between calls, so its memory column shows little.

    python benchmarks/attention_ops.py --backends jax --lengths 8192
    python benchmarks/attention_ops.py --backends jax --train --lengths 4096

Calls whose dense weight matrices would not fit `--budget-gib` are not run
and are shown as "skipped". The machine's load is printed with the table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CANDIDATES = [
    "torch kernel",
    "keras.ops",
    "reference",
    "fused",
    "chunked",
    "auto",
]


def child(name, n, causal, repeats, train):
    """Runs one measurement in this (fresh) process and prints it."""
    import time

    import keras
    import numpy as np
    from keras import ops

    from keras_attn.ops import scaled_dot_product_attention

    backend = keras.backend.backend()
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(1, n, 8, 64)).astype("float32") for _ in range(4)
    ]

    def attention(q, k, v):
        if name == "torch kernel":
            import torch

            # (B, T, N, H) -> (B, N, T, H), the kernel's layout.
            q, k, v = (x.transpose(1, 2) for x in (q, k, v))
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k, v, is_causal=causal
            )
            return out.transpose(1, 2)
        if name == "keras.ops":
            return ops.dot_product_attention(q, k, v, is_causal=causal)
        return scaled_dot_product_attention(
            q, k, v, is_causal=causal, implementation=name
        )

    if backend == "jax":
        import jax

        if train:

            def loss(q, k, v, d_out):
                return (attention(q, k, v) * d_out).sum()

            fn = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        else:
            fn = jax.jit(lambda q, k, v, d_out: attention(q, k, v))
        args = [jax.numpy.asarray(a) for a in arrays]
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def fn(q, k, v, d_out):
            if not train:
                return attention(q, k, v)
            with tf.GradientTape() as tape:
                tape.watch([q, k, v])
                loss = tf.reduce_sum(attention(q, k, v) * d_out)
            return tape.gradient(loss, [q, k, v])

        args = [tf.constant(a) for a in arrays]
    else:
        import torch

        args = [torch.tensor(a) for a in arrays]

        def fn(q, k, v, d_out):
            if not train:
                with torch.no_grad():
                    return attention(q, k, v)
            q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
            (attention(q, k, v) * d_out).sum().backward()
            return q.grad, k.grad, v.grad

    def run():
        out = fn(*args)
        for x in out if isinstance(out, (list, tuple)) else [out]:
            ops.convert_to_numpy(x)

    def status(field):  # kB -> MiB
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    run()  # compile / warm up
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak RSS (VmHWM) starts again from the RSS
    base = status("VmRSS")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    result = {"seconds": min(times), "peak_mib": status("VmHWM") - base}
    print("RESULT", json.dumps(result))


def dense_bytes(n):
    # Logits and weights of (1, 8, n, n) in float32: the dense paths hold at
    # least two such matrices at once.
    return 2 * 8 * n * n * 4


def needs_dense(name, backend):
    if name == "reference":
        return True
    if name in ("keras.ops", "fused"):
        # PyTorch's native kernel is flash-style on a plain causal or
        # unmasked call; JAX and TensorFlow on CPU build the dense matrix.
        return backend != "torch"
    return False  # chunked; auto picks chunked (or torch's kernel) when large


def run_one(backend, name, n, causal, train, budget_gib):
    if name == "torch kernel":
        backend = "torch"
    factor = 3 if train else 1
    if (
        needs_dense(name, backend)
        and factor * dense_bytes(n) > budget_gib * 2**30
    ):
        return None
    repeats = 3 if n <= 4096 else 2
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        MALLOC_MMAP_THRESHOLD_="65536",
    )
    command = [sys.executable, __file__, "--child", name, str(n)]
    command += [str(int(causal)), str(repeats), str(int(train))]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}


def median_result(results):
    results = [r for r in results if r is not None]
    if not results:
        return None
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0]
    return {
        key: statistics.median(r[key] for r in good)
        for key in ("seconds", "peak_mib")
    }


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


def load():
    return os.getloadavg()[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends", nargs="+", default=["jax", "tensorflow", "torch"]
    )
    parser.add_argument(
        "--lengths", nargs="+", type=int, default=[1024, 4096, 8192]
    )
    parser.add_argument("--train", action="store_true")
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=CANDIDATES,
        choices=CANDIDATES,
        help="a subset of the columns (the ratios need 'torch kernel' and "
        "'reference')",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget-gib",
        type=float,
        default=6.0,
        help="skip dense calls whose (B, N, T, S) matrices exceed this",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, n, causal, repeats, train = args.child
        child(name, int(n), causal == "1", int(repeats), train == "1")
        return
    step = "training step (forward + backward)" if args.train else "forward"
    print(
        f"B=1, 8 heads, head size 64, float32 self-attention, {step}; "
        "median of "
        f"{args.rounds} alternating rounds. Time (ratio to PyTorch's native "
        "kernel) and peak RSS growth (ratio to the dense `reference` path)."
    )
    rows = []  # for --json: one dict per (backend, N, causal)
    for backend in args.backends:
        print(f"\n### {backend}\n")
        names = [name for name in CANDIDATES if name in args.candidates]
        print("| N | causal | " + " | ".join(names) + " |")
        print("|---|---|" + "---|" * len(names))
        loads = [load()]
        for n in args.lengths:
            for causal in (False, True):
                rounds = {name: [] for name in names}
                for _ in range(args.rounds):
                    for name in names:
                        rounds[name].append(
                            run_one(
                                backend,
                                name,
                                n,
                                causal,
                                args.train,
                                args.budget_gib,
                            )
                        )
                results = {k: median_result(v) for k, v in rounds.items()}
                time_base = results.get("torch kernel")
                memory_base = results.get("reference")
                cells = [
                    fmt(results[name], time_base, "seconds", "s")
                    + "<br>"
                    + fmt(results[name], memory_base, "peak_mib", "MiB")
                    for name in names
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
                loads.append(load())
        print(
            f"\nLoad average (1 min) during the table: {min(loads):.1f} to "
            f"{max(loads):.1f} on {os.cpu_count()} cores."
        )


if __name__ == "__main__":
    main()
