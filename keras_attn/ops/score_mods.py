"""Score modifiers: a hook on the attention logits, and two built from it.

`scaled_dot_product_attention(..., score_mod=fn)` calls
`fn(scores, batch, head, q_idx, kv_idx)` on the float32 logits (after the
scale and any `bias`, before the soft cap and the mask) and attends with
what it returns, the idea of PyTorch's flex attention. The four index
tensors are int32 and broadcast against `scores` `(B, N, T, S)`: `batch`
is `(B, 1, 1, 1)`, `head` `(1, N, 1, 1)`, `q_idx` `(1, 1, T, 1)`, `kv_idx`
`(1, 1, 1, S)`, so a modifier is written once with broadcasting
`keras.ops` and works unchanged on the chunked path, which calls it block
by block with the block's indices (and never builds a `(T, S)` tensor).

Layers take a modifier as a serializable object: a subclass of `ScoreMod`
registered with `keras.saving.register_keras_serializable`, so that
`.keras` files load in safe mode. `AlibiScoreMod` and
`relative_position_score_mod` re-express ALiBi and the T5 relative bias
through the hook.
"""

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn.ops import positions as position_ops


class ScoreMod:
    """Base class of serializable score modifiers (for layers).

    A subclass implements `__call__(scores, batch, head, q_idx, kv_idx)`,
    returning modified scores of the shape of `scores`, with broadcasting
    `keras.ops` (see `keras_attn.ops.scaled_dot_product_attention`), and
    `get_config()` returning its constructor arguments. Register it with
    `keras.saving.register_keras_serializable` so that a layer holding it
    saves to and loads from a `.keras` file (safe mode included).

    Example:

    ```python
    import keras
    import numpy as np
    import keras_attn
    from keras_attn.ops import ScoreMod

    @keras.saving.register_keras_serializable(package="my_package")
    class LocalBonus(ScoreMod):
        # Adds `bonus` to the logits of keys within 2 positions.
        def __init__(self, bonus=1.0):
            self.bonus = bonus

        def __call__(self, scores, batch, head, q_idx, kv_idx):
            near = keras.ops.abs(q_idx - kv_idx) <= 2
            return scores + keras.ops.where(near, self.bonus, 0.0)

        def get_config(self):
            return {"bonus": self.bonus}

    layer = keras_attn.layers.MultiHeadAttention(
        num_heads=2, key_dim=4, score_mod=LocalBonus(0.5)
    )
    x = np.random.rand(1, 6, 8).astype("float32")
    out = layer(x, x)  # (1, 6, 8)
    ```
    """

    def __call__(self, scores, batch, head, q_idx, kv_idx):
        raise NotImplementedError(
            f"{type(self).__name__} must implement "
            "__call__(scores, batch, head, q_idx, kv_idx)."
        )

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_attn")
class AlibiScoreMod(ScoreMod):
    """ALiBi as a score modifier: `scores + slope_h * (kv_idx - q_idx)`.

    The bias of `keras_attn.ops.alibi_bias` (and of
    `AlibiBias.compute_bias`), computed from the indices the attention
    passes, so that the chunked path never builds the `(N, T, S)` bias. In
    a `MultiHeadAttention` with a cache, `q_idx` is the query's position in
    the cache, so a decoding step gets the bias of its position.

    Args:
        num_heads: int, the number of query heads `N` (the slopes depend on
            it).
        alibi_bias_max: number, see `keras_attn.ops.alibi_slopes`. Defaults
            to `8`.
        bidirectional: bool, penalize the distance to future keys too
            (`-slope * |kv_idx - q_idx|`, for encoders). Defaults to
            `False`.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import AlibiScoreMod, scaled_dot_product_attention

    q = np.random.rand(1, 8, 4, 16).astype("float32")
    out = scaled_dot_product_attention(
        q, q, q, is_causal=True, score_mod=AlibiScoreMod(num_heads=4),
        implementation="chunked", chunk_size=4,
    )  # (1, 8, 4, 16), without a (4, 8, 8) bias tensor
    ```

    References:
        - Press et al., "Train Short, Test Long: Attention with Linear
          Biases Enables Input Length Extrapolation", 2022.
    """

    def __init__(self, num_heads, alibi_bias_max=8, bidirectional=False):
        check_positive_int("num_heads", num_heads)
        check_positive_number("alibi_bias_max", alibi_bias_max)
        self.num_heads = num_heads
        self.alibi_bias_max = alibi_bias_max
        self.bidirectional = bool(bidirectional)

    def __call__(self, scores, batch, head, q_idx, kv_idx):
        slopes = position_ops.alibi_slopes(self.num_heads, self.alibi_bias_max)
        # (1, N, 1, 1) slopes, (1, 1, t, s) key minus query position.
        slope = ops.take(slopes, ops.reshape(head, (-1,)), axis=0)
        slope = ops.reshape(slope, ops.shape(head))
        distance = ops.cast(kv_idx - q_idx, "float32")
        if self.bidirectional:
            distance = -ops.abs(distance)
        return scores + slope * distance

    def get_config(self):
        return {
            "num_heads": self.num_heads,
            "alibi_bias_max": self.alibi_bias_max,
            "bidirectional": self.bidirectional,
        }


def relative_position_score_mod(
    table, bidirectional=True, num_buckets=32, max_distance=128
):
    """The T5 relative position bias as a score modifier (a function).

    Adds `table[bucket(kv_idx - q_idx), head]`, the bias of
    `keras_attn.layers.RelativePositionBias.compute_bias`, computed from the
    indices the attention passes: on the chunked path, block by block,
    without a `(N, T, S)` bias tensor. `RelativePositionBias.score_mod()`
    returns this modifier for the layer's own table.

    Args:
        table: float tensor or variable `(num_buckets, N)`, the learned bias
            of each bucket and head.
        bidirectional: bool, see `keras_attn.ops.t5_relative_position_bucket`.
        num_buckets: int, the number of buckets (rows of `table`).
        max_distance: int, distances from here on share the last bucket.

    Returns:
        A function `(scores, batch, head, q_idx, kv_idx) -> scores`.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import relative_position_score_mod
    from keras_attn.ops import scaled_dot_product_attention

    table = np.random.normal(size=(32, 4)).astype("float32")
    q = np.random.rand(1, 8, 4, 16).astype("float32")
    out = scaled_dot_product_attention(
        q, q, q, score_mod=relative_position_score_mod(table),
        implementation="chunked", chunk_size=4,
    )  # (1, 8, 4, 16)
    ```

    References:
        - Raffel et al., "Exploring the Limits of Transfer Learning with a
          Unified Text-to-Text Transformer", 2020.
    """
    check_positive_int("num_buckets", num_buckets)
    check_positive_int("max_distance", max_distance)
    if len(tuple(table.shape)) != 2 or table.shape[0] != num_buckets:
        raise ValueError(
            "`table` must have shape (num_buckets, num_heads) with "
            f"num_buckets={num_buckets}. Received: table.shape="
            f"{tuple(table.shape)}"
        )
    num_heads = table.shape[1]

    def score_mod(scores, batch, head, q_idx, kv_idx):
        # (1, 1, t, s) buckets; (1, N, t, s) rows of the flattened table.
        buckets = position_ops.t5_relative_position_bucket(
            kv_idx - q_idx,
            bidirectional=bidirectional,
            num_buckets=num_buckets,
            max_distance=max_distance,
        )
        flat = ops.reshape(ops.cast(table, "float32"), (-1,))
        bias = ops.take(flat, buckets * num_heads + head, axis=0)
        return scores + bias

    return score_mod


def modify_scores(scores, score_mod, logit_soft_cap, q_start, kv_start, k_len):
    """Applies `score_mod`, then the soft cap, to float32 logits.

    Args:
        scores: float32 `(B, N, t, s)`, a block (or all) of the logits.
        score_mod: callable or None.
        logit_soft_cap: positive float or None.
        q_start: int or scalar tensor, the query index of row 0.
        kv_start: int or scalar tensor, the key index of column 0.
        k_len: int, the number of keys; key indices past it (the padding of
            the chunked path, masked afterwards) are clipped to `k_len - 1`
            so that a modifier that gathers by `kv_idx` stays in range.

    Returns:
        float32 scores of the same shape.
    """
    if score_mod is not None:
        shape = ops.shape(scores)
        batch = ops.reshape(ops.arange(shape[0], dtype="int32"), (-1, 1, 1, 1))
        head = ops.reshape(ops.arange(shape[1], dtype="int32"), (1, -1, 1, 1))
        q_idx = ops.arange(shape[2], dtype="int32") + ops.cast(q_start, "int32")
        kv_idx = ops.arange(shape[3], dtype="int32") + ops.cast(
            kv_start, "int32"
        )
        kv_idx = ops.minimum(kv_idx, k_len - 1)
        modified = score_mod(
            scores,
            batch,
            head,
            ops.reshape(q_idx, (1, 1, -1, 1)),
            ops.reshape(kv_idx, (1, 1, 1, -1)),
        )
        if tuple(modified.shape) != tuple(scores.shape):
            raise ValueError(
                "`score_mod` must return scores of the shape it receives. "
                f"Received: scores.shape={tuple(scores.shape)}, returned "
                f"shape={tuple(modified.shape)}"
            )
        scores = ops.cast(modified, "float32")
    if logit_soft_cap is not None:
        cap = float(logit_soft_cap)
        scores = cap * ops.tanh(scores / cap)
    return scores
