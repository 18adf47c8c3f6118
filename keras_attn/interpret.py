"""Looking inside trained transformers: attention rollout.

Pure NumPy functions on attention weights returned by the layers and models
(for example `keras_attn.models.VisionTransformer.attention_scores`). They
take any array convertible by `keras.ops.convert_to_numpy`, need no
matplotlib, and return NumPy arrays in float64; `keras_attn.plot` draws
their results.
"""

import math
import numbers

import numpy as np

from keras_attn._validation import check_choice

__all__ = ["attention_rollout"]

HEAD_FUSIONS = ("mean", "max", "min")


def _to_numpy(x):
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x), "float64")


def attention_rollout(
    attention_scores,
    grid_size=None,
    class_token=True,
    head_fusion="mean",
    add_residual=True,
):
    """Attention rollout: how much each patch flows into the class token.

    The attention weights of one layer say how much each token reads from
    the others in that layer only; rollout follows the flow of information
    through all layers. Per layer, the heads are fused (averaged by default)
    into `A_l (B, T, T)`; the residual connection is accounted for by adding
    the identity and renormalizing each row, `A_l <- (A_l + I) / 2` for
    row-stochastic `A_l`; and the layers are multiplied through,
    `R = A_L @ ... @ A_2 @ A_1`. Row `i` of `R` is how much token `i` of the
    last layer draws on each input token.

    The result is the class token's row of `R` without its own column (or,
    with `class_token=False`, the mean of all rows, for models that pool by
    averaging), renormalized to sum to 1 and reshaped to the patch grid.

    Args:
        attention_scores: a list of the attention weights of each layer, in
            order from the first, each `(B, num_heads, T, T)` with rows that
            sum to 1 (softmax outputs).
        grid_size: the patch grid: an int (1-D), a pair `(rows, columns)`,
            or `None` for a square grid of the patch count.
        class_token: bool, whether token 0 is a class token (the map is its
            row); otherwise the map is the mean row over all tokens.
            Defaults to `True`.
        head_fusion: `"mean"` (as in the paper), `"max"` or `"min"` over the
            heads. Defaults to `"mean"`.
        add_residual: bool, whether to add the identity for the residual
            connection before renormalizing. Defaults to `True`.

    Returns:
        A float64 NumPy array `(B, *grid_size)` that sums to 1 over the grid
        for every example, or is all 0 for an example whose flow is 0
        (possible with `add_residual=False` and fully masked queries, whose
        weight rows are 0: such rows stay 0, never NaN).

    Example:

    ```python
    import numpy as np
    from keras_attn.interpret import attention_rollout

    weights = np.random.dirichlet(np.ones(5), size=(2, 3, 5))  # (B, N, T, T)
    rollout = attention_rollout([weights, weights], grid_size=(2, 2))
    rollout.shape  # (2, 2, 2)
    ```

    References:
        - Quantifying Attention Flow in Transformers (Abnar and Zuidema,
          2020).
    """
    if isinstance(attention_scores, np.ndarray) or not isinstance(
        attention_scores, (list, tuple)
    ):
        raise ValueError(
            "`attention_scores` must be a list of (batch, heads, tokens, "
            "tokens) arrays, one per layer. Received: "
            f"attention_scores={type(attention_scores).__name__}"
        )
    if not attention_scores:
        raise ValueError(
            "`attention_scores` must hold at least one layer. Received: "
            "attention_scores=[]"
        )
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    layers = [_to_numpy(s) for s in attention_scores]
    first = layers[0].shape
    for i, scores in enumerate(layers):
        if (
            scores.ndim != 4
            or scores.shape[-1] != scores.shape[-2]
            or scores.shape != first
        ):
            raise ValueError(
                "Every entry of `attention_scores` must have the shape "
                "(batch, heads, tokens, tokens) of the first. Received: "
                f"attention_scores[{i}].shape={scores.shape}"
            )
    batch, tokens = first[0], first[-1]
    num_patches = tokens - 1 if class_token else tokens
    if grid_size is None:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(
                f"{num_patches} patches do not form a square grid; pass "
                f"`grid_size`. Received: grid_size=None"
            )
        grid_size = (side, side)
    elif isinstance(grid_size, numbers.Integral):
        grid_size = (int(grid_size),)
    grid_size = tuple(grid_size)
    if math.prod(grid_size) != num_patches:
        raise ValueError(
            f"`grid_size` must hold the {num_patches} patches. Received: "
            f"grid_size={grid_size}"
        )

    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    eye = np.eye(tokens)
    rollout = np.broadcast_to(eye, (batch, tokens, tokens))
    for scores in layers:
        a = fuse(scores, axis=1)  # (B, T, T)
        if add_residual:
            a = a + eye
        a = _normalize_rows(a)
        rollout = a @ rollout  # (B, T, T): A_l @ ... @ A_1
    if class_token:
        flow = rollout[:, 0, 1:]  # (B, T - 1): class token <- patches
    else:
        flow = rollout.mean(axis=1)  # (B, T)
    flow = _normalize_rows(flow)
    return flow.reshape(batch, *grid_size)


def _normalize_rows(x):
    # Rows that sum to 0 (a fully masked query attends to nothing: the
    # layers return zero weights) stay 0 rather than 0 / 0 = NaN.
    total = x.sum(axis=-1, keepdims=True)
    return np.divide(x, total, out=np.zeros_like(x), where=total != 0)
