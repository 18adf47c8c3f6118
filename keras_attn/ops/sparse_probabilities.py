"""Sparse normalisations of scores: sparsemax and hardmax, with masks.

Like `masked_softmax`, they give masked positions exactly 0 and a fully
masked row zeros, and compute in float32 whatever the input dtype.
"""

from keras import ops

from keras_attn.ops.masked_softmax import checked_logits_and_mask


def _prepare(logits, mask, axis):
    logits, mask, axis = checked_logits_and_mask(logits, mask, axis)
    if mask is not None:
        mask = ops.broadcast_to(ops.cast(mask, "bool"), ops.shape(logits))
    return logits, mask, axis


def sparsemax(logits, mask=None, axis=-1):
    """Sparsemax: the Euclidean projection of the scores onto the simplex.

    `sparsemax(z) = argmin_p ||p - z||^2` over probability vectors `p`,
    which is `max(z - tau, 0)` with the threshold `tau` chosen so the
    result sums to 1 (Martins and Astudillo, 2016): with `z` sorted in
    decreasing order, `k` the largest index with
    `1 + k z_(k) > sum_{j<=k} z_(j)`, `tau = (sum_{j<=k} z_(j) - 1) / k`.
    Unlike the softmax, low scores get exactly 0. Gradients follow the
    closed form (piecewise linear).

    Masked positions get exactly 0; a fully masked row gives zeros.

    Args:
        logits: float tensor.
        mask: optional boolean tensor (or 0/1 numeric) that broadcasts to
            `logits`; False excludes a position.
        axis: int, the axis to normalise over.

    Returns:
        A tensor of the shape and dtype of `logits`, each row summing to 1
        (0 for a fully masked row).

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import sparsemax

    sparsemax(np.array([[0.1, 1.2, 0.9, -1.0]], "float32"))
    # [[0.0, 0.65, 0.35, 0.0]]
    ```

    References:
        - [Martins and Astudillo, 2016. From Softmax to Sparsemax: A Sparse
          Model of Attention and Multi-Label
          Classification](https://arxiv.org/abs/1602.02068)
    """
    logits, mask, axis = _prepare(logits, mask, axis)
    dtype = logits.dtype
    z = ops.moveaxis(ops.cast(logits, "float32"), axis, -1)  # (..., N)
    if mask is not None:
        mask = ops.moveaxis(mask, axis, -1)
        # A masked position becomes 2 below the row's largest kept score:
        # a probability is at most 1, so tau >= max - 1 and that position
        # gets 0 (and never enters the support), while staying finite
        # (no inf - inf in the sums).
        row_max = ops.max(
            ops.where(mask, z, -3.0e38), axis=-1, keepdims=True
        )  # (..., 1)
        row_max = ops.where(ops.any(mask, -1, keepdims=True), row_max, 0.0)
        z = ops.where(mask, z, ops.stop_gradient(row_max) - 2.0)
    # Shift by the row max: the result does not change, the sums stay small.
    z = z - ops.stop_gradient(ops.max(z, axis=-1, keepdims=True))
    n = z.shape[-1] or ops.shape(z)[-1]
    z_sorted = ops.flip(ops.sort(z, axis=-1), axis=-1)  # decreasing
    cumulative = ops.cumsum(z_sorted, axis=-1)  # (..., N)
    k = ops.cast(ops.arange(1, n + 1), "float32")  # (N,)
    in_support = ops.cast(1.0 + k * z_sorted > cumulative, "float32")
    # The support is a prefix of the sorted scores: its size, and its sum.
    support = ops.sum(in_support, axis=-1, keepdims=True)  # (..., 1)
    support_sum = ops.sum(in_support * z_sorted, axis=-1, keepdims=True)
    tau = (support_sum - 1.0) / support
    probabilities = ops.maximum(z - tau, 0.0)
    if mask is not None:
        probabilities = ops.where(mask, probabilities, 0.0)
    return ops.cast(ops.moveaxis(probabilities, -1, axis), dtype)


def hardmax(logits, mask=None, axis=-1):
    """One-hot on the largest score of each row (tfa's `hardmax`).

    Among tied scores the backend's `argmax` picks one. Masked positions
    are never chosen; a fully masked row gives zeros. Its gradient is
    zero.

    Args:
        logits: float tensor.
        mask: optional boolean tensor (or 0/1 numeric) that broadcasts to
            `logits`; False excludes a position.
        axis: int, the axis to take the maximum over.

    Returns:
        A 0/1 tensor of the shape and dtype of `logits`.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import hardmax

    hardmax(np.array([[0.1, 1.2, 0.9]], "float32"), mask=[[1, 0, 1]])
    # [[0.0, 0.0, 1.0]]
    ```
    """
    logits, mask, axis = _prepare(logits, mask, axis)
    dtype = logits.dtype
    z = ops.cast(logits, "float32")
    if mask is not None:
        z = ops.where(mask, z, -3.0e38)
    n = z.shape[axis] or ops.shape(z)[axis]
    index = ops.argmax(z, axis=axis)
    one_hot = ops.moveaxis(ops.one_hot(index, n, dtype="float32"), -1, axis)
    if mask is not None:
        one_hot = ops.where(ops.any(mask, axis, keepdims=True), one_hot, 0.0)
    return ops.cast(one_hot, dtype)
