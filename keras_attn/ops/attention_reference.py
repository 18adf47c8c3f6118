"""The reference attention: einsum, masked softmax in float32, einsum.

It supports every feature of `scaled_dot_product_attention` (dropout,
returning the weights, score modifiers) and is the definition the other
implementations are tested against.
"""

import keras
from keras import ops

from keras_attn.ops.masked_softmax import masked_softmax
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.score_mods import modify_scores


def group_heads(query, num_kv_heads):
    """`(B, T, N, H)` -> `(B, T, K, G, H)` with `G = N // K`."""
    shape = ops.shape(query)
    num_heads, head_dim = query.shape[2], query.shape[3]
    groups = num_heads // num_kv_heads
    return ops.reshape(query, (-1, shape[1], num_kv_heads, groups, head_dim))


def reference_attention(
    query,
    key,
    value,
    mask,
    bias,
    is_causal,
    scale,
    dropout_rate,
    seed,
    return_weights,
    score_mod=None,
    logit_soft_cap=None,
    sinks=None,
):
    num_heads, num_kv_heads = query.shape[2], key.shape[2]
    q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
    # (B, T, K, G, H): query heads grouped under their key/value head.
    grouped_query = group_heads(
        query * ops.cast(scale, query.dtype), num_kv_heads
    )
    # (B, K, G, T, S)
    logits = ops.einsum("btkgh,bskh->bkgts", grouped_query, key)
    # (B, N, T, S), softmax in float32 whatever the compute dtype.
    logits = ops.reshape(logits, (-1, num_heads, q_len, k_len))
    logits = ops.cast(logits, "float32")
    if bias is not None:
        logits = logits + ops.cast(bias, "float32")
    logits = modify_scores(logits, score_mod, logit_soft_cap, 0, 0, k_len)
    if is_causal:
        mask = combine_masks(mask, causal_mask(q_len, k_len))
    if sinks is not None:
        # (N,) -> (1, N, 1, 1): one sink logit per head and row.
        sinks = ops.reshape(ops.cast(sinks, "float32"), (1, -1, 1, 1))
    # A query row with no key left gets weights of zeros.
    weights = ops.cast(masked_softmax(logits, mask, sinks=sinks), value.dtype)
    attended = weights
    if dropout_rate > 0:
        attended = keras.random.dropout(weights, dropout_rate, seed=seed)
    # (B, K, G, T, S)
    grouped = ops.reshape(
        attended, (-1, num_kv_heads, num_heads // num_kv_heads, q_len, k_len)
    )
    # (B, T, K, G, Hv) -> (B, T, N, Hv)
    output = ops.einsum("bkgts,bskh->btkgh", grouped, value)
    output = ops.reshape(output, (-1, q_len, num_heads, value.shape[-1]))
    if return_weights:
        return output, weights
    return output
