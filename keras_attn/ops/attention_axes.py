"""Attention over several axes: folding them onto one sequence axis.

`keras.layers.MultiHeadAttention(attention_axes=...)` attends over any set
of the inner axes of a `(B, ..., heads, dim)` tensor, for example over the
rows and columns of an image at once. These functions bring such a tensor
to the `(B', L, heads, dim)` layout of `scaled_dot_product_attention` (the
other inner axes join the batch, the attention axes are flattened into
one) and back, and do the same for masks and scores in Keras' score layout
`(B, <other axes>, heads, <query attention axes>, <key attention axes>)`.
"""

import math

from keras import ops


def _layout(rank, axes):
    """The non-attention inner axes, and the permutation that moves the
    attention axes just before `(heads, dim)`."""
    other = [a for a in range(rank - 2) if a not in axes]
    return other, (*other, *axes, rank - 2, rank - 1)


def _length(x, axes):
    dims = [x.shape[a] for a in axes]
    if any(not isinstance(d, int) for d in dims):
        return -1
    return math.prod(dims)


def fold_attention_axes(x, axes):
    """`(B, ..., heads, dim)` -> `(B', L, heads, dim)`.

    Args:
        x: tensor of rank 4 or more, `(B, <inner axes>, heads, dim)`.
        axes: sorted tuple of the attention axes (among `1 .. rank - 3`).

    Returns:
        The tensor with the other inner axes folded into the batch and the
        attention axes flattened, in row-major order, into one axis `L`.
    """
    _, perm = _layout(len(x.shape), axes)
    length = _length(x, axes)
    # (B, <other>, <attention>, heads, dim)
    x = ops.transpose(x, perm)
    # (B * prod(other), prod(attention), heads, dim)
    return ops.reshape(x, (-1, length, x.shape[-2], x.shape[-1]))


def unfold_attention_axes(x, like, axes):
    """Inverse of `fold_attention_axes` for an output `(B', T', heads, Hv)`.

    Args:
        x: tensor `(B', T', heads, Hv)`.
        like: the query before folding, `(B, ..., heads, H)`: gives the
            sizes of the inner axes.
        axes: the attention axes given to `fold_attention_axes`.

    Returns:
        `(B, ..., heads, Hv)` in the axis order of `like`.
    """
    rank = len(like.shape)
    other, perm = _layout(rank, axes)
    shape = ops.shape(like)
    # (B, <other>, <attention>, heads, Hv)
    x = ops.reshape(
        x,
        (*[shape[a] for a in other], *[shape[a] for a in axes], *x.shape[2:]),
    )
    return ops.transpose(x, [perm.index(i) for i in range(rank)])


def fold_attention_mask(mask, query, key, axes):
    """A mask in Keras' score layout -> `(B', 1|N, T', S')`.

    Args:
        mask: boolean tensor of Keras' score rank, broadcastable to
            `(B, <other>, heads, <query attention>, <key attention>)`.
        query: the projected query `(B, ..., heads, H)`.
        key: the projected key `(B, ..., heads_kv, H)`.
        axes: the attention axes.

    Returns:
        A boolean mask broadcastable to the folded scores `(B', N, T', S')`.
    """
    other, _ = _layout(len(query.shape), axes)
    q_shape, k_shape = ops.shape(query), ops.shape(key)
    heads = 1 if mask.shape[len(other)] == 1 else query.shape[-2]
    attended = (
        *[q_shape[a] for a in other],
        heads,
        *[q_shape[a] for a in axes],
        *[k_shape[a] for a in axes],
    )
    mask = ops.broadcast_to(mask, attended)
    return ops.reshape(
        mask, (-1, heads, _length(query, axes), _length(key, axes))
    )


def unfold_attention_scores(scores, query, key, axes):
    """Folded scores `(B', N, T', S')` -> Keras' score layout.

    Returns:
        `(B, <other>, N, <query attention axes>, <key attention axes>)`.
    """
    other, _ = _layout(len(query.shape), axes)
    q_shape, k_shape = ops.shape(query), ops.shape(key)
    return ops.reshape(
        scores,
        (
            *[q_shape[a] for a in other],
            scores.shape[1],
            *[q_shape[a] for a in axes],
            *[k_shape[a] for a in axes],
        ),
    )
