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
"""

import keras
from keras import ops

from keras_attn._validation import static_shape
from keras_attn.ops.attention_fused import fused_attention
from keras_attn.ops.attention_fused import to_rank4
from keras_attn.ops.attention_reference import group_heads
from keras_attn.ops.masked_softmax import MASKED_LOGIT
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.score_mods import modify_scores


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
    # Masks and biases as (b, K|1, G|1, t, s), padded along s when they vary
    # there; `t` and `s` are 1 or full.
    extras = []
    for x, dtype in ((mask, "bool"), (bias, "float32")):
        if x is None:
            extras.append(None)
            continue
        x = _group_mask_heads(to_rank4(ops.cast(x, dtype)), num_kv_heads)
        if x.shape[-1] != 1:
            x = ops.pad(x, [[0, 0]] * 4 + [[0, padded_len - k_len]])
        extras.append(x)
    mask, bias = extras

    # (B, T, K, G, H) -> (B, K, G, T, H), scaled once.
    query = group_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    query = ops.transpose(query, (0, 2, 3, 1, 4))
    offset = k_len - q_len  # causal: query i sits at key position i + offset
    if sinks is not None:
        # (N,) -> (1, K, G, 1): the starting running max of every row.
        sinks = ops.reshape(
            ops.cast(sinks, "float32"),
            (1, num_kv_heads, num_heads // num_kv_heads, 1),
        )
    outputs = []
    for q_start in range(0, q_len, chunk):
        q_stop = min(q_start + chunk, q_len)
        num_blocks = num_key_blocks
        if is_causal:
            last_visible = q_stop - 1 + offset
            # Key blocks after the last visible key are hidden entirely.
            num_blocks = max(0, min(num_key_blocks, last_visible // chunk + 1))
        block = _attend_query_block(
            query[:, :, :, q_start:q_stop],
            key,
            value,
            _slice_rows(mask, q_start, q_stop),
            _slice_rows(bias, q_start, q_stop),
            q_start + offset if is_causal else None,
            k_len,
            chunk,
            num_blocks,
            (score_mod, logit_soft_cap, q_start) if modifies else None,
            sinks,
        )
        outputs.append(block)
    # (B, K, G, T, Hv) -> (B, T, K, G, Hv) -> (B, T, N, Hv)
    output = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, 3)
    output = ops.transpose(output, (0, 3, 1, 2, 4))
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


def _slice_rows(x, start, stop):
    if x is None or x.shape[3] == 1:
        return x
    return x[:, :, :, start:stop]


def _attend_query_block(
    query,
    key,
    value,
    mask,
    bias,
    causal_start,
    k_len,
    chunk,
    num_blocks,
    mods=None,
    sinks=None,
):
    """Online softmax of one query block over `num_blocks` key blocks.

    Args:
        query: `(B, K, G, t, H)`, already scaled.
        key, value: `(B, K, S_pad, H|Hv)`.
        mask, bias: `(b, K|1, G|1, t|1, S_pad|1)` or None.
        causal_start: key position of the block's first query when causal.
        mods: `(score_mod, logit_soft_cap, q_start)` or None, the score
            modifiers and the query index of the block's first row.
        sinks: `(1, K, G, 1)` float32 sink logits or None.

    Returns:
        `(B, K, G, t, Hv)`.
    """
    batch = ops.shape(query)[0]
    num_kv_heads, groups, t = query.shape[1], query.shape[2], query.shape[3]
    value_dim = value.shape[-1]
    if num_blocks == 0:
        return ops.zeros((batch, num_kv_heads, groups, t, value_dim), "float32")
    # Key blocks that every query of this block sees whole (no padding)
    # skip the position masks in a loop of their own. Not under a causal
    # mask: there, two loops per query block let XLA keep the buffers of
    # both alive at once, about 4x the peak memory at 8,192 positions,
    # while masking every block costs only about 1.3x the time.
    num_whole = 0
    if causal_start is None:
        num_whole = num_blocks if k_len % chunk == 0 else num_blocks - 1
    query_pos = None
    if causal_start is not None:
        # (t, 1): the key position each query sits at.
        query_pos = ops.arange(t, dtype="int32")[:, None] + causal_start

    def body(block_index, carry, edge):
        running_max, normaliser, accumulated = carry
        start = block_index * chunk
        # (B, K, 1, H, c) and (B, K, 1, c, Hv): broadcast over the G groups.
        key_block = ops.slice(
            key, (0, 0, start, 0), (batch, num_kv_heads, chunk, key.shape[3])
        )
        key_block = ops.expand_dims(ops.swapaxes(key_block, 2, 3), 2)
        value_block = ops.slice(
            value, (0, 0, start, 0), (batch, num_kv_heads, chunk, value_dim)
        )
        value_block = ops.expand_dims(value_block, 2)
        # (B, K, G, t, c)
        logits = ops.matmul(query, key_block)
        if bias is not None:
            logits = logits + _slice_keys(bias, start, chunk)
        if mods is not None:
            # (B, K, G, t, c) -> (B, N, t, c): the modifiers see query heads.
            score_mod, soft_cap, q_start = mods
            logits = modify_scores(
                ops.reshape(logits, (-1, num_kv_heads * groups, t, chunk)),
                score_mod,
                soft_cap,
                q_start,
                start,
                k_len,
            )
            logits = ops.reshape(logits, (-1, num_kv_heads, groups, t, chunk))
        valid = None if mask is None else _slice_keys(mask, start, chunk)
        if edge:
            # (1, c): this block's key positions; padding is never valid.
            key_pos = ops.arange(chunk, dtype="int32")[None, :] + start
            at_edge = ops.less(key_pos, k_len)
            if query_pos is not None:
                at_edge = ops.logical_and(
                    at_edge, ops.less_equal(key_pos, query_pos)
                )
            valid = combine_masks(valid, at_edge)
        if valid is not None:
            logits = ops.where(valid, logits, MASKED_LOGIT)
        new_max = ops.maximum(running_max, ops.max(logits, axis=-1))
        probs = ops.exp(logits - new_max[..., None])
        if valid is not None:
            # In a row with no valid key yet, masked logits equal the running
            # max and exp() gives 1, not 0: zero them explicitly.
            probs = ops.where(valid, probs, 0.0)
        correction = ops.exp(running_max - new_max)
        normaliser = normaliser * correction + ops.sum(probs, axis=-1)
        # (B, K, G, t, Hv)
        accumulated = accumulated * correction[..., None] + ops.matmul(
            probs, value_block
        )
        return new_max, normaliser, accumulated

    # Carried state per query: running max and normaliser (B, K, G, t), and
    # the unnormalised output (B, K, G, t, Hv).
    stats_shape = (batch, num_kv_heads, groups, t)
    running_max = ops.full(stats_shape, MASKED_LOGIT, "float32")
    normaliser = ops.zeros(stats_shape, "float32")
    if sinks is not None:
        # The sink as a key seen first: max = sink, exp(sink - max) = 1.
        running_max = ops.broadcast_to(sinks, stats_shape)
        normaliser = ops.ones(stats_shape, "float32")
    carry = (
        running_max,
        normaliser,
        ops.zeros((*stats_shape, value_dim), "float32"),
    )
    if num_whole > 0:
        carry = ops.fori_loop(
            0, num_whole, lambda i, c: body(i, c, edge=False), carry
        )
    if num_blocks > num_whole:
        carry = ops.fori_loop(
            num_whole, num_blocks, lambda i, c: body(i, c, edge=True), carry
        )
    _, normaliser, accumulated = carry
    # Rows that saw no valid key have normaliser 0 and accumulated 0.
    normaliser = ops.where(normaliser > 0, normaliser, 1.0)
    return accumulated / normaliser[..., None]


def _slice_keys(x, start, chunk):
    """Key block `[start, start + chunk)` of a `(..., S_pad|1)` mask/bias."""
    if x.shape[-1] == 1:
        return x
    return ops.slice(x, (0, 0, 0, 0, start), (*x.shape[:4], chunk))
