"""Runs the benchmarks and regenerates docs/benchmarks.md (`make bench`).

Runs `attention_ops.py`, `multi_head_attention.py`, `generation.py` and
`training.py` on each backend, each with `--json` into
`benchmarks/results/`, writes down the machine (CPU model, cores, memory,
library versions, date, load average around each benchmark), draws the
figures with `docs/scripts/make_benchmark_figures.py` and writes the page
from the stored results. Every table on the page comes from one run of a
script; ratios compare contenders measured in that same run.

    python benchmarks/make_report.py                 # everything (long)
    python benchmarks/make_report.py --reduced       # fewer sizes, repeats
    python benchmarks/make_report.py --only training --backends torch
    python benchmarks/make_report.py --render-only   # page from stored JSON
    python benchmarks/make_report.py --device gpu    # GPU run (jax, torch)

`--only` reruns some benchmarks and keeps the stored results of the others.

`--device gpu` runs `attention_ops.py`, `generation.py` and `training.py`
on JAX and PyTorch on this machine's GPU (the scripts put everything on
the GPU when the backend has one), with sizes for a few minutes' run,
stores the results and the machine (GPU, driver, versions) in
`benchmarks/results/gpu/`, and renders the page: the CPU sections as
before, and a GPU section from `benchmarks/results/gpu/` when it holds
results (`--render-only` too).
"""

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
GPU_RESULTS = os.path.join(RESULTS, "gpu")
GPU_BENCHMARKS = ("attention_ops", "generation", "training")
# Set to "1": the GPU run with tiny sizes, to check its plumbing on any
# machine (benchmarks/gpu_run.sh passes it on).
SMOKE = "BENCH_GPU_SMOKE"
PAGE = os.path.join(ROOT, "docs", "benchmarks.md")
FIGURES = os.path.join(ROOT, "docs", "scripts", "make_benchmark_figures.py")
BACKENDS = ("jax", "tensorflow", "torch")
BENCHMARKS = ("attention_ops", "multi_head_attention", "generation", "training")
NAMES = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}

# ------------------------------------------------------------- running --


def _run(command, backend=None, timeout=None):
    """Runs a benchmark script with this checkout's keras_attn."""
    # This checkout first; a PYTHONPATH set by the caller (packages
    # installed outside the environment, as on the GPU machine) after it.
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    print("$", " ".join(command[1:]), flush=True)
    # A session of its own, so that a timeout also stops the script's own
    # measurement processes.
    proc = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)

    def stop(signum, frame):
        # Stopped from outside (`timeout` sends SIGTERM): the script's
        # processes go with this one.
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        print(f"  stopped after {timeout} s", flush=True)
        return False
    finally:
        signal.signal(signal.SIGTERM, previous)
    if proc.returncode:
        print(f"  exit status {proc.returncode}", flush=True)
    return proc.returncode == 0


def _commands(name, backends, reduced, results=RESULTS):
    """`[(backend or None, argv, json path)]` of one benchmark."""
    script = os.path.join(HERE, f"{name}.py")
    path = os.path.join(results, f"{name}.json")
    if results == GPU_RESULTS:
        return _gpu_commands(
            name, backends, reduced, script, path, os.environ.get(SMOKE) == "1"
        )
    if name == "attention_ops":
        lengths = ["1024", "4096"] if reduced else []
        argv = [script, "--backends", *backends]
        if lengths:
            argv += ["--lengths", *lengths]
        return [(None, argv, path)]
    if name == "training":
        argv = [script, "--backends", *backends]
        if reduced:
            argv += ["--steps", "2"]
        return [(None, argv, path)]
    repeats = {"multi_head_attention": "10", "generation": "2"}[name]
    commands = []
    for backend in backends:
        argv = [script] + (["--repeats", repeats] if reduced else [])
        part = os.path.join(RESULTS, f"{name}_{backend}.json")
        commands.append((backend, argv, part))
    return commands


def _gpu_commands(name, backends, reduced, script, path, smoke=False):
    """The GPU run's commands: sizes for a few minutes on one GPU.

    Attention: the lengths where the dense path starts to hurt on a GPU,
    one process per backend and length (`--grouped`), the dense-path
    budget in device memory. Generation and training: the CPU sizes (they
    are small for a GPU), fewer repeats.
    """
    if name == "attention_ops":
        lengths = ["4096", "8192", "16384"]
        if smoke:
            lengths = ["256"]
        argv = [script, "--backends", *backends, "--grouped", "--rounds"]
        argv += ["1", "--repeats", "5", "--budget-gib", "60"]
        return [(None, argv + ["--lengths", *lengths], path)]
    if name == "training":
        # One script run per backend, so that a stopped run keeps the
        # other backend's results (merged by `run_benchmark`).
        commands = []
        for backend in backends:
            argv = [script, "--backends", backend, "--runs", "3"]
            argv += ["--steps", "2" if reduced else "5"]
            if smoke:
                argv = [script, "--backends", backend, "--quick"]
            part = os.path.join(GPU_RESULTS, f"{name}_{backend}.json")
            commands.append((None, argv, part))
        return commands
    if name == "generation":
        commands = []
        for backend in backends:
            argv = [script, "--repeats", "1" if reduced or smoke else "2"]
            part = os.path.join(GPU_RESULTS, f"{name}_{backend}.json")
            commands.append((backend, argv, part))
        return commands
    raise ValueError(f"no GPU run of {name!r}; one of {GPU_BENCHMARKS}")


def run_benchmark(name, backends, reduced, results=RESULTS, timeout=None):
    """Runs one benchmark; returns `{"load": ..., "seconds": ...}`."""
    load_before = os.getloadavg()
    start = time.time()
    for backend, argv, path in _commands(name, backends, reduced, results):
        if os.path.exists(path):
            os.remove(path)
        _run([sys.executable, *argv, "--json", path], backend, timeout)
    if name in ("multi_head_attention", "generation"):
        # One file per backend -> one file with a list.
        merged = []
        for backend in backends:
            part = os.path.join(results, f"{name}_{backend}.json")
            if os.path.exists(part):
                with open(part) as f:
                    merged.append(json.load(f))
                os.remove(part)
        with open(os.path.join(results, f"{name}.json"), "w") as f:
            json.dump({"benchmark": name, "backends": merged}, f, indent=1)
    if name == "training" and results == GPU_RESULTS:
        # One report per backend -> one report with all their backends.
        merged = None
        for backend in backends:
            part = os.path.join(results, f"{name}_{backend}.json")
            if os.path.exists(part):
                with open(part) as f:
                    report = json.load(f)
                os.remove(part)
                if merged is None:
                    merged = report
                else:
                    merged["backends"] += report["backends"]
        if merged:
            with open(os.path.join(results, f"{name}.json"), "w") as f:
                json.dump(merged, f, indent=1)
    return {
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - start),
        "reduced": reduced,
        "date": _now(),
    }


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )


def machine(gpu=False):
    """The machine and library versions, as a dict of strings."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            memory = f"{kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = {"Python": platform.python_version()}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if gpu:  # Keras' default backend, TensorFlow, may not be installed
        env.setdefault("KERAS_BACKEND", "jax")
    for module in ("keras", "keras_hub", "jax", "tensorflow", "torch"):
        code = f"import {module}; print({module}.__version__)"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
        )
        lines = proc.stdout.strip().splitlines()
        versions[module] = lines[-1] if lines else "not installed"
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "date": _now(),
    }
    if gpu:
        info["gpu"] = _gpu()
    return info


def _gpu():
    """The GPU as PyTorch and `nvidia-smi` name it, its memory and driver."""
    code = (
        "import torch; p = torch.cuda.get_device_properties(0); "
        "print(torch.cuda.get_device_name(0), '|', "
        "f'{p.total_memory / 2**30:.0f} GiB', '|', torch.version.cuda)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    fields = (proc.stdout.strip().splitlines() or ["? | ? | ?"])[-1]
    name, memory, cuda = (
        f.strip() for f in (fields.split("|") + ["?"] * 3)[:3]
    )
    driver = "?"
    try:
        smi = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        line = smi.stdout.strip().splitlines()[0]
        smi_name, driver, smi_memory = (f.strip() for f in line.split(","))
        name = name if name != "?" else smi_name
        memory = memory if memory != "?" else smi_memory
    except (OSError, IndexError, ValueError, subprocess.SubprocessError):
        pass
    code = "import jax; print(jax.devices()[0].device_kind)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    )
    jax_device = (proc.stdout.strip().splitlines() or ["?"])[-1]
    return {
        "name": name,
        "memory": memory,
        "driver": driver,
        "cuda (torch)": cuda,
        "jax device": jax_device,
    }


# ----------------------------------------------------------- rendering --


def _load(name, results=RESULTS):
    path = os.path.join(results, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _load_text(runs, name):
    run = runs.get(name)
    if not run:
        return ""
    before, after = run["load_before"][0], run["load_after"][0]
    reduced = ", reduced sizes" if run.get("reduced") else ""
    return (
        f"Measured {run['date']} in {run['seconds'] / 60:.0f} min{reduced}; "
        f"load average (1 min) {before:.1f} before, {after:.1f} after, on "
        "this machine's cores."
    )


def _machine_section(info, gpu_results=False):
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return "\n".join(
        [
            "## Machine",
            "",
            "| | |",
            "|---|---|",
            f"| CPU | {info['cpu']} |",
            f"| cores | {info['cores']} |",
            f"| memory | {info['memory']} |",
            f"| system | {info['system']} |",
            f"| versions | {versions} |",
            f"| date | {info['date']} |",
            "",
            (
                "Every figure in the sections below is a CPU figure (the "
                "GPU's are in the last section, [GPU](#gpu)). "
                if gpu_results
                else "No GPU: every figure is a CPU figure. "
            )
            + "The load average is "
            "written with each table: other jobs shared the cores when it "
            "exceeds the core count, and wall times are then inflated and "
            "noisy (the ratios, measured within one run and alternated, "
            "much less so).",
        ]
    )


def _cell(result, base, key, unit):
    if result is None:
        return "skipped"
    if "error" in result:
        return "error"
    value = result[key]
    if value is None:
        return "n/a"
    if unit == "s":  # milliseconds below 0.1 s (a GPU's calls are ~1 ms)
        text = f"{value * 1e3:.2f} ms" if value < 0.1 else f"{value:.3f} s"
    else:
        text = f"{value:,.0f} MiB"
    if base and "error" not in base and (base[key] or 0) > 0:
        text += f" ({value / base[key]:.2f}x)"
    return text


def _attention_section(report, runs):
    lines = [
        "## Attention ops",
        "",
        "`python benchmarks/attention_ops.py`",
        "",
        "`keras_attn.ops.scaled_dot_product_attention` with each "
        "`implementation` against PyTorch's own kernel "
        "(`torch.nn.functional.scaled_dot_product_attention`) and "
        "`keras.ops.dot_product_attention`: B=1, 8 heads, head size 64, "
        "float32 self-attention. Each cell is the time of one call and the "
        "peak RSS growth of a fresh process over the call; in brackets the "
        "time as a ratio to PyTorch's kernel and the memory as a ratio to "
        "the dense `reference` path, in the same run. JAX and TensorFlow "
        'calls are jit-compiled (XLA), PyTorch runs eagerly. "skipped": the '
        "dense matrices would not fit the script's memory budget.",
        "",
        _load_text(runs, "attention_ops"),
        "",
        "![Time and memory against sequence length]"
        "(images/bench_attention_ops.png)",
    ]
    by_backend = {}
    for row in report["rows"]:
        by_backend.setdefault(row["backend"], []).append(row)
    for backend, rows in by_backend.items():
        names = list(rows[0]["results"])
        lines += [
            "",
            f"### {NAMES.get(backend, backend)}",
            "",
            "| N | causal | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names),
        ]
        for row in rows:
            results = row["results"]
            # The script's bases; a results file older than its "torch
            # kernel" column has keras.ops as the base of both.
            time_base = results.get("torch kernel", results.get("keras.ops"))
            memory_base = (
                results.get("reference")
                if "torch kernel" in results
                else results.get("keras.ops")
            )
            cells = [
                _cell(results[n], time_base, "seconds", "s")
                + "<br>"
                + _cell(results[n], memory_base, "peak_mib", "MiB")
                for n in names
            ]
            lines.append(
                f"| {row['n']} | {row['causal']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def _mha_section(report, runs):
    lines = [
        "## MultiHeadAttention",
        "",
        "`KERAS_BACKEND=<backend> python benchmarks/multi_head_attention.py`",
        "",
        "Self-attention, B=2, T=256, width 256, 4 heads; one CPU thread per "
        "backend; JAX and TensorFlow jit-compiled, PyTorch eager; median of "
        "alternating repetitions, in ms; ratio ours / peer (lower is "
        "better).",
        "",
        _load_text(runs, "multi_head_attention"),
        "",
        "| backend | case | ours (ms) | peer | peer (ms) | ours / peer |",
        "|---|---|---:|---|---:|---:|",
    ]
    for result in report["backends"]:
        for row in result["rows"]:
            lines.append(
                f"| {result['backend']} | {row['case']} | "
                f"{row['ours_ms']:.2f} | {row['peer']} | "
                f"{row['peer_ms']:.2f} | "
                f"{row['ours_ms'] / row['peer_ms']:.2f} |"
            )
    return "\n".join(lines)


def _generation_section(report, runs, backends=BACKENDS):
    lines = [
        "## Generation with a KV cache",
        "",
        "`KERAS_BACKEND=<backend> python benchmarks/generation.py`",
        "",
        "A small `TransformerLM` (width 128, 2 blocks), batch 4, a 32-token "
        "prompt and 256 new tokens, greedy; one CPU thread; against the "
        "same-size keras-hub decoder with keras-hub's cached decoding. "
        "Columns: throughput of each way of generating in tokens/s, the "
        "time of one cached step of ours (jit-compiled on JAX and "
        "TensorFlow; on PyTorch as `generate()` runs it, writing its caches "
        "in place), and the ratios of the issue.",
        "",
        _load_text(runs, "generation"),
        "",
    ]
    rows = []
    names = []
    for result in report["backends"]:
        times = result["times_ms"]
        tokens = result["batch"] * result["new_tokens"]
        for name in times:
            if name not in names:
                names.append(name)
        steps = result["step_ms"]
        ratios = {}
        if "ours, no cache" in times and "ours, cached" in times:
            ratios["cached / uncached speed-up"] = (
                f"{times['ours, no cache'] / times['ours, cached']:.2f}x"
            )
        if "32" in steps:
            ratios["one cached step at 32 (ms)"] = f"{steps['32']:.2f}"
        if "32" in steps and "480" in steps:
            ratios["step at 480 / at 32"] = f"{steps['480'] / steps['32']:.2f}"
        for name, ms in times.items():
            if name.startswith("keras-hub") and "ours, cached" in times:
                ratios["ours / keras-hub time"] = (
                    f"{times['ours, cached'] / ms:.2f}"
                )
        rate = {n: f"{tokens / (ms / 1e3):,.0f}" for n, ms in times.items()}
        rows.append((result["backend"], rate, ratios))
    missing = [b for b in backends if b not in [r[0] for r in rows]]
    if missing:
        lines += [
            "No result from "
            + ", ".join(NAMES[b] for b in missing)
            + ": the script failed there in this run (its log says why).",
            "",
        ]
    ratio_names = []
    for _, _, ratios in rows:
        ratio_names += [r for r in ratios if r not in ratio_names]
    lines.append(
        "| backend | "
        + " | ".join(f"{n} (tok/s)" for n in names)
        + " | "
        + " | ".join(ratio_names)
        + " |"
    )
    lines.append("|---|" + "---:|" * (len(names) + len(ratio_names)))
    for backend, rate, ratios in rows:
        lines.append(
            f"| {backend} | "
            + " | ".join(rate.get(n, "") for n in names)
            + " | "
            + " | ".join(ratios.get(r, "") for r in ratio_names)
            + " |"
        )
    return "\n".join(lines)


def _ms(seconds):
    """Milliseconds, with a decimal below 100 ms (GPU steps)."""
    ms = seconds * 1e3
    return f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def _training_section(report, runs):
    lines = [
        "## Training throughput",
        "",
        "`python benchmarks/training.py`",
        "",
        "One training step (forward, backward, AdamW update) of a "
        "decoder-only LM (`TransformerLM`: 4 pre-norm blocks, width 256, 4 "
        "heads, feed-forward 1024, vocabulary 512, T=256, B=8) and of a ViT "
        "classifier (`VisionTransformer`: the same blocks on 64x64 images "
        "in 4x4 patches, 257 tokens, B=8), against the same architecture "
        "from keras-hub (`keras_hub.layers.TransformerDecoder` blocks; "
        "`keras_hub.models.ViTBackbone`) and, on PyTorch, "
        "`torch.nn.TransformerEncoder` (causal mask for the LM). The "
        "parameter counts are equal. On JAX and TensorFlow the step is "
        "Keras' `train_on_batch` compiled with XLA (`jit_compile=True`); on "
        "PyTorch, Keras' eager `train_on_batch` (ours against keras-hub) and "
        "a plain PyTorch loop with `torch.optim.AdamW` for all (ours against "
        "torch.nn). Median of alternating runs; the ratios are ours / peer "
        "step time (lower is better), in wall time and in CPU time of the "
        "process (less disturbed by other jobs). Targets of the issue: "
        "ours / keras-hub at most 0.95, ours / torch.nn at most 1.0.",
        "",
        _load_text(runs, "training"),
        "",
        "![Training throughput per backend](images/bench_training.png)",
    ]
    for result in report["backends"]:
        backend = result["backend"]
        lines += ["", f"### {NAMES.get(backend, backend)}", ""]
        if "error" in result:
            lines.append(f"The run failed: `{result['error']}`")
            continue
        lines += [
            "| model | step | contender | step (ms) | CPU (ms) | throughput |",
            "|---|---|---|---:|---:|---:|",
        ]
        for entry in result["results"]:
            for name, seconds in entry["seconds"].items():
                lines.append(
                    f"| {entry['model']} | {entry['method']} | {name} | "
                    f"{_ms(seconds)} | "
                    f"{_ms(entry['cpu_seconds'][name])} | "
                    f"{entry['rate'][name]:,.1f} {entry['unit']} |"
                )
        lines += [
            "",
            "| model | step | ratio | time | CPU time | target |",
            "|---|---|---|---:|---:|---:|",
        ]
        for entry in result["results"]:
            wall, cpu = entry["seconds"], entry["cpu_seconds"]
            for peer, target in (("keras-hub", 0.95), ("torch.nn", 1.0)):
                if peer not in wall:
                    continue
                ratio = wall["ours"] / wall[peer]
                cpu_ratio = cpu["ours"] / cpu[peer]
                mark = "met" if max(ratio, cpu_ratio) <= target else "missed"
                lines.append(
                    f"| {entry['model']} | {entry['method']} | ours / {peer}"
                    f" | {ratio:.2f} | {cpu_ratio:.2f} | "
                    f"{target} ({mark}) |"
                )
    return "\n".join(lines)


def _demote(text):
    """A section's headings one level down, to sit inside the GPU section."""
    return "\n".join(
        "#" + line if line.startswith("##") else line
        for line in text.splitlines()
    )


def _gpu_section():
    """The GPU run's tables from `benchmarks/results/gpu/`, or ""."""
    info = _load("machine", GPU_RESULTS)
    if not info:
        return ""
    runs = info.get("runs", {})
    gpu = info.get("gpu", {})
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        "## GPU",
        "",
        "The same scripts on a GPU, JAX and PyTorch only (`python "
        "benchmarks/make_report.py --device gpu`), with fewer sizes and "
        "repeats than the CPU run: every contender, the plain PyTorch ones "
        "included, runs on the GPU and the clock is read after "
        "synchronizing the device. In the attention tables memory is "
        "device memory, not RSS: on PyTorch the allocator's peak over the "
        "calls minus what was allocated before them; on JAX the compiled "
        "program's temporary buffers plus its outputs (XLA's plan for one "
        "call); the dense path is skipped above 60 GiB. JAX computes "
        "float32 matrix products in TF32 on this GPU by default, "
        "PyTorch's kernel in float32. The CPU-time columns of the training "
        "tables are the host's time and say little on a GPU.",
        "",
        "| | |",
        "|---|---|",
        f"| GPU | {gpu.get('name', '?')} ({gpu.get('memory', '?')}) |",
        f"| driver, CUDA (PyTorch's) | {gpu.get('driver', '?')}, "
        f"{gpu.get('cuda (torch)', '?')} |",
        f"| JAX device | {gpu.get('jax device', '?')} |",
        f"| host CPU | {info['cpu']}, {info['cores']} cores, "
        f"{info['memory']} |",
        f"| versions | {versions} |",
        f"| date | {info['date']} |",
    ]
    device = gpu.get("name", "GPU")
    builders = {
        "attention_ops": _attention_section,
        "generation": _generation_section,
        "training": _training_section,
    }
    for name, build in builders.items():
        report = _load(name, GPU_RESULTS)
        if not report:
            continue
        if name == "generation":
            text = build(report, runs, backends=("jax", "torch"))
        else:
            text = build(report, runs)
        for cpu, on_gpu in GPU_WORDING:
            text = text.replace(cpu, on_gpu)
        # The CPU run's figures are not this run's.
        text = "\n".join(
            line for line in text.splitlines() if not line.startswith("![")
        )
        heading, _, body = text.partition("\n")
        lines += ["", _demote(f"{heading} on {device}\n{body}")]
    return "\n".join(lines)


# The CPU sections' words that do not hold on the GPU -> what does.
GPU_WORDING = (
    (" on this machine's cores.", " on the host's cores."),
    (
        "peak RSS growth of a fresh process over the call",
        "device memory of the call (see above)",
    ),
    ("greedy; one CPU thread; against", "greedy; against"),
)


def render():
    """Writes docs/benchmarks.md and the figures from the stored results."""
    info = _load("machine") or machine()
    runs = info.get("runs", {})
    sections = [
        "# Benchmarks",
        "",
        "Every table here comes from a script in `benchmarks/` that "
        "measures keras-attn and its peers **in the same run** and prints "
        "the ratio ours / peer (lower is better). This page is generated: "
        "`make bench` (`python benchmarks/make_report.py`) runs the scripts "
        "on each backend, stores their results in `benchmarks/results/` and "
        "rewrites the page and its figures "
        "(`docs/scripts/make_benchmark_figures.py`). Timing never goes into "
        "a test.",
        "",
        _machine_section(info, bool(_load("machine", GPU_RESULTS))),
    ]
    builders = {
        "attention_ops": _attention_section,
        "multi_head_attention": _mha_section,
        "generation": _generation_section,
        "training": _training_section,
    }
    for name, build in builders.items():
        report = _load(name)
        if report:
            sections += ["", build(report, runs)]
    gpu = _gpu_section()
    if gpu:
        sections += ["", gpu]
    text = "\n".join(sections).replace("\n\n\n", "\n\n") + "\n"
    with open(PAGE, "w") as f:
        f.write(text)
    print(f"wrote {os.path.relpath(PAGE, ROOT)}")
    subprocess.run([sys.executable, FIGURES], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument(
        "--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS)
    )
    parser.add_argument(
        "--reduced",
        action="store_true",
        help="fewer sequence lengths, repeats and steps (a shorter run)",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="only rewrite the page and figures from benchmarks/results/",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="gpu: run attention_ops, generation and training on JAX and "
        "PyTorch on the GPU into benchmarks/results/gpu/ (the page's GPU "
        "section)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        help="stop a benchmark script (one backend's, where it runs per "
        "backend) after this many seconds",
    )
    args = parser.parse_args()
    if args.device == "gpu" and not args.render_only:
        backends = [b for b in args.backends if b != "tensorflow"]
        only = [b for b in args.only if b in GPU_BENCHMARKS]
        os.makedirs(GPU_RESULTS, exist_ok=True)
        # Written down once per GPU run: each `--only` run of it reuses it.
        info = _load("machine", GPU_RESULTS) or machine(gpu=True)
        print("machine:", json.dumps(info), flush=True)
        for name in only:
            run = run_benchmark(
                name, backends, args.reduced, GPU_RESULTS, args.timeout
            )
            info["runs"] = (_load("machine", GPU_RESULTS) or {}).get("runs", {})
            info["runs"][name] = run
            with open(os.path.join(GPU_RESULTS, "machine.json"), "w") as f:
                json.dump(info, f, indent=1)
        # The page is rendered where the results are kept (--render-only).
        print(f"results in {os.path.relpath(GPU_RESULTS, ROOT)}/")
        return
    elif not args.render_only:
        os.makedirs(RESULTS, exist_ok=True)
        info = machine()
        for name in args.only:
            run = run_benchmark(name, args.backends, args.reduced)
            # Re-read: another `--only` run may have stored its own since.
            info["runs"] = (_load("machine") or {}).get("runs", {})
            info["runs"][name] = run
            with open(os.path.join(RESULTS, "machine.json"), "w") as f:
                json.dump(info, f, indent=1)
    render()


if __name__ == "__main__":
    main()
