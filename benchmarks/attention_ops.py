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

On a GPU (PyTorch with CUDA, JAX with a GPU as its default device) the
inputs live on the device, the clock is read after synchronizing it, and
memory is device memory, not RSS; `--budget-gib` then applies to device
memory. The table's heading names the device and the memory shown. JAX
uses TF32 for float32 matrix products on recent NVIDIA GPUs by default,
PyTorch's kernel does not; both run with their defaults.
`--grouped` measures all the candidates of both rows of one N in one
process per backend (the PyTorch process serves every table's kernel
column): fewer process starts, for a GPU run:

    python benchmarks/attention_ops.py --backends jax torch --grouped \
        --rounds 1 --lengths 4096 8192 16384 --budget-gib 60
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from _device import gpu_name
from _device import torch_device

CANDIDATES = [
    "torch kernel",
    "keras.ops",
    "reference",
    "fused",
    "chunked",
    "auto",
]


def child(names, n, causals, repeats, train):
    """Runs the measurements of `names` x `causals` in this (fresh) process.

    Prints one `RESULT {json}` line per (causal, name), causal settings
    outermost, in order. On the CPU each measurement has a process of its
    own (one name and one causal setting, unless `--grouped`), and memory
    is the peak RSS growth of the calls. On a GPU the inputs live on the
    device, the clock is read after synchronizing the device (not after a
    copy to the host), and memory is device memory
    (see `device_peak` below).
    """
    import time

    import keras
    import numpy as np
    from keras import ops

    from keras_attn.ops import scaled_dot_product_attention

    backend = keras.backend.backend()
    device_name = gpu_name(backend)
    gpu = device_name is not None
    rng = np.random.default_rng(0)
    arrays = [
        rng.normal(size=(1, n, 8, 64)).astype("float32") for _ in range(4)
    ]

    def make_attention(name, causal):
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

        return attention

    if backend == "jax":
        import jax

        args = [jax.numpy.asarray(a) for a in arrays]

        def make_fn(attention):
            if train:

                def loss(q, k, v, d_out):
                    return (attention(q, k, v) * d_out).sum()

                jitted = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
            else:
                jitted = jax.jit(lambda q, k, v, d_out: attention(q, k, v))
            # Compiled ahead of the calls, so that its memory plan can be
            # read (`memory_analysis`); calling it runs the same program.
            return jitted.lower(*args).compile()

        def sync(out):
            jax.block_until_ready(out)

    elif backend == "tensorflow":
        import tensorflow as tf

        args = [tf.constant(a) for a in arrays]

        def make_fn(attention):
            @tf.function(jit_compile=True)
            def fn(q, k, v, d_out):
                if not train:
                    return attention(q, k, v)
                with tf.GradientTape() as tape:
                    tape.watch([q, k, v])
                    loss = tf.reduce_sum(attention(q, k, v) * d_out)
                return tape.gradient(loss, [q, k, v])

            return fn

    else:
        import torch

        args = [torch.tensor(a) for a in arrays]
        if gpu:
            args = [a.to(torch_device()) for a in args]

        def make_fn(attention):
            def fn(q, k, v, d_out):
                if not train:
                    with torch.no_grad():
                        return attention(q, k, v)
                q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
                (attention(q, k, v) * d_out).sum().backward()
                return q.grad, k.grad, v.grad

            return fn

        def sync(out):
            torch.cuda.synchronize()

    def status(field):  # kB -> MiB
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    def device_peak(fn, calls):
        """Peak device memory (MiB) of `calls()` above what is held before.

        PyTorch: the caching allocator's peak since a reset, minus what is
        allocated before the calls (the inputs). JAX: the allocator's
        `peak_bytes_in_use` cannot be reset, so after the warm-up it is
        the peak of the warm-up call or of the measured calls (the same
        compiled program, with the same buffers), minus `bytes_in_use`
        before them (the inputs); compilation's autotuning may also reach
        that peak, so it is an upper bound. In a process that measures
        several candidates (`--grouped`), and where the allocator has no
        statistics, an earlier candidate's peak would stand in, so JAX
        reports the compiled program's own plan instead: its temporary
        buffers plus its outputs (`memory_analysis()`), per call.
        """
        if backend == "torch":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            calls()
            return (torch.cuda.max_memory_allocated() - before) / 2**20
        device = jax.devices()[0]
        stats = device.memory_stats() if len(jobs) == 1 else None
        if stats and "peak_bytes_in_use" in stats:
            before = stats["bytes_in_use"]
            calls()
            peak = device.memory_stats()["peak_bytes_in_use"]
            return (peak - before) / 2**20
        calls()
        plan = fn.memory_analysis()
        if plan is None:
            return None  # shown as "n/a"
        return (plan.temp_size_in_bytes + plan.output_size_in_bytes) / 2**20

    jobs = [(causal, name) for causal in causals for name in names]
    for causal, name in jobs:
        try:
            fn = make_fn(make_attention(name, causal))

            def run(fn=fn):
                out = fn(*args)
                if gpu:
                    sync(out)
                    return
                for x in out if isinstance(out, (list, tuple)) else [out]:
                    ops.convert_to_numpy(x)

            times = []

            def calls(times=times, run=run):
                for _ in range(repeats):
                    start = time.perf_counter()
                    run()
                    times.append(time.perf_counter() - start)

            run()  # compile / warm up
            if gpu:
                peak = device_peak(fn, calls)
            else:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")  # the peak RSS (VmHWM) starts again from RSS
                base = status("VmRSS")
                calls()
                peak = status("VmHWM") - base
            result = {"seconds": min(times), "peak_mib": peak}
            if gpu:
                result["device"] = device_name
                # Which memory `peak_mib` is (see `device_peak`).
                result["memory"] = (
                    "XLA plan"
                    if backend == "jax" and (len(jobs) > 1 or peak is None)
                    else "device peak"
                )
        except Exception as error:  # one failed candidate (e.g. out of memory)
            result = {"error": f"{type(error).__name__}: {error}"[:80]}
            if gpu and backend == "torch":
                torch.cuda.empty_cache()
        fn = None  # frees the compiled program and its buffers
        print("RESULT", json.dumps(result), flush=True)


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


def skipped(backend, name, n, train, budget_gib):
    """Whether the dense matrices of a call would not fit the budget."""
    if name == "torch kernel":
        backend = "torch"
    factor = 3 if train else 1
    return (
        needs_dense(name, backend)
        and factor * dense_bytes(n) > budget_gib * 2**30
    )


def run_group(backend, names, n, causals, train, repeats):
    """Runs `names` x `causals` in one fresh `backend` process.

    Returns `{(causal, name): result}`.
    """
    if repeats is None:
        repeats = 3 if n <= 4096 else 2
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        TF_CPP_MIN_LOG_LEVEL="3",
        MALLOC_MMAP_THRESHOLD_="65536",
    )
    command = [sys.executable, __file__, "--child", ",".join(names), str(n)]
    command += [",".join(str(int(c)) for c in causals)]
    command += [str(repeats), str(int(train))]
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    results = [
        json.loads(line[len("RESULT") :])
        for line in proc.stdout.splitlines()
        if line.startswith("RESULT")
    ]
    error = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:80]}
    # A process that died part-way: the rest of its names failed with it.
    jobs = [(causal, name) for causal in causals for name in names]
    results += [error] * (len(jobs) - len(results))
    return dict(zip(jobs, results))


def run_one(backend, name, n, causal, train, budget_gib, repeats=None):
    if name == "torch kernel":
        backend = "torch"
    if skipped(backend, name, n, train, budget_gib):
        return None
    return run_group(backend, [name], n, [causal], train, repeats)[causal, name]


def median_result(results):
    results = [r for r in results if r is not None]
    if not results:
        return None
    good = [r for r in results if "error" not in r]
    if not good:
        return results[0]
    median = {"seconds": statistics.median(r["seconds"] for r in good)}
    peaks = [r["peak_mib"] for r in good if r["peak_mib"] is not None]
    median["peak_mib"] = statistics.median(peaks) if peaks else None
    for key in ("device", "memory"):  # on a GPU: which device, which memory
        if key in good[0]:
            median[key] = good[0][key]
    return median


def fmt(result, base, key, unit):
    if result is None:
        return "skipped"
    if "error" in result:
        return "error"
    value = result[key]
    if value is None:
        return "n/a"
    text = f"{value:.3f} s" if unit == "s" else f"{value:,.0f} MiB"
    if base and "error" not in base and (base[key] or 0) > 0:
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
    parser.add_argument(
        "--repeats",
        type=int,
        help="timed calls per measurement (default 3, 2 from N > 4096)",
    )
    parser.add_argument(
        "--grouped",
        action="store_true",
        help="one process per backend and N measures all the candidates "
        "and both causal settings in turn (fewer process starts: for a GPU "
        "run)",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        names, n, causals, repeats, train = args.child
        causals = [c == "1" for c in causals.split(",")]
        child(names.split(","), int(n), causals, int(repeats), train == "1")
        return
    step = "training step (forward + backward)" if args.train else "forward"
    rows = []  # for --json: one dict per (backend, N, causal)
    names = [name for name in CANDIDATES if name in args.candidates]
    groups = {}  # --grouped: (process backend, N, round) -> results

    def measure(backend, n, causal, round_index):
        """`{name: result}` of one round of one table row."""
        if not args.grouped:
            return {
                name: run_one(
                    backend,
                    name,
                    n,
                    causal,
                    args.train,
                    args.budget_gib,
                    args.repeats,
                )
                for name in names
            }
        results = {}
        for name in names:
            process = "torch" if name == "torch kernel" else backend
            if skipped(process, name, n, args.train, args.budget_gib):
                results[name] = None
                continue
            key = (process, n, round_index)
            if key not in groups:
                # The torch process also measures what the torch table
                # needs, so that the other tables share its kernel's row.
                if process != "torch":
                    wanted = [m for m in names if m != "torch kernel"]
                elif "torch" in args.backends:
                    wanted = names
                else:
                    wanted = ["torch kernel"]
                wanted = [
                    m
                    for m in wanted
                    if not skipped(process, m, n, args.train, args.budget_gib)
                ]
                groups[key] = run_group(
                    process,
                    wanted,
                    n,
                    [False, True],
                    args.train,
                    args.repeats,
                )
            results[name] = groups[key][causal, name]
        return results

    for backend in args.backends:
        loads = [load()]
        header = None
        for n in args.lengths:
            for causal in (False, True):
                rounds = {name: [] for name in names}
                for round_index in range(args.rounds):
                    for name, result in measure(
                        backend, n, causal, round_index
                    ).items():
                        rounds[name].append(result)
                results = {k: median_result(v) for k, v in rounds.items()}
                if header is None:
                    header = _header(backend, results, args, step, rows)
                    print(header, flush=True)
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


def _header(backend, results, args, step, rows):
    """The text before a backend's table, once its first row is known.

    On the CPU: the introduction (before the first table) and the
    backend's heading. On a GPU the heading also names the device of each
    process and the memory shown (device memory, not RSS).
    """
    lines = []
    on_gpu = [r for r in results.values() if r and "device" in r]
    devices = {r["device"] for r in on_gpu}
    if not rows:
        memory = "device memory" if devices else "RSS"
        lines.append(
            f"B=1, 8 heads, head size 64, float32 self-attention, {step}; "
            "median of "
            f"{args.rounds} alternating rounds. Time (ratio to PyTorch's "
            f"native kernel) and peak {memory} growth (ratio to the dense "
            "`reference` path)."
        )
    lines.append(f"\n### {backend}\n")
    if devices:
        memory = sorted({r.get("memory", "") for r in on_gpu})
        lines.append(
            "Device: "
            + ", ".join(sorted(devices))
            + ". Memory: device memory, not RSS ("
            + "; ".join(MEMORY_NOTES[m] for m in memory if m in MEMORY_NOTES)
            + ").\n"
        )
    names = list(results)
    lines.append("| N | causal | " + " | ".join(names) + " |")
    lines.append("|---|---|" + "---|" * len(names))
    return "\n".join(lines)


# What the memory of a GPU result is (the child's `device_peak`).
MEMORY_NOTES = {
    "device peak": "PyTorch: the allocator's peak over the calls minus what "
    "was held before them",
    "XLA plan": "on JAX, the compiled program's temporary buffers plus "
    "its outputs, per call",
}


if __name__ == "__main__":
    main()
