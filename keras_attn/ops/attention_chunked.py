"""The chunked (memory-efficient) attention: an online softmax over blocks.

Keys are processed in blocks with an online softmax (a running max and
normaliser per query), queries in blocks too, so only `(block_q, block_k)`
weights exist at any time: O(T*S) time, O(T + S) extra memory. Blocks that
a causal mask hides entirely are never computed. On PyTorch, whose native
kernel already streams over the keys, only the queries are blocked.

Score modifiers run block by block: `score_mod` and the soft cap on each
`(block_q, block_k)` block of logits with that block's indices, and the
attention sinks as the starting state of the online softmax (a running max
equal to the sink and a normaliser of 1: a key of value zero seen first).
On PyTorch a `score_mod` or soft cap takes the key-block loop too, as its
kernel has neither.

The backward pass is memory-efficient too: the block loops (in
`_chunked_blocks.py`) keep only the output and each row's log-sum-exp and
recompute the weights block by block, as flash attention does, so a
training step needs O(T + S) extra memory per head. Gradients reach the
query, key, value, bias and sinks; a `score_mod` (which may close over
trainable variables) is differentiated by plain autodiff instead, which
keeps every block's weights. On PyTorch without modifiers the native
kernel's own backward is used.
"""

import keras
from keras import ops

from keras_attn._validation import static_shape
from keras_attn.ops._chunked_blocks import attend
from keras_attn.ops._chunked_plan import Blocks
from keras_attn.ops.attention_fused import fused_attention
from keras_attn.ops.attention_fused import to_rank4
from keras_attn.ops.attention_reference import group_heads
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks


def _group_mask_heads(x, num_kv_heads):
    """`(b, n, t, s)` with n in {1, N} -> `(b, K or 1, G or 1, t, s)`."""
    _, n, t, s = x.shape
    if n == 1:
        return ops.expand_dims(x, 2)
    return ops.reshape(x, (-1, num_kv_heads, n // num_kv_heads, t, s))


def chunked_attention(
    query,
    key,
    value,
    mask,
    bias,
    is_causal,
    scale,
    chunk,
    score_mod=None,
    logit_soft_cap=None,
    sinks=None,
):
    q_len, num_heads = static_shape(query)[1:3]
    k_len, num_kv_heads = static_shape(key)[1:3]
    if None in (q_len, k_len):
        raise ValueError(
            "implementation='chunked' needs static sequence lengths. Received: "
            f"query.shape={query.shape}, key.shape={key.shape}"
        )
    modifies = score_mod is not None or logit_soft_cap is not None
    if keras.backend.backend() == "torch" and not modifies:
        return _chunked_torch(
            query, key, value, mask, bias, is_causal, scale, chunk, sinks
        )
    value_dim = value.shape[-1]
    out_dtype = query.dtype
    num_key_blocks = -(-k_len // chunk)
    padded_len = num_key_blocks * chunk

    # Keys and values padded to whole blocks (the padding is never attended)
    # and laid out heads-first once, so that every block is a plain batched
    # matmul: (B, K, S_pad, H) and (B, K, S_pad, Hv), float32 for the online
    # softmax.
    pad = [[0, 0], [0, padded_len - k_len], [0, 0], [0, 0]]
    key = ops.transpose(ops.pad(ops.cast(key, "float32"), pad), (0, 2, 1, 3))
    value = ops.transpose(
        ops.pad(ops.cast(value, "float32"), pad), (0, 2, 1, 3)
    )
    offset = k_len - q_len  # causal: query i sits at key position i + offset
    plan = Blocks(
        q_len,
        k_len,
        chunk,
        offset if is_causal else None,
        score_mod,
        logit_soft_cap,
    )
    # The queries are padded to whole query blocks as well (padded rows are
    # computed and dropped), so that all query blocks have one shape.
    padded_q_len = plan.padded_q_len
    # Masks and biases as (b, K|1, G|1, t, s), padded along t and s where
    # they vary there; `t` and `s` are 1 or full.
    extras = []
    for x, dtype in ((mask, "bool"), (bias, "float32")):
        if x is None:
            extras.append(None)
            continue
        x = _group_mask_heads(to_rank4(ops.cast(x, dtype)), num_kv_heads)
        pads = [[0, 0]] * 3 + [
            [0, 0 if x.shape[3] == 1 else padded_q_len - q_len],
            [0, 0 if x.shape[4] == 1 else padded_len - k_len],
        ]
        extras.append(ops.pad(x, pads))
    mask, bias = extras

    # (B, T, K, G, H) -> (B, K, G, T_pad, H), scaled once.
    query = group_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    query = ops.transpose(query, (0, 2, 3, 1, 4))
    query = ops.pad(query, [[0, 0]] * 3 + [[0, padded_q_len - q_len], [0, 0]])
    if sinks is not None:
        # (N,) -> (1, K, G, 1): the starting running max of every row.
        sinks = ops.reshape(
            ops.cast(sinks, "float32"),
            (1, num_kv_heads, num_heads // num_kv_heads, 1),
        )
    output = attend(plan, query, key, value, mask, bias, sinks)
    # (B, K, G, T_pad, Hv) -> (B, K, G, T, Hv) -> (B, T, K, G, Hv)
    # -> (B, T, N, Hv)
    output = ops.transpose(output[:, :, :, :q_len], (0, 3, 1, 2, 4))
    output = ops.reshape(output, (-1, q_len, num_heads, value_dim))
    return ops.cast(output, out_dtype)


def _chunked_torch(
    query, key, value, mask, bias, is_causal, scale, chunk, sinks
):
    """The chunked path on PyTorch: query blocks through the fused kernel.

    PyTorch's `scaled_dot_product_attention` already streams over the keys
    (flash-style on CPU and GPU, boolean masks included), and its eager
    per-op overhead makes a key-block loop slow. So only the queries are
    blocked here: each block attends its visible keys through the fused
    path, with explicit masks of size `(chunk, S)`, never `(T, S)`.
    """
    q_len, k_len = query.shape[1], key.shape[1]
    offset = k_len - q_len
    mask = None if mask is None else to_rank4(mask)
    bias = None if bias is None else to_rank4(bias)
    outputs = []
    for q_start in range(0, q_len, chunk):
        q_stop = min(q_start + chunk, q_len)
        # Causal: keys after the block's last query are hidden entirely.
        visible = min(k_len, q_stop + offset) if is_causal else k_len
        if visible <= 0:
            batch, heads = ops.shape(query)[0], query.shape[2]
            shape = (batch, q_stop - q_start, heads, value.shape[-1])
            outputs.append(ops.zeros(shape, query.dtype))
            continue
        block_mask, block_bias = (
            None if x is None else _slice_block(x, q_start, q_stop, visible)
            for x in (mask, bias)
        )
        if is_causal:
            block_mask = combine_masks(
                block_mask,
                causal_mask(q_stop - q_start, visible, offset=q_start + offset),
            )
        outputs.append(
            fused_attention(
                query[:, q_start:q_stop],
                key[:, :visible],
                value[:, :visible],
                block_mask,
                block_bias,
                False,
                scale,
                sinks,
            )
        )
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, 1)


def _slice_block(x, q_start, q_stop, visible):
    """Rows `[q_start, q_stop)` and keys `[0, visible)` of a rank-4 mask."""
    if x.shape[2] != 1:
        x = x[:, :, q_start:q_stop]
    if x.shape[3] != 1:
        x = x[:, :, :, :visible]
    return x
