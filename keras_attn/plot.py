"""Figures for the guides: attention maps, position encodings, patch filters.

Needs matplotlib (`pip install keras-attn[plot]`). Every function takes
NumPy-convertible arrays, draws with the non-interactive Agg backend and
returns the matplotlib `Figure`; pass `path` to also save it as PNG.
"""

import numpy as np


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "keras_attn.plot needs matplotlib: pip install keras-attn[plot]"
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_numpy(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def _save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_position_encoding(
    encoding=None,
    sequence_length=64,
    hidden_dim=64,
    max_wavelength=10000,
    kind="both",
    path=None,
    title=None,
):
    """Heat map of a position encoding and the similarity of its positions.

    Args:
        encoding: optional array `(T, D)`, any position encoding (a learned
            table, a sinusoid). Defaults to the sinusoid table of
            `keras_attn.ops.sine_position_encoding` for `sequence_length`
            positions and `hidden_dim` channels.
        sequence_length: int, `T` of the default table.
        hidden_dim: int, `D` of the default table.
        max_wavelength: number, the base of the default table.
        kind: `"table"` (positions x channels), `"similarity"` (the dot
            products `(T, T)` between positions' encodings) or `"both"`.
        path: optional file name to save the figure to as PNG.
        title: optional figure title.

    Returns:
        The matplotlib `Figure`.
    """
    if kind not in ("table", "similarity", "both"):
        raise ValueError(
            "`kind` must be 'table', 'similarity' or 'both'. Received: "
            f"kind={kind!r}"
        )
    if encoding is None:
        from keras_attn.ops import sine_position_encoding

        encoding = sine_position_encoding(
            np.arange(sequence_length), hidden_dim, max_wavelength
        )
    encoding = _to_numpy(encoding).astype("float64")
    if encoding.ndim != 2:
        raise ValueError(
            "`encoding` must have shape (positions, channels). Received: "
            f"encoding.shape={encoding.shape}"
        )
    plt = _pyplot()
    panels = ["table", "similarity"] if kind == "both" else [kind]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False
    )
    for ax, panel in zip(axes[0], panels):
        if panel == "table":
            # A symmetric color scale keeps 0 white for any table.
            limit = max(float(np.abs(encoding).max()), 1e-12)
            image = ax.imshow(
                encoding, aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit
            )
            ax.set_xlabel("channel")
            ax.set_ylabel("position")
            ax.set_title("encoding")
        else:
            image = ax.imshow(encoding @ encoding.T, cmap="viridis")
            ax.set_xlabel("position")
            ax.set_ylabel("position")
            ax.set_title("dot product between positions")
        fig.colorbar(image, ax=ax)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
