"""Plots of the benchmarks, for the page "Benchmarks".

Reads the results that `make bench` (`benchmarks/make_report.py`) stores in
`benchmarks/results/` and writes, into docs/images/:

- `bench_attention_ops.png`: time and peak memory of one attention call
  against the sequence length, per backend and implementation (causal
  calls), from `attention_ops.json`;
- `bench_training.png`: training throughput of keras-attn and its peers
  per backend, for the language model and the ViT, from `training.json`.

It needs matplotlib only and does not run any benchmark:

    python docs/scripts/make_benchmark_figures.py
"""

import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "..", "..", "benchmarks", "results")
OUT = os.path.join(HERE, "..", "images")
NAMES = {"jax": "JAX", "tensorflow": "TensorFlow", "torch": "PyTorch"}
PEER_COLOURS = {
    "ours": "tab:blue",
    "keras-hub": "tab:orange",
    "torch.nn": "tab:green",
}


def _load(name):
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def attention_series(report):
    """`{backend: {implementation: [(N, seconds, MiB), ...]}}`, causal."""
    series = {}
    for row in report["rows"]:
        if not row["causal"]:
            continue
        per_backend = series.setdefault(row["backend"], {})
        for name, result in row["results"].items():
            if result is None or "error" in result:
                continue
            per_backend.setdefault(name, []).append(
                (row["n"], result["seconds"], result["peak_mib"])
            )
    return series


def attention_figure(report, path):
    series = attention_series(report)
    fig, axes = plt.subplots(
        2, len(series), figsize=(4.2 * len(series), 7), squeeze=False
    )
    for column, (backend, lines) in enumerate(series.items()):
        for name, points in lines.items():
            points.sort()
            n = [p[0] for p in points]
            style = "--" if name == "keras.ops" else "-"
            axes[0, column].loglog(
                n, [p[1] for p in points], style, marker="o", label=name
            )
            axes[1, column].loglog(
                n,
                [max(p[2], 1.0) for p in points],
                style,
                marker="o",
                label=name,
            )
        axes[0, column].set_title(f"{NAMES.get(backend, backend)}, causal")
        axes[1, column].set_xlabel("sequence length N")
    axes[0, 0].set_ylabel("time of one call, s")
    axes[1, 0].set_ylabel("peak memory growth, MiB")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(
        "scaled_dot_product_attention: B=1, 8 heads of 64, float32 "
        "(tables on this page)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def training_bars(report):
    """`{model: [(label, {contender: rate}), ...], unit}` per model."""
    bars = {}
    for result in report["backends"]:
        if "error" in result:
            continue
        backend = NAMES.get(result["backend"], result["backend"])
        for entry in result["results"]:
            model = bars.setdefault(
                entry["model"], {"unit": entry["unit"], "groups": []}
            )
            method = entry["method"]
            label = f"{backend}\n{method.split(' (')[0]}"
            model["groups"].append((label, entry["rate"]))
    return bars


def training_figure(report, path):
    bars = training_bars(report)
    titles = {"lm": "decoder-only LM", "vit": "ViT classifier"}
    fig, axes = plt.subplots(
        1, len(bars), figsize=(6.5 * len(bars), 4.2), squeeze=False
    )
    for axis, (model, data) in zip(axes[0], bars.items()):
        width = 0.27
        seen = set()
        for i, (_label, rates) in enumerate(data["groups"]):
            names = list(rates)
            for j, name in enumerate(names):
                x = i + (j - (len(names) - 1) / 2) * width
                axis.bar(
                    x,
                    rates[name],
                    width,
                    color=PEER_COLOURS.get(name, "tab:grey"),
                    label=None if name in seen else name,
                )
                seen.add(name)
        axis.set_xticks(range(len(data["groups"])))
        axis.set_xticklabels([g[0] for g in data["groups"]], fontsize=8)
        # Head room above the bars for the legend.
        top = max(max(rates.values()) for _, rates in data["groups"])
        axis.set_ylim(0, top * 1.3)
        axis.set_ylabel(data["unit"])
        axis.set_title(f"training step, {titles.get(model, model)}")
        axis.legend(fontsize=8, ncol=3, loc="upper center")
    sizes = report["backends"][0].get("sizes", {})
    fig.suptitle(
        "Training throughput, higher is better (width "
        f"{sizes.get('width')}, {sizes.get('layers')} blocks, "
        f"{sizes.get('heads')} heads; median of {report['runs']} runs; "
        "wall time, shared CPU: the load is on the page)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main():
    os.makedirs(OUT, exist_ok=True)
    written = []
    attention = _load("attention_ops")
    if attention and attention["rows"]:
        attention_figure(
            attention, os.path.join(OUT, "bench_attention_ops.png")
        )
        written.append("bench_attention_ops.png")
    training = _load("training")
    if training and training["backends"]:
        training_figure(training, os.path.join(OUT, "bench_training.png"))
        written.append("bench_training.png")
    for name in written:
        print(f"wrote docs/images/{name}")


if __name__ == "__main__":
    main()
