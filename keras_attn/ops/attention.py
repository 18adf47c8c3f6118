"""Scaled dot-product attention: one function, three implementations.

Layout follows `keras.ops.dot_product_attention`:

- query `(B, T, N, H)`: batch, query positions, query heads, head size;
- key `(B, S, K, H)` and value `(B, S, K, Hv)`: `K` key/value heads with
  `N % K == 0` (`K < N` is grouped-query attention, `K == 1` multi-query);
- output `(B, T, N, Hv)`; attention weights `(B, N, T, S)`.

Query head `n` reads key/value head `n // (N // K)`, the grouping of
`keras.layers.GroupQueryAttention` and of `repeat_interleave` in PyTorch.

The implementations:

- `"reference"`: einsum, softmax in float32, einsum. Supports everything
  (dropout, returning the weights) and is the definition the others are
  tested against.
- `"fused"`: `keras.ops.dot_product_attention`, i.e. the backend's own
  kernel (PyTorch's `scaled_dot_product_attention`, cuDNN or XLA on JAX).
- `"chunked"`: memory-efficient attention. Keys are processed in blocks with
  an online softmax (a running max and normaliser per query), queries in
  blocks too, so only `(block_q, block_k)` weights exist at any time: O(T*S)
  time, O(T + S) extra memory. Blocks that a causal mask hides entirely are
  never computed.
- `"auto"`: picks one (see `_choose_implementation`).
"""

import math

import keras
from keras import ops

from keras_attn.ops.masked_softmax import masked_softmax
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks

IMPLEMENTATIONS = ("auto", "reference", "fused", "chunked")

# Logit given to masked positions. Finite, so that a fully masked row never
# produces inf - inf = NaN; softmax runs in float32, where exp(-1e30 - m)
# underflows to exactly 0 for any realistic m.
_MASKED_LOGIT = -1e30

# "auto" switches to the chunked path when the dense weight matrix (float32)
# would hold more than this many bytes. Under XLA on CPU the chunked path is
# already faster from about 1,024 positions (it stays in cache); PyTorch's
# own kernel is the faster one unless an explicit (T, S) mask gets large.
_AUTO_CHUNK_BYTES = {"torch": 256 * 1024**2}
_AUTO_CHUNK_BYTES_DEFAULT = 16 * 1024**2

_DEFAULT_CHUNK_SIZE = 512


def scaled_dot_product_attention(
    query,
    key,
    value,
    mask=None,
    bias=None,
    is_causal=False,
    scale=None,
    dropout_rate=0.0,
    seed=None,
    training=False,
    return_weights=False,
    implementation="auto",
    chunk_size=None,
):
    """Scaled dot-product attention, `softmax(q k^T * scale + bias) v`.

    Attention weights are `softmax(q k^T * scale + bias)` over the keys a
    query may attend (`mask` True, and for `is_causal` no key after the
    query's own position); the output is the weighted sum of the values. A
    query that may attend no key at all gets an output of zeros (and weights
    of zeros), never NaN.

    Args:
        query: tensor `(B, T, N, H)`.
        key: tensor `(B, S, K, H)`, `N % K == 0`.
        value: tensor `(B, S, K, Hv)`.
        mask: optional boolean tensor broadcastable to `(B, N, T, S)`; True
            means "may attend".
        bias: optional additive tensor broadcastable to `(B, N, T, S)`
            (ALiBi, relative position bias). May be given with `mask`.
        is_causal: bool. Query `i` attends keys `j <= i + S - T` only: the
            causal mask is aligned to the END of the keys, so one decoding
            step against a longer cache needs no extra mask. Note that
            `keras.ops.dot_product_attention` and PyTorch align it to the
            start; the two agree when `T == S`.
        scale: float, the logit scale. Defaults to `1 / sqrt(H)`.
        dropout_rate: float in `[0, 1)`, dropout on the attention weights,
            applied only when `training` is True.
        seed: int or `keras.random.SeedGenerator` for the dropout.
        training: bool, whether dropout is active.
        return_weights: bool, also return the weights `(B, N, T, S)`.
        implementation: one of `"auto"`, `"reference"`, `"fused"`,
            `"chunked"`. `"fused"` and `"chunked"` can neither apply dropout
            nor return the weights; `"auto"` takes `"reference"` for those.
        chunk_size: positive int, the block size of `"chunked"` (queries
            and keys). Defaults to 512.

    Returns:
        The output `(B, T, N, Hv)`, or `(output, weights)` when
        `return_weights` is True.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import scaled_dot_product_attention

    q = np.random.rand(2, 5, 4, 8).astype("float32")   # 4 query heads
    kv = np.random.rand(2, 7, 2, 8).astype("float32")  # 2 key/value heads
    out = scaled_dot_product_attention(q, kv, kv, is_causal=True)
    out.shape  # (2, 5, 4, 8)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Rabe and Staats, "Self-attention Does Not Need O(n^2) Memory",
          2021 (the chunked path).
        - Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
          Models from Multi-Head Checkpoints", 2023.
    """
    query, key, value = (_as_tensor(x) for x in (query, key, value))
    if mask is not None:
        mask = _as_tensor(mask)
    if bias is not None:
        bias = _as_tensor(bias)
    _validate(
        query, key, value, mask, bias, dropout_rate, implementation, chunk_size
    )
    use_dropout = bool(training) and dropout_rate > 0
    needs_reference = return_weights or use_dropout
    if implementation in ("fused", "chunked") and needs_reference:
        raise ValueError(
            f"`implementation='{implementation}'` can neither return the "
            "attention weights nor apply dropout. Use 'reference' or 'auto'. "
            f"Received: return_weights={return_weights}, "
            f"dropout_rate={dropout_rate}, training={training}"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(query.shape[-1])
    chunk_size = chunk_size or _DEFAULT_CHUNK_SIZE
    if implementation == "auto":
        implementation = _choose_implementation(
            query, key, mask, bias, is_causal, needs_reference
        )

    if implementation == "chunked":
        return _chunked_attention(
            query, key, value, mask, bias, is_causal, scale, chunk_size
        )
    if implementation == "fused":
        return _fused_attention(query, key, value, mask, bias, is_causal, scale)
    return _reference_attention(
        query,
        key,
        value,
        mask,
        bias,
        is_causal,
        scale,
        dropout_rate if use_dropout else 0.0,
        seed,
        return_weights,
    )


def _choose_implementation(query, key, mask, bias, is_causal, needs_reference):
    """The `"auto"` policy (see `benchmarks/attention_ops.py`).

    - dropout or returned weights: `"reference"`, the only one that has them;
    - sequence lengths unknown at trace time: `"reference"`;
    - PyTorch with a plain causal or unmasked call: `"fused"` (its native
      kernels are fast and need no (T, S) matrix);
    - a dense weight matrix over the backend's threshold in
      `_AUTO_CHUNK_BYTES`: `"chunked"`;
    - otherwise `"fused"` on PyTorch, `"reference"` elsewhere (on CPU,
      XLA's dense attention is the same computation as the reference).
    """
    if needs_reference:
        return "reference"
    batch, q_len, num_heads, _ = _static_shape(query)
    k_len = _static_shape(key)[1]
    if None in (q_len, k_len, num_heads):
        return "reference"
    backend = keras.backend.backend()
    plain = mask is None and bias is None and (not is_causal or q_len == k_len)
    if backend == "torch" and plain:
        return "fused"
    weight_bytes = (batch or 1) * num_heads * q_len * k_len * 4
    threshold = _AUTO_CHUNK_BYTES.get(backend, _AUTO_CHUNK_BYTES_DEFAULT)
    if weight_bytes > threshold:
        return "chunked"
    return "fused" if backend == "torch" else "reference"


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def _group_heads(query, num_kv_heads):
    """`(B, T, N, H)` -> `(B, T, K, G, H)` with `G = N // K`."""
    shape = ops.shape(query)
    num_heads, head_dim = query.shape[2], query.shape[3]
    groups = num_heads // num_kv_heads
    return ops.reshape(query, (-1, shape[1], num_kv_heads, groups, head_dim))


def _reference_attention(
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
):
    num_heads, num_kv_heads = query.shape[2], key.shape[2]
    q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
    # (B, T, K, G, H): query heads grouped under their key/value head.
    grouped_query = _group_heads(
        query * ops.cast(scale, query.dtype), num_kv_heads
    )
    # (B, K, G, T, S)
    logits = ops.einsum("btkgh,bskh->bkgts", grouped_query, key)
    # (B, N, T, S), softmax in float32 whatever the compute dtype.
    logits = ops.reshape(logits, (-1, num_heads, q_len, k_len))
    logits = ops.cast(logits, "float32")
    if bias is not None:
        logits = logits + ops.cast(bias, "float32")
    if is_causal:
        mask = combine_masks(mask, causal_mask(q_len, k_len))
    # A query row with no key left gets weights of zeros.
    weights = ops.cast(masked_softmax(logits, mask), value.dtype)
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


# --------------------------------------------------------------------------
# Fused
# --------------------------------------------------------------------------


def _fused_attention(query, key, value, mask, bias, is_causal, scale):
    q_len, k_len = _static_shape(query)[1], _static_shape(key)[1]
    same_length = q_len is not None and q_len == k_len
    if is_causal and (mask is not None or bias is not None or not same_length):
        # Backends align the causal mask to the start; ours ends at the last
        # key, so give it explicitly unless the two agree (T == S). With a
        # mask it is folded in too, so that rows left with no key are seen;
        # with a bias too, as PyTorch takes no bias together with is_causal.
        q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
        mask = combine_masks(mask, causal_mask(q_len, k_len))
        is_causal = False
    row_has_key = None
    if mask is not None:
        mask = ops.cast(mask, "bool")
        while len(mask.shape) < 4:
            mask = ops.expand_dims(mask, 0)
        # (b, n, t, 1): rows with at least one key. Rows with none would be
        # NaN or uniform in backend kernels: let them attend everywhere, and
        # zero their output below.
        row_has_key = ops.any(mask, axis=-1, keepdims=True)
        mask = ops.logical_or(mask, ops.logical_not(row_has_key))
        if bias is not None:
            # Backends take a mask or a bias, not both: fold the mask in.
            bias = ops.cast(bias, query.dtype) + ops.cast(
                ops.where(mask, 0.0, _fused_masked_logit(query.dtype)),
                query.dtype,
            )
            mask = None
    head_dim, value_dim = query.shape[-1], value.shape[-1]
    if keras.backend.backend() == "jax" and value_dim != head_dim:
        # jax.nn.dot_product_attention wants Hv == H. Zero-padding the
        # shorter of the two leaves the logits and the output unchanged.
        width = max(head_dim, value_dim)
        query, key, value = (_pad_last(x, width) for x in (query, key, value))
    num_heads, num_kv_heads = query.shape[2], key.shape[2]
    if (
        keras.backend.backend() == "tensorflow"
        and num_kv_heads == 1 < num_heads
    ):
        # Keras' TensorFlow kernel repeats grouped heads only for K > 1; its
        # einsum then rejects multi-query inputs. Broadcast them here.
        key, value = (ops.repeat(x, num_heads, axis=2) for x in (key, value))
    output = ops.dot_product_attention(
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        scale=scale,
        is_causal=is_causal,
    )
    output = output[..., :value_dim]
    if row_has_key is not None:
        # (b, n, t, 1) -> (b, t, n, 1) to match the output (B, T, N, Hv).
        row_has_key = ops.transpose(row_has_key, (0, 2, 1, 3))
        output = ops.where(row_has_key, output, ops.zeros_like(output))
    return output


def _pad_last(x, width):
    extra = width - x.shape[-1]
    return x if extra == 0 else ops.pad(x, [[0, 0]] * 3 + [[0, extra]])


def _fused_masked_logit(dtype):
    # A bias must be representable in the compute dtype (float16 max 65504).
    return (
        -1e30 if keras.backend.standardize_dtype(dtype) != "float16" else -3e4
    )


# --------------------------------------------------------------------------
# Chunked (memory-efficient)
# --------------------------------------------------------------------------


def _to_rank4(x):
    while len(x.shape) < 4:
        x = ops.expand_dims(x, 0)
    return x


def _group_mask_heads(x, num_kv_heads):
    """`(b, n, t, s)` with n in {1, N} -> `(b, K or 1, G or 1, t, s)`."""
    _, n, t, s = x.shape
    if n == 1:
        return ops.expand_dims(x, 2)
    return ops.reshape(x, (-1, num_kv_heads, n // num_kv_heads, t, s))


def _chunked_attention(query, key, value, mask, bias, is_causal, scale, chunk):
    q_len, num_heads = _static_shape(query)[1:3]
    k_len, num_kv_heads = _static_shape(key)[1:3]
    if None in (q_len, k_len):
        raise ValueError(
            "implementation='chunked' needs static sequence lengths. Received: "
            f"query.shape={query.shape}, key.shape={key.shape}"
        )
    if keras.backend.backend() == "torch":
        return _chunked_torch(
            query, key, value, mask, bias, is_causal, scale, chunk
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
        x = _group_mask_heads(_to_rank4(ops.cast(x, dtype)), num_kv_heads)
        if x.shape[-1] != 1:
            x = ops.pad(x, [[0, 0]] * 4 + [[0, padded_len - k_len]])
        extras.append(x)
    mask, bias = extras

    # (B, T, K, G, H) -> (B, K, G, T, H), scaled once.
    query = _group_heads(ops.cast(query, "float32") * scale, num_kv_heads)
    query = ops.transpose(query, (0, 2, 3, 1, 4))
    offset = k_len - q_len  # causal: query i sits at key position i + offset
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
        )
        outputs.append(block)
    # (B, K, G, T, Hv) -> (B, T, K, G, Hv) -> (B, T, N, Hv)
    output = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, 3)
    output = ops.transpose(output, (0, 3, 1, 2, 4))
    output = ops.reshape(output, (-1, q_len, num_heads, value_dim))
    return ops.cast(output, out_dtype)


def _chunked_torch(query, key, value, mask, bias, is_causal, scale, chunk):
    """The chunked path on PyTorch: query blocks through the fused kernel.

    PyTorch's `scaled_dot_product_attention` already streams over the keys
    (flash-style on CPU and GPU, boolean masks included), and its eager
    per-op overhead makes a key-block loop slow. So only the queries are
    blocked here: each block attends its visible keys through the fused
    path, with explicit masks of size `(chunk, S)`, never `(T, S)`.
    """
    q_len, k_len = query.shape[1], key.shape[1]
    offset = k_len - q_len
    mask = None if mask is None else _to_rank4(mask)
    bias = None if bias is None else _to_rank4(bias)
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
            _fused_attention(
                query[:, q_start:q_stop],
                key[:, :visible],
                value[:, :visible],
                block_mask,
                block_bias,
                False,
                scale,
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
    query, key, value, mask, bias, causal_start, k_len, chunk, num_blocks
):
    """Online softmax of one query block over `num_blocks` key blocks.

    Args:
        query: `(B, K, G, t, H)`, already scaled.
        key, value: `(B, K, S_pad, H|Hv)`.
        mask, bias: `(b, K|1, G|1, t|1, S_pad|1)` or None.
        causal_start: key position of the block's first query when causal.

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
            logits = ops.where(valid, logits, _MASKED_LOGIT)
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
    carry = (
        ops.full(stats_shape, _MASKED_LOGIT, "float32"),
        ops.zeros(stats_shape, "float32"),
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


# --------------------------------------------------------------------------
# Validation: runs on shapes and dtypes only, before any backend op.
# --------------------------------------------------------------------------


def _static_shape(x):
    """`x.shape` with every dimension unknown at trace time as None.

    (JAX traces an unknown batch size as a symbolic dimension, not None.)
    """
    return tuple(d if isinstance(d, int) else None for d in x.shape)


def _as_tensor(x):
    if isinstance(x, keras.KerasTensor):
        return x
    return ops.convert_to_tensor(x)


def _broadcastable(shape, target):
    if len(shape) > len(target):
        return False
    for dim, full in zip(reversed(shape), reversed(target)):
        if dim in (1, None) or full is None or dim == full:
            continue
        return False
    return True


def _validate(
    query, key, value, mask, bias, dropout_rate, implementation, chunk_size
):
    for name, x in (("query", query), ("key", key), ("value", value)):
        if len(x.shape) != 4:
            raise ValueError(
                f"`{name}` must have rank 4 (batch, length, heads, head_dim). "
                f"Received: {name}.shape={tuple(x.shape)}"
            )
    qs, ks, vs = (_static_shape(x) for x in (query, key, value))
    if None not in (qs[0], ks[0], vs[0]) and not (qs[0] == ks[0] == vs[0]):
        raise ValueError(
            "`query`, `key` and `value` must have the same batch size. "
            f"Received: query.shape={qs}, key.shape={ks}, value.shape={vs}"
        )
    if qs[3] != ks[3]:
        raise ValueError(
            "`query` and `key` must have the same head size (last axis). "
            f"Received: query.shape={qs}, key.shape={ks}"
        )
    if ks[1] is not None and vs[1] is not None and ks[1] != vs[1]:
        raise ValueError(
            "`key` and `value` must have the same length (axis 1). "
            f"Received: key.shape={ks}, value.shape={vs}"
        )
    if ks[2] != vs[2]:
        raise ValueError(
            "`key` and `value` must have the same number of heads (axis 2). "
            f"Received: key.shape={ks}, value.shape={vs}"
        )
    if ks[2] is None or qs[2] is None or ks[2] == 0 or qs[2] % ks[2]:
        raise ValueError(
            "The number of query heads must be a multiple of the number of "
            f"key/value heads. Received: query.shape={qs} ({qs[2]} heads), "
            f"key.shape={ks} ({ks[2]} heads)"
        )
    target = (qs[0], qs[2], qs[1], ks[1])
    for name, x in (("mask", mask), ("bias", bias)):
        if x is None:
            continue
        if not _broadcastable(_static_shape(x), target):
            raise ValueError(
                f"`{name}` must broadcast to (batch, num_heads, query_length, "
                f"key_length) = {target}. Received: {name}.shape="
                f"{tuple(x.shape)}"
            )
    if (
        mask is not None
        and keras.backend.standardize_dtype(mask.dtype) != "bool"
    ):
        raise ValueError(
            "`mask` must be a boolean tensor (True = may attend). Received: "
            f"mask.dtype={keras.backend.standardize_dtype(mask.dtype)}"
        )
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(
            f"`dropout_rate` must be in [0, 1). Received: "
            f"dropout_rate={dropout_rate}"
        )
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"`implementation` must be one of {IMPLEMENTATIONS}. Received: "
            f"implementation={implementation!r}"
        )
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int)
        or chunk_size <= 0
    ):
        raise ValueError(
            "`chunk_size` must be a positive integer. Received: "
            f"chunk_size={chunk_size!r}"
        )
