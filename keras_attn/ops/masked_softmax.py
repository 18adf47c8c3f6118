"""The masked softmax: the one home of the fully-masked-row rule."""

import keras
from keras import ops

from keras_attn import _validation

# Stand-in logit of masked positions, float32. Finite, so that a row whose
# positions are all masked never computes inf - inf = NaN (nor a NaN
# gradient); those rows are set to zero explicitly.
MASKED_LOGIT = -1e30


def checked_logits_and_mask(logits, mask, axis):
    """`logits` and `mask` as tensors and `axis` as a non-negative int.

    The argument checks every normalisation of scores shares (this one,
    `sparsemax`, `hardmax`): raises a `ValueError` naming the argument
    before any backend op.
    """
    if not isinstance(logits, keras.KerasTensor):
        logits = ops.convert_to_tensor(logits)
    axis = _validation.check_axis("axis", axis, len(logits.shape))
    if mask is not None:
        if not isinstance(mask, keras.KerasTensor):
            mask = ops.convert_to_tensor(mask)
        _validation.check_mask_dtype("mask", mask)
        _validation.check_broadcastable(
            "mask",
            mask,
            _validation.static_shape(logits),
            "the shape of `logits`",
        )
    return logits, mask, axis


def masked_softmax(logits, mask=None, axis=-1, sinks=None):
    """Softmax over the positions `mask` allows; a fully masked row is zero.

    The softmax runs in float32 whatever the dtype of `logits` (float16
    logits overflow in `exp`, and no float16 stand-in for "minus infinity"
    is small enough), and the result is cast back to that dtype. Masked
    positions get a weight of exactly 0. A row (a slice along `axis`) in
    which every position is masked gets weights of zeros, never NaN and
    never uniform, in float32, float16 and bfloat16 alike, and its gradient
    is zero too.

    Args:
        logits: float tensor.
        mask: optional boolean tensor (or 0/1 numeric, nonzero = kept) that
            broadcasts to the shape of `logits`; False excludes a position.
        axis: int, the axis the softmax normalises over.
        sinks: optional float tensor that broadcasts to the shape of
            `logits` with size 1 along `axis`: one extra logit per row (an
            attention sink) that takes part in the normalisation but has no
            position, so the row sums to less than 1. A fully masked row
            gives all its mass to the sink: zeros, as without sinks.

    Returns:
        A tensor of the shape and dtype of `logits`, each row along `axis`
        summing to 1 (less with `sinks`), or to 0 where the whole row is
        masked.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import masked_softmax

    logits = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], "float32")
    mask = np.array([[True, True, False], [False, False, False]])
    masked_softmax(logits, mask)
    # [[0.269, 0.731, 0.0],
    #  [0.0,   0.0,   0.0]]
    ```
    """
    logits, mask, axis = checked_logits_and_mask(logits, mask, axis)
    if sinks is not None and not isinstance(sinks, keras.KerasTensor):
        sinks = ops.convert_to_tensor(sinks)
    dtype = logits.dtype
    logits = ops.cast(logits, "float32")
    # No `ops.softmax` shortcut without a mask: it warns on an axis of size
    # 1 (one key, a valid attention whose weight is 1).
    if mask is not None:
        mask = ops.cast(mask, "bool")
        logits = ops.where(mask, logits, MASKED_LOGIT)
    row_max = ops.max(logits, axis=axis, keepdims=True)
    if sinks is not None:
        sinks = ops.cast(sinks, "float32")
        row_max = ops.maximum(row_max, sinks)
    exp = ops.exp(logits - row_max)
    if mask is not None:
        # Masked positions are zeroed here rather than left to underflow: in
        # a fully masked row they equal the row's max and exp() gives 1.
        exp = ops.where(mask, exp, 0.0)
    total = ops.sum(exp, axis=axis, keepdims=True)
    if sinks is not None:
        # The sink's share of the mass: it has no value, it only dilutes.
        total = total + ops.exp(sinks - row_max)
    weights = exp / ops.where(total > 0, total, 1.0)
    return ops.cast(weights, dtype)
