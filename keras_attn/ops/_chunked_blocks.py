"""The block loops of the chunked attention: forward and recomputing backward.

Private to `attention_chunked.py`, which lays the inputs out (heads first,
keys and queries padded to whole blocks, query scaled) and calls `attend`
here. On JAX and TensorFlow the query blocks run in one compiled loop, so
that one block's buffers are alive at a time (see `Blocks`).

Forward (online softmax, per query block of `t` rows, over key blocks of
`c` keys): each block's logits `s` (B, K, G, t, c) update a running max
`m`, a normaliser `l` and an unnormalised output. Besides the output `O`
it returns each row's log-sum-exp `lse = m + log(l)` (B, K, G, T), so the
weights of any block can be recomputed later as `p = exp(s - lse)`.

Backward (as flash attention's): only `O` and `lse` are kept from the
forward. With `dO` the output's cotangent and `D = rowsum(dO * O)`, every
block is recomputed and

    p = exp(s - lse)          dV += p^T dO          dP = dO V^T
    dS = p * (dP - D)         dQ += dS K            dK += dS^T Q

(`Q` is already scaled, so the scale's own derivative is left to autodiff
outside). A soft cap `s = cap * tanh(r / cap)` multiplies `dS` by
`1 - (s / cap)^2` to give the logits' cotangent `dR`, which is also the
bias's. A sink `z` is a key without a value: `dz = -sum(exp(z - lse) * D)`
over the batch and the rows. Masked logits are `MASKED_LOGIT`, so their `p`
is exactly 0; a row with no valid key gets `lse = 0` and `p = 0`.

So the extra memory of a training step is O(T + S) per head, not O(T * S).
A `score_mod` can close over trainable variables (a relative position
table), which no custom gradient can reach portably: with one, the forward
loop is differentiated by plain autodiff instead.
"""

from keras import ops

from keras_attn import _compat
from keras_attn.ops.masked_softmax import MASKED_LOGIT
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.score_mods import modify_scores


class Blocks:
    """The static plan of one call: lengths, block size, modifiers.

    Query blocks have `rows` rows: `chunk`, or all the queries where there
    are fewer (a decoding step has one). The caller pads the queries to
    `padded_q_len`, whole query blocks, so that every block has the same
    shape and one loop can run over them.
    """

    def __init__(self, q_len, k_len, chunk, causal_offset, score_mod, cap):
        self.q_len, self.k_len, self.chunk = q_len, k_len, chunk
        # Causal: query i sits at key position i + causal_offset; else None.
        self.causal_offset = causal_offset
        self.score_mod, self.cap = score_mod, cap
        self.num_key_blocks = -(-k_len // chunk)
        self.rows = max(1, min(chunk, q_len))
        self.padded_q_len = -(-q_len // self.rows) * self.rows

    def key_blocks(self):
        """`(num_whole, num_blocks)` for each query block, in order.

        Key blocks `[0, num_whole)` are seen whole by every row of the
        block (no padding, no causal cut): they need no position mask.
        Blocks `[num_whole, num_blocks)` (at most two) do; later blocks are
        hidden by the causal mask and never computed.
        """
        plan = []
        whole_keys = self.k_len // self.chunk
        for q_start in range(0, self.q_len, self.rows):
            num_blocks, num_whole = self.num_key_blocks, whole_keys
            if self.causal_offset is not None:
                first = q_start + self.causal_offset  # first row's last key
                last = q_start + self.rows - 1 + self.causal_offset
                num_blocks = max(0, min(num_blocks, last // self.chunk + 1))
                num_whole = max(0, min(whole_keys, (first + 1) // self.chunk))
            plan.append((min(num_whole, num_blocks), num_blocks))
        return plan

    def loops_over_queries(self):
        """Whether the query blocks run in one compiled loop.

        Unrolled, the query blocks are independent computations, and XLA
        schedules them side by side: at N=2,048 in blocks of 256, causal,
        some twenty (8, 256, 256) float32 blocks of logits were alive at
        once (88 MiB for a training step against 25 MiB non-causal). In
        one loop, one block's buffers are alive at a time. Its key loops
        then have tensor bounds (the causal cut depends on the query
        block), which JAX cannot differentiate: a `score_mod`, which goes
        through autodiff, keeps the unrolled query blocks, and so does
        PyTorch, whose loops are Python's (eager, nothing scheduled ahead).
        """
        return self.score_mod is None and _compat.loops_are_compiled()

    def run(self, body, carry):
        """`carry = body(q_start, num_whole, num_blocks, carry)` per block.

        In the compiled loop, `q_start` and the bounds are int32 scalars
        (Python ints when every query block has the same bounds, so that
        the key loops keep a static length); else Python ints.
        """
        bounds = self.key_blocks()
        if not self.loops_over_queries():
            for index, (num_whole, num_blocks) in enumerate(bounds):
                carry = body(index * self.rows, num_whole, num_blocks, carry)
            return carry
        if len(set(bounds)) == 1:
            return ops.fori_loop(
                0,
                len(bounds),
                lambda i, c: body(i * self.rows, *bounds[0], c),
                carry,
            )
        table = ops.convert_to_tensor(bounds, "int32")  # (num_q_blocks, 2)

        def step(index, carry):
            return body(
                index * self.rows, table[index, 0], table[index, 1], carry
            )

        return ops.fori_loop(0, len(bounds), step, carry)


def attend(plan, query, key, value, mask, bias, sinks):
    """The output `(B, K, G, T, Hv)`, float32.

    Args:
        plan: a `Blocks`.
        query: `(B, K, G, T, H)` float32, already scaled.
        key, value: `(B, K, S_pad, H|Hv)` float32.
        mask: `(b, K|1, G|1, T|1, S_pad|1)` bool or None.
        bias: `(b, K|1, G|1, T|1, S_pad|1)` float32 or None.
        sinks: `(1, K, G, 1)` float32 or None.
    """
    if plan.score_mod is not None:
        return _forward(plan, query, key, value, mask, bias, sinks)[0]
    # The differentiable inputs, then the mask; None ones left out.
    names = ["query", "key", "value", "bias", "sinks", "mask"]
    given = dict(zip(names, (query, key, value, bias, sinks, mask)))
    names = [n for n in names if given[n] is not None]

    def forward(*tensors):
        args = dict.fromkeys(("bias", "sinks", "mask"))
        args.update(zip(names, tensors))
        out, lse = _forward(plan, **args)
        return out, (out, lse)

    def backward(tensors, residuals, d_out):
        args = dict.fromkeys(("bias", "sinks", "mask"))
        args.update(zip(names, tensors))
        grads = _backward(plan, *residuals, d_out, **args)
        return tuple(grads.get(n) for n in names)

    return _compat.custom_vjp(forward, backward)(*(given[n] for n in names))


def _key_block(key, value, start, chunk):
    """`(B, K, 1, H, c)` keys (transposed) and `(B, K, 1, c, Hv)` values."""
    batch, heads = ops.shape(key)[0], key.shape[1]
    key_block = ops.slice(
        key, (0, 0, start, 0), (batch, heads, chunk, key.shape[3])
    )
    value_block = ops.slice(
        value, (0, 0, start, 0), (batch, heads, chunk, value.shape[3])
    )
    key_block = ops.expand_dims(ops.swapaxes(key_block, 2, 3), 2)
    return key_block, ops.expand_dims(value_block, 2)


def _slice_keys(x, start, chunk):
    """Key block `[start, start + chunk)` of a `(..., S_pad|1)` mask/bias."""
    if x is None or x.shape[-1] == 1:
        return x
    return ops.slice(x, (0, 0, 0, 0, start), (*x.shape[:4], chunk))


def _slice_rows(x, start, rows):
    """Rows `[start, start + rows)` of a `(b, K|1, G|1, T_pad|1, ...)`."""
    if x is None or x.shape[3] == 1:
        return x
    size = (ops.shape(x)[0], *x.shape[1:3], rows, *x.shape[4:])
    return ops.slice(x, (0, 0, 0, start) + (0,) * (len(x.shape) - 4), size)


def _add_at(total, index, block):
    """`total` with `block` added at `index` (a slice of the same shape)."""
    current = ops.slice(total, index, ops.shape(block))
    return ops.slice_update(total, index, current + block)


def _logits(plan, query, key_block, mask, bias, q_start, start, edge):
    """A block's logits `(B, K, G, t, c)`, masked; and `s / cap` or None.

    `mask` and `bias` are the query block's rows; `edge` adds the position
    mask (padding keys, and the causal cut).
    """
    logits = ops.matmul(query, key_block)
    chunk = plan.chunk
    if bias is not None:
        logits = logits + _slice_keys(bias, start, chunk)
    if plan.score_mod is not None:
        # (B, K, G, t, c) -> (B, N, t, c): the modifier sees query heads.
        shape = ops.shape(logits)
        logits = modify_scores(
            ops.reshape(logits, (-1, shape[1] * shape[2], shape[3], chunk)),
            plan.score_mod,
            None,
            q_start,
            start,
            plan.k_len,
        )
        logits = ops.reshape(logits, shape)
    capped = None
    if plan.cap is not None:
        capped = ops.tanh(logits / plan.cap)
        logits = plan.cap * capped
    valid = _slice_keys(mask, start, chunk)
    if edge:
        # (1, c) key positions, (t, 1) query positions; padding never valid.
        key_pos = ops.arange(chunk, dtype="int32")[None, :] + start
        at_edge = ops.less(key_pos, plan.k_len)
        if plan.causal_offset is not None:
            t = query.shape[3]
            query_pos = ops.arange(t, dtype="int32")[:, None]
            query_pos = query_pos + (q_start + plan.causal_offset)
            at_edge = ops.logical_and(
                at_edge, ops.less_equal(key_pos, query_pos)
            )
        valid = combine_masks(valid, at_edge)
    if valid is not None:
        logits = ops.where(valid, logits, MASKED_LOGIT)
    return logits, valid, capped


def _loop(start, stop, body, carry):
    """`body(i, carry)` for `i` in `[start, stop)`, bounds ints or tensors.

    A single iteration (the edge blocks, mostly) is unrolled: a second
    loop per query block would make XLA keep the buffers of both loops
    alive at once.
    """
    if not isinstance(start, int) or not isinstance(stop, int):
        return ops.fori_loop(start, stop, body, carry)
    if stop - start == 1:
        return body(start, carry)
    if stop > start:
        carry = ops.fori_loop(start, stop, body, carry)
    return carry


def _forward(plan, query, key, value, mask=None, bias=None, sinks=None):
    """`(output (B, K, G, T_pad, Hv), lse (B, K, G, T_pad))`, float32."""
    rows_per_block = plan.rows

    def rows(q_start, num_whole, num_blocks):
        return _forward_rows(
            plan,
            _slice_rows(query, q_start, rows_per_block),
            key,
            value,
            _slice_rows(mask, q_start, rows_per_block),
            _slice_rows(bias, q_start, rows_per_block),
            sinks,
            q_start,
            num_whole,
            num_blocks,
        )

    if not plan.loops_over_queries():
        # Rows joined by concatenation, which autodiff handles on every
        # backend (TensorFlow has no gradient for a dynamic update).
        parts = [
            rows(index * rows_per_block, *bounds)
            for index, bounds in enumerate(plan.key_blocks())
        ]
        return tuple(ops.concatenate(x, 3) for x in zip(*parts))

    def body(q_start, num_whole, num_blocks, carry):
        output, lse = carry
        out_rows, lse_rows = rows(q_start, num_whole, num_blocks)
        output = ops.slice_update(output, (0, 0, 0, q_start, 0), out_rows)
        return output, ops.slice_update(lse, (0, 0, 0, q_start), lse_rows)

    stats_shape = (ops.shape(query)[0], *query.shape[1:4])  # (B, K, G, T)
    carry = (
        ops.zeros((*stats_shape, value.shape[-1]), "float32"),
        ops.zeros(stats_shape, "float32"),
    )
    return plan.run(body, carry)


def _forward_rows(
    plan, query, key, value, mask, bias, sinks, q_start, num_whole, num_blocks
):
    """The online softmax of one query block over its visible key blocks.

    Returns `(B, K, G, c, Hv)` outputs and `(B, K, G, c)` log-sum-exps.
    """
    batch = ops.shape(query)[0]
    stats_shape = (batch, *query.shape[1:4])  # (B, K, G, c)
    value_dim = value.shape[-1]

    def body(index, carry, edge):
        running_max, normaliser, accumulated = carry
        start = index * plan.chunk
        key_block, value_block = _key_block(key, value, start, plan.chunk)
        logits, valid, _ = _logits(
            plan, query, key_block, mask, bias, q_start, start, edge
        )
        new_max = ops.maximum(running_max, ops.max(logits, axis=-1))
        probs = ops.exp(logits - new_max[..., None])
        if valid is not None:
            # In a row with no valid key yet, masked logits equal the running
            # max and exp() gives 1, not 0: zero them explicitly.
            probs = ops.where(valid, probs, 0.0)
        correction = ops.exp(running_max - new_max)
        normaliser = normaliser * correction + ops.sum(probs, axis=-1)
        # (B, K, G, c, Hv)
        accumulated = accumulated * correction[..., None] + ops.matmul(
            probs, value_block
        )
        return new_max, normaliser, accumulated

    running_max = ops.full(stats_shape, MASKED_LOGIT, "float32")
    normaliser = ops.zeros(stats_shape, "float32")
    if sinks is not None:
        # The sink as a key seen first: max = sink, exp(sink - max) = 1.
        running_max = ops.broadcast_to(sinks, stats_shape)
        normaliser = ops.ones(stats_shape, "float32")
    carry = (running_max, normaliser, ops.zeros((*stats_shape, value_dim)))
    carry = _loop(0, num_whole, lambda i, c: body(i, c, False), carry)
    carry = _loop(num_whole, num_blocks, lambda i, c: body(i, c, True), carry)
    running_max, normaliser, accumulated = carry
    # Rows that saw no valid key (none at all where num_blocks is 0) have
    # normaliser 0 and accumulated 0.
    seen = normaliser > 0
    normaliser = ops.where(seen, normaliser, 1.0)
    lse = ops.where(seen, running_max + ops.log(normaliser), 0.0)
    return accumulated / normaliser[..., None], lse


def _reduce_to(x, like):
    """Sums `x` over the axes where `like` (a bias block) has size 1."""
    axes = [
        i
        for i, (a, b) in enumerate(zip(x.shape, like.shape))
        if b == 1 and a != 1
    ]
    return ops.sum(x, axis=axes, keepdims=True) if axes else x


def _backward(
    plan, out, lse, d_out, query, key, value, bias=None, sinks=None, mask=None
):
    """Gradients (a dict by input name) from `out`, `lse` and `d_out`."""
    # (B, K, G, T_pad, 1): D = rowsum(dO * O), and the log-sum-exps.
    delta = ops.sum(d_out * out, axis=-1, keepdims=True)
    lse = ops.expand_dims(lse, -1)
    d_sinks = None
    if sinks is not None:
        # The sink's weight per row is exp(z - lse); its value is zero.
        d_sinks = -ops.sum(ops.exp(sinks[..., None] - lse) * delta, (0, 3, 4))
        d_sinks = ops.reshape(d_sinks, ops.shape(sinks))

    def body(q_start, num_whole, num_blocks, carry):
        # dQ (B, K, G, T_pad, H), dK, dV (B, K, S_pad, H|Hv), and dBias
        # like the bias where there is one.
        d_query, d_key, d_value, *d_bias = carry
        rows = [
            _slice_rows(x, q_start, plan.rows)
            for x in (query, mask, bias, d_out, lse, delta, *d_bias)
        ]
        # The key blocks update the block's dBias rows, written back once:
        # PyTorch copies the whole tensor at each update.
        d_rows, d_key, d_value, *d_bias_rows = _backward_rows(
            plan,
            *rows[:6],
            key,
            value,
            [d_key, d_value, *rows[6:]],
            q_start,
            num_whole,
            num_blocks,
        )
        d_query = ops.slice_update(d_query, (0, 0, 0, q_start, 0), d_rows)
        if d_bias and bias.shape[3] != 1:
            d_bias_rows = [
                ops.slice_update(
                    d_bias[0], (0, 0, 0, q_start, 0), d_bias_rows[0]
                )
            ]
        return (d_query, d_key, d_value, *d_bias_rows)

    carry = (ops.zeros_like(query), ops.zeros_like(key), ops.zeros_like(value))
    if bias is not None:
        carry += (ops.zeros_like(bias),)
    carry = plan.run(body, carry)
    grads = dict(zip(("query", "key", "value", "bias"), carry))
    grads["sinks"] = d_sinks
    return grads


def _backward_rows(
    plan,
    query,
    mask,
    bias,
    d_out,
    lse,
    delta,
    key,
    value,
    shared,
    q_start,
    num_whole,
    num_blocks,
):
    """One query block: its `dQ` rows, then `shared` updated.

    `query`, `mask`, `bias` and `d_out` are the block's rows; `lse` and
    `delta` are `(B, K, G, c, 1)`. `shared` is `[dK, dV]`, then the
    block's `dBias` rows when there is a bias.
    """
    chunk = plan.chunk

    def body(index, carry, edge):
        d_query, d_key, d_value, *d_bias = carry
        start = index * chunk
        key_block, value_block = _key_block(key, value, start, chunk)
        logits, _, capped = _logits(
            plan, query, key_block, mask, bias, q_start, start, edge
        )
        probs = ops.exp(logits - lse)  # (B, K, G, c, c)
        # (B, K, G, c, Hv) summed over the G query heads of a key head.
        block_d_value = ops.sum(
            ops.matmul(ops.swapaxes(probs, 3, 4), d_out), axis=2
        )
        # (B, K, G, c, c)
        d_probs = ops.matmul(d_out, ops.swapaxes(value_block, 3, 4))
        d_logits = probs * (d_probs - delta)
        if capped is not None:
            d_logits = d_logits * (1.0 - ops.square(capped))
        # (B, K, G, c, H) and (B, K, c, H)
        d_query = d_query + ops.matmul(d_logits, ops.swapaxes(key_block, 3, 4))
        block_d_key = ops.sum(
            ops.matmul(ops.swapaxes(d_logits, 3, 4), query), axis=2
        )
        d_key = _add_at(d_key, (0, 0, start, 0), block_d_key)
        d_value = _add_at(d_value, (0, 0, start, 0), block_d_value)
        if d_bias:
            # The block's (b, K|1, G|1, c|1, c|1) share of the bias rows,
            # placed at its keys where the bias has them.
            grad = _reduce_to(d_logits, _slice_keys(bias, start, chunk))
            at = (0, 0, 0, 0, 0 if bias.shape[4] == 1 else start)
            d_bias = [_add_at(d_bias[0], at, grad)]
        return (d_query, d_key, d_value, *d_bias)

    carry = (ops.zeros_like(query), *shared)
    carry = _loop(0, num_whole, lambda i, c: body(i, c, False), carry)
    return _loop(num_whole, num_blocks, lambda i, c: body(i, c, True), carry)
