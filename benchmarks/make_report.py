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

`--only` reruns some benchmarks and keeps the stored results of the others.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
PAGE = os.path.join(ROOT, "docs", "benchmarks.md")
FIGURES = os.path.join(ROOT, "docs", "scripts", "make_benchmark_figures.py")
BACKENDS = ("jax", "tensorflow", "torch")
BENCHMARKS = ("attention_ops", "multi_head_attention", "generation", "training")
NAMES = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}

# ------------------------------------------------------------- running --


def _run(command, backend=None):
    """Runs a benchmark script with this checkout's keras_attn."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    if backend:
        env["KERAS_BACKEND"] = backend
    print("$", " ".join(command[1:]), flush=True)
    proc = subprocess.run(command, cwd=ROOT, env=env, text=True)
    if proc.returncode:
        print(f"  exit status {proc.returncode}", flush=True)
    return proc.returncode == 0


def _commands(name, backends, reduced):
    """`[(backend or None, argv, json path)]` of one benchmark."""
    script = os.path.join(HERE, f"{name}.py")
    path = os.path.join(RESULTS, f"{name}.json")
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


def run_benchmark(name, backends, reduced):
    """Runs one benchmark; returns `{"load": ..., "seconds": ...}`."""
    load_before = os.getloadavg()
    start = time.time()
    for backend, argv, path in _commands(name, backends, reduced):
        if os.path.exists(path):
            os.remove(path)
        _run([sys.executable, *argv, "--json", path], backend)
    if name in ("multi_head_attention", "generation"):
        # One file per backend -> one file with a list.
        merged = []
        for backend in backends:
            part = os.path.join(RESULTS, f"{name}_{backend}.json")
            if os.path.exists(part):
                with open(part) as f:
                    merged.append(json.load(f))
                os.remove(part)
        with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
            json.dump({"benchmark": name, "backends": merged}, f, indent=1)
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


def machine():
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
    for module in ("keras", "keras_hub", "jax", "tensorflow", "torch"):
        code = f"import {module}; print({module}.__version__)"
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        lines = proc.stdout.strip().splitlines()
        versions[module] = lines[-1] if lines else "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "date": _now(),
    }


# ----------------------------------------------------------- rendering --


def _load(name):
    path = os.path.join(RESULTS, f"{name}.json")
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


def _machine_section(info):
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
            "No GPU: every figure is a CPU figure. The load average is "
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
    text = f"{value:.3f} s" if unit == "s" else f"{value:,.0f} MiB"
    if base and "error" not in base and base[key] > 0:
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
        "the dense `reference` path, in the same run (results from the "
        "script before it had those columns: both ratios to "
        "`keras.ops.dot_product_attention`). JAX and TensorFlow calls are "
        'jit-compiled (XLA), PyTorch runs eagerly. "skipped": the dense '
        "matrices would not fit the script's memory budget.",
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


def _generation_section(report, runs):
    lines = [
        "## Generation with a KV cache",
        "",
        "`KERAS_BACKEND=<backend> python benchmarks/generation.py`",
        "",
        "A small `TransformerLM` (width 128, 2 blocks), batch 4, a 32-token "
        "prompt and 256 new tokens, greedy; one CPU thread; against the "
        "same-size keras-hub decoder with keras-hub's cached decoding. "
        "Columns: throughput of each way of generating in tokens/s, and "
        "the ratios of the issue.",
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
        if "32" in steps and "480" in steps:
            ratios["step at 480 / at 32"] = f"{steps['480'] / steps['32']:.2f}"
        for name, ms in times.items():
            if name.startswith("keras-hub") and "ours, cached" in times:
                ratios["ours / keras-hub time"] = (
                    f"{times['ours, cached'] / ms:.2f}"
                )
        rate = {n: f"{tokens / (ms / 1e3):,.0f}" for n, ms in times.items()}
        rows.append((result["backend"], rate, ratios))
    missing = [b for b in BACKENDS if b not in [r[0] for r in rows]]
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
                    f"{seconds * 1e3:,.0f} | "
                    f"{entry['cpu_seconds'][name] * 1e3:,.0f} | "
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
        _machine_section(info),
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
    args = parser.parse_args()
    if not args.render_only:
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
