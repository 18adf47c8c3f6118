"""Figures for the guides: attention maps, position encodings, patch filters.

Needs matplotlib (`pip install keras-attn[plot]`). Every function takes
NumPy-convertible arrays and returns a matplotlib `Figure` made without
pyplot (the caller's backend and pyplot state are left alone); pass `path`
to also save it as PNG.
"""

import numpy as np

from keras_attn._validation import check_choice
from keras_attn._validation import check_positive_int

__all__ = [
    "patch_filter_components",
    "plot_attention",
    "plot_attention_rollout",
    "plot_patch_filters",
    "plot_position_encoding",
    "plot_position_similarity",
    "position_similarity",
]


def _subplots(*args, figsize=None, **kwargs):
    """A new `Figure` and its axes, without pyplot.

    The figure is not registered with pyplot, so drawing neither switches
    nor needs the caller's backend (and nothing is left open in pyplot's
    figure list); `Figure.savefig` renders with Agg.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "keras_attn.plot needs matplotlib: pip install keras-attn[plot]"
        ) from e
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


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
    check_choice("kind", kind, ("table", "similarity", "both"))
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
    panels = ["table", "similarity"] if kind == "both" else [kind]
    fig, axes = _subplots(
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


def plot_attention(weights, source_tokens, target_tokens, path=None):
    """Draws an alignment heat map: target steps down, source tokens across.

    Args:
        weights: `(T, S)` attention weights (e.g. one row of the
            alignments returned by `RNNSeq2Seq.generate`), or `(1, T, S)`.
        source_tokens: `S` labels for the columns (strings or ints).
        target_tokens: `T` labels for the rows.
        path: optional file name to save the figure to (PNG).

    Returns:
        The matplotlib `Figure`.
    """
    weights = _to_numpy(weights)
    if weights.ndim == 3 and weights.shape[0] == 1:
        weights = weights[0]
    if weights.ndim != 2:
        raise ValueError(
            "`weights` must have shape (target_length, source_length). "
            f"Received: weights.shape={weights.shape}"
        )
    source_tokens = [str(t) for t in source_tokens]
    target_tokens = [str(t) for t in target_tokens]
    if (
        len(target_tokens) != weights.shape[0]
        or len(source_tokens) != (weights.shape[1])
    ):
        raise ValueError(
            "`target_tokens` and `source_tokens` must label the rows and "
            f"columns of `weights` {weights.shape}. Received: "
            f"{len(target_tokens)} target and {len(source_tokens)} source "
            "tokens"
        )
    size = (1.0 + 0.45 * len(source_tokens), 1.0 + 0.45 * len(target_tokens))
    fig, ax = _subplots(figsize=size)
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, aspect="auto")
    ax.set_xticks(range(len(source_tokens)), source_tokens, rotation=90)
    ax.set_yticks(range(len(target_tokens)), target_tokens)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return _save(fig, path)


# -- Vision: patch filters, position similarity, attention rollout ------------


def _normalize01(x):
    """Scales an array to [0, 1] (a constant array to 0.5)."""
    low, high = float(x.min()), float(x.max())
    if high - low < 1e-12:
        return np.full_like(x, 0.5)
    return (x - low) / (high - low)


def _patch_kernel(kernel):
    """The kernel array of a `PatchEmbedding` layer or of an array."""
    if hasattr(kernel, "kernel"):
        kernel = kernel.kernel
    kernel = _to_numpy(kernel).astype("float64")
    if kernel.ndim not in (3, 4):
        raise ValueError(
            "`kernel` must be a PatchEmbedding layer or its kernel, of shape "
            "(patch_height, patch_width, channels, hidden_dim) or "
            "(patch_length, channels, hidden_dim). Received: "
            f"kernel.shape={kernel.shape}"
        )
    return kernel


def patch_filter_components(kernel, num_filters=28, principal_components=True):
    """The first-layer patch filters, or their top principal components.

    Each of the `hidden_dim` columns of the patch-embedding kernel is a
    filter on a flattened patch. With `principal_components=True` this
    returns the top principal directions of those filters (the right
    singular vectors of the centered `(hidden_dim, patch_pixels)` filter
    matrix, in decreasing order of variance; each has an arbitrary sign),
    the picture of Figure 7 of the ViT paper; otherwise the first
    `num_filters` filters themselves.

    Args:
        kernel: a built `keras_attn.layers.PatchEmbedding`, or its kernel
            `(ph, pw, C, D)` or `(p, C, D)`.
        num_filters: int, how many filters or components.
        principal_components: bool. Defaults to `True`.

    Returns:
        A NumPy array `(k, ph, pw, C)` (or `(k, p, C)`), `k` at most
        `num_filters`.
    """
    kernel = _patch_kernel(kernel)
    check_positive_int("num_filters", num_filters)
    patch_shape, dim = kernel.shape[:-1], kernel.shape[-1]
    filters = kernel.reshape(-1, dim).T  # (D, P): one filter per row.
    if principal_components:
        centered = filters - filters.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(centered, full_matrices=False)
        filters = vt  # (min(D, P), P), by decreasing singular value.
    filters = filters[:num_filters]
    return filters.reshape(len(filters), *patch_shape)


def plot_patch_filters(
    kernel,
    num_filters=28,
    principal_components=True,
    columns=7,
    path=None,
    title=None,
):
    """Draws the patch-embedding filters of a ViT as a grid of small images.

    See `patch_filter_components`. Each filter is scaled to the full color
    range on its own: one channel draws in gray, three as RGB, other
    channel counts as the mean over channels. 1-D filters `(p, C)` draw as
    `channels x p` images.

    Args:
        kernel: a built `keras_attn.layers.PatchEmbedding`, or its kernel.
        num_filters: int, how many filters or components to draw.
        principal_components: bool, draw the top principal components of the
            filters (`True`) or the first filters themselves.
        columns: int, images per row.
        path: optional file name to save the figure to as PNG.
        title: optional figure title.

    Returns:
        The matplotlib `Figure`.
    """
    filters = patch_filter_components(kernel, num_filters, principal_components)
    count = len(filters)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = _subplots(
        rows, columns, figsize=(1.2 * columns, 1.2 * rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, f in zip(axes.ravel(), filters):
        if f.ndim == 2:  # (p, C) -> (C, p)
            ax.imshow(_normalize01(f.T), cmap="gray", vmin=0, vmax=1)
        elif f.shape[-1] == 3:
            ax.imshow(_normalize01(f))
        else:
            ax.imshow(
                _normalize01(f.mean(axis=-1)), cmap="gray", vmin=0, vmax=1
            )
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def position_similarity(position_embeddings, class_token=False):
    """Cosine similarity `(N, N)` between the patches' position embeddings.

    Args:
        position_embeddings: a built `keras_attn.layers.PatchEmbedding`
            (learned or sine positions), or a table `(N [+ 1], D)`.
        class_token: bool, whether row 0 of a table is the class token's
            position (it is dropped). Ignored for a layer, which knows.

    Returns:
        A NumPy array `(N, N)`, `N` the number of patches.
    """
    table = position_embeddings
    if hasattr(table, "position"):
        layer = table
        if layer.position is None or not layer.built:
            raise ValueError(
                "`position_embeddings` must be a built PatchEmbedding with "
                f"positions. Received: position={layer.position!r}, "
                f"built={layer.built}"
            )
        table = layer.position_table()
        class_token = layer.use_class_token
    table = _to_numpy(table).astype("float64")
    if table.ndim != 2:
        raise ValueError(
            "`position_embeddings` must have shape (positions, channels). "
            f"Received: position_embeddings.shape={table.shape}"
        )
    if class_token:
        table = table[1:]
    unit = table / np.maximum(
        np.linalg.norm(table, axis=-1, keepdims=True), 1e-12
    )
    return unit @ unit.T


def plot_position_similarity(
    position_embeddings,
    grid_size=None,
    class_token=False,
    path=None,
    title=None,
):
    """Each patch's position embedding against all others, as a grid of grids.

    Tile `(i, j)` of the figure is a `rows x columns` image: the cosine
    similarity of patch `(i, j)`'s position embedding with that of every
    patch (Figure 7 of the ViT paper). A trained ViT's learned positions
    show the 2-D structure of the image: nearby patches, and patches in the
    same row or column, are similar. For a 1-D grid the figure is the
    `(N, N)` similarity matrix.

    Args:
        position_embeddings: a built `keras_attn.layers.PatchEmbedding`, or a
            table `(N [+ 1], D)`.
        grid_size: `(rows, columns)` or an int (1-D) for a table; `None` for
            a layer (its build-time grid) or a square grid.
        class_token: bool, whether row 0 of a table is the class token.
        path: optional file name to save the figure to as PNG.
        title: optional figure title.

    Returns:
        The matplotlib `Figure`.
    """
    if grid_size is None and hasattr(position_embeddings, "grid_size"):
        grid_size = position_embeddings.grid_size
    similarity = position_similarity(position_embeddings, class_token)
    count = len(similarity)
    if grid_size is None:
        side = int(round(np.sqrt(count)))
        grid_size = (side, side)
    elif isinstance(grid_size, int):
        grid_size = (grid_size,)
    grid_size = tuple(grid_size)
    if int(np.prod(grid_size)) != count:
        raise ValueError(
            f"`grid_size` must hold the {count} patches. Received: "
            f"grid_size={grid_size}"
        )
    if len(grid_size) == 1:
        fig, ax = _subplots(figsize=(5, 4.5))
        image = ax.imshow(similarity, cmap="viridis", vmin=-1, vmax=1)
        ax.set_xlabel("patch")
        ax.set_ylabel("patch")
        fig.colorbar(image, ax=ax)
    else:
        rows, cols = grid_size
        fig, axes = _subplots(
            rows,
            cols,
            figsize=(0.8 * cols + 1, 0.8 * rows),
            squeeze=False,
            gridspec_kw={"wspace": 0.08, "hspace": 0.08},
        )
        for k, ax in enumerate(axes.ravel()):
            image = ax.imshow(
                similarity[k].reshape(rows, cols),
                cmap="viridis",
                vmin=-1,
                vmax=1,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        for i in range(rows):
            axes[i, 0].set_ylabel(str(i + 1))
        for j in range(cols):
            axes[-1, j].set_xlabel(str(j + 1))
        fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_attention_rollout(
    image, rollout_map, path=None, alpha=0.6, cmap="inferno", title=None
):
    """Draws attention rollout maps over their images.

    Each map (from `keras_attn.interpret.attention_rollout`) is stretched
    over its image (bilinear display interpolation) and drawn
    semi-transparently on top, next to the plain image.

    Args:
        image: one image `(H, W)`, `(H, W, 1)` or `(H, W, 3)`, or a batch of
            them when `rollout_map` is a batch.
        rollout_map: one map `(rows, columns)` or a batch `(B, rows,
            columns)`.
        path: optional file name to save the figure to as PNG.
        alpha: float, the opacity of the map.
        cmap: matplotlib colormap of the map.
        title: optional figure title.

    Returns:
        The matplotlib `Figure`: per image, the image above and the map over
        it below.
    """
    maps = _to_numpy(rollout_map).astype("float64")
    images = _to_numpy(image).astype("float64")
    if maps.ndim == 2:
        maps, images = maps[None], images[None]
    if maps.ndim != 3 or images.ndim not in (3, 4) or len(images) != len(maps):
        raise ValueError(
            "`rollout_map` must be (rows, columns) or (batch, rows, columns), "
            "with `image` (H, W[, C]) or a batch of as many. Received: "
            f"rollout_map.shape={_to_numpy(rollout_map).shape}, "
            f"image.shape={_to_numpy(image).shape}"
        )
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    count = len(maps)
    fig, axes = _subplots(2, count, figsize=(2 * count, 4), squeeze=False)
    for k in range(count):
        height, width = images[k].shape[:2]
        picture = _normalize01(images[k])
        gray = "gray" if picture.ndim == 2 else None
        for row in range(2):
            ax = axes[row, k]
            ax.imshow(picture, cmap=gray, extent=(0, width, height, 0))
            ax.axis("off")
        axes[1, k].imshow(
            maps[k],
            cmap=cmap,
            alpha=alpha,
            interpolation="bilinear",
            extent=(0, width, height, 0),
        )
    axes[0, 0].set_title("image", loc="left", fontsize=9)
    axes[1, 0].set_title("attention rollout", loc="left", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
