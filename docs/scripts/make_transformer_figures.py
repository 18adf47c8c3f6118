"""Figures for the guides "The Transformer" and "Decoding".

Writes:

- docs/images/transformer_blocks.png: the encoder block, the decoder block
  and how they connect (drawn with matplotlib from the list of sublayers
  below, so the diagram follows the code's order of operations);
- docs/images/decoding_sampling.png: one next-token distribution reshaped
  by temperature, top-k and top-p.

Needs matplotlib only; a second:

    python docs/scripts/make_transformer_figures.py
"""

import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "images")

# Post-norm blocks (Vaswani et al. 2017; keras_attn's default,
# normalize_first=False), bottom to top: (label, colour).
ENCODER = [
    ("token embedding + positions", "#f4d6a0"),
    ("multi-head self-attention", "#f6b6a8"),
    ("add & layer norm", "#f3eeb0"),
    ("feed-forward (2 Dense)", "#a8d8f0"),
    ("add & layer norm", "#f3eeb0"),
]
DECODER = [
    ("token embedding + positions", "#f4d6a0"),
    ("masked (causal) self-attention", "#f6b6a8"),
    ("add & layer norm", "#f3eeb0"),
    ("cross-attention: Q decoder, K V encoder", "#e6b3e6"),
    ("add & layer norm", "#f3eeb0"),
    ("feed-forward (2 Dense)", "#a8d8f0"),
    ("add & layer norm", "#f3eeb0"),
    ("Dense -> softmax over the vocabulary", "#c8e6b0"),
]


def _box(ax, x, y, text, color, width=3.4, height=0.62):
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - height / 2),
            width,
            height,
            boxstyle="round,pad=0.04",
            facecolor=color,
            edgecolor="black",
            linewidth=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=8.5)


def _arrow(ax, start, end, **kwargs):
    ax.annotate(
        "",
        xy=end,
        xytext=start,
        arrowprops=dict(arrowstyle="->", linewidth=1.0, **kwargs),
    )


def _stack(ax, x, layers, bottom=0.8, step=0.95):
    ys = [bottom + i * step for i in range(len(layers))]
    for (label, color), y in zip(layers, ys):
        _box(ax, x, y, label, color)
    for y0, y1 in zip(ys[:-1], ys[1:]):
        _arrow(ax, (x, y0 + 0.33), (x, y1 - 0.33))
    return ys


def _residual(ax, x, y_from, y_to):
    # A skip connection drawn on the left of the stack.
    left = x - 1.95
    ax.plot([x - 1.7, left, left], [y_from, y_from, y_to], "k-", lw=0.7)
    _arrow(ax, (left, y_to), (x - 1.72, y_to))


def blocks_figure(path):
    fig, ax = plt.subplots(figsize=(10, 7.5))
    enc_x, dec_x = 2.4, 7.6
    enc = _stack(ax, enc_x, ENCODER, bottom=0.8)
    dec = _stack(ax, dec_x, DECODER, bottom=0.8)
    _residual(ax, enc_x, enc[0] + 0.45, enc[2])
    _residual(ax, enc_x, enc[2] + 0.45, enc[4])
    _residual(ax, dec_x, dec[0] + 0.45, dec[2])
    _residual(ax, dec_x, dec[2] + 0.45, dec[4])
    _residual(ax, dec_x, dec[4] + 0.45, dec[6])
    # The encoder output feeds every decoder block's cross-attention.
    _arrow(
        ax,
        (enc_x + 1.72, enc[4]),
        (dec_x - 1.72, dec[3]),
        connectionstyle="arc3,rad=-0.15",
        color="purple",
    )
    ax.text(5.0, (enc[4] + dec[3]) / 2 + 0.45, "encoder output\n(keys, values)",
            ha="center", fontsize=8, color="purple")
    # Repeat brackets.
    for x, lo, hi in ((enc_x, enc[1], enc[4]), (dec_x, dec[1], dec[6])):
        right = x + 1.95
        ax.plot([right, right + 0.12, right + 0.12, right],
                [lo - 0.35, lo - 0.35, hi + 0.35, hi + 0.35], "k-", lw=0.7)
        ax.text(right + 0.2, (lo + hi) / 2, "x N", va="center", fontsize=9)
    ax.text(enc_x, enc[0] - 0.75, "source tokens", ha="center", fontsize=9)
    ax.text(dec_x, dec[0] - 0.75, "target tokens (shifted right)",
            ha="center", fontsize=9)
    _arrow(ax, (enc_x, enc[0] - 0.6), (enc_x, enc[0] - 0.33))
    _arrow(ax, (dec_x, dec[0] - 0.6), (dec_x, dec[0] - 0.33))
    ax.text(enc_x, enc[-1] + 0.6, "TransformerEncoder", ha="center",
            fontsize=11, weight="bold")
    ax.text(dec_x, dec[-1] + 0.6, "TransformerDecoder (+ output layer)",
            ha="center", fontsize=11, weight="bold")
    ax.set_xlim(0, 10.2)
    ax.set_ylim(-0.2, dec[-1] + 1.0)
    ax.axis("off")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _softmax(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum()


def sampling_figure(path):
    logits = np.array([3.0, 2.6, 2.2, 1.5, 1.2, 0.8, 0.5, 0.1, -0.4, -1.0])
    base = _softmax(logits)
    panels = [("original", base)]
    for t in (0.5, 2.0):
        panels.append((f"temperature {t:g}", _softmax(logits / t)))
    top_k = np.where(np.arange(10) < 3, base, 0.0)
    panels.append(("top-k, k = 3", top_k / top_k.sum()))
    order = np.argsort(-base)
    keep = np.cumsum(base[order]) - base[order] < 0.8  # smallest set >= 0.8
    nucleus = np.zeros_like(base)
    nucleus[order[keep]] = base[order[keep]]
    panels.append(("top-p, p = 0.8", nucleus / nucleus.sum()))
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 2.8), sharey=True)
    for ax, (title, p) in zip(axes, panels):
        ax.bar(np.arange(10), p, color="tab:blue")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(10))
        ax.set_xlabel("token")
    axes[0].set_ylabel("probability")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    blocks_figure(os.path.join(OUT, "transformer_blocks.png"))
    sampling_figure(os.path.join(OUT, "decoding_sampling.png"))
    print("wrote docs/images/transformer_blocks.png, decoding_sampling.png")
