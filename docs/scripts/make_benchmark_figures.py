"""Plots of the attention-ops benchmark, for the page "Benchmarks".

Reads the measured tables of docs/benchmarks.md (written from the output of
`benchmarks/attention_ops.py`) and writes docs/images/bench_attention_ops.png:
time and peak memory against the sequence length, per backend and
implementation, causal calls. Rerun the benchmark, paste its tables into
the page, and this script redraws the figure; it needs matplotlib only:

    python docs/scripts/make_benchmark_figures.py
"""

import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(__file__)
PAGE = os.path.join(HERE, "..", "benchmarks.md")
OUT = os.path.join(HERE, "..", "images")
BACKENDS = ("JAX", "TensorFlow", "PyTorch")
CELL = re.compile(r"([\d.]+) s.*?<br>([\d,]+) MiB")


def read_tables(text):
    """{backend: {implementation: [(N, causal, seconds, MiB), ...]}}."""
    tables = {}
    for backend in BACKENDS:
        match = re.search(
            rf"^### {backend}\n(.*?)(?=^#|\Z)", text, re.MULTILINE | re.DOTALL
        )
        if not match:
            continue
        rows = [
            line
            for line in match[1].splitlines()
            if line.startswith("|") and not line.startswith("|---")
        ]
        header = [c.strip() for c in rows[0].strip("|").split("|")]
        series = {name: [] for name in header[2:]}
        for row in rows[1:]:
            cells = [c.strip() for c in row.strip("|").split("|")]
            n, causal = int(cells[0]), cells[1] == "True"
            for name, cell in zip(header[2:], cells[2:]):
                found = CELL.match(cell)
                if found:
                    seconds = float(found[1])
                    mib = float(found[2].replace(",", ""))
                    series[name].append((n, causal, seconds, mib))
        tables[backend] = series
    return tables


def figure(tables, path):
    fig, axes = plt.subplots(
        2, len(tables), figsize=(4.2 * len(tables), 7), squeeze=False
    )
    for column, (backend, series) in enumerate(tables.items()):
        for name, points in series.items():
            causal = [p for p in points if p[1]]
            if not causal:
                continue
            n = [p[0] for p in causal]
            style = "--" if name == "keras.ops" else "-"
            axes[0, column].loglog(
                n, [p[2] for p in causal], style, marker="o", label=name
            )
            axes[1, column].loglog(
                n, [p[3] for p in causal], style, marker="o", label=name
            )
        axes[0, column].set_title(f"{backend}, causal")
        axes[1, column].set_xlabel("sequence length N")
    axes[0, 0].set_ylabel("time of one call, s")
    axes[1, 0].set_ylabel("peak memory growth, MiB")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        "scaled_dot_product_attention: B=1, 8 heads of 64, float32 "
        "(2-core CPU; tables below)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    with open(PAGE) as f:
        tables = read_tables(f.read())
    os.makedirs(OUT, exist_ok=True)
    figure(tables, os.path.join(OUT, "bench_attention_ops.png"))
    print("wrote docs/images/bench_attention_ops.png")
