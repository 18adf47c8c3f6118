"""The block loops of the chunked attention: forward and recomputing backward.

Private to `attention_chunked.py`, which lays the inputs out (heads first,
keys and queries padded to whole blocks, query scaled) and calls `attend`
here. On JAX (and TensorFlow in a graph) the blocks run in compiled loops
of static length: nested (query blocks, then key blocks) where every query
block sees the same key blocks, else flat over the visible pairs (see
`Blocks` in `_chunked_plan.py`).

Forward (online softmax, per query block of `t` rows, over key blocks of
`c` keys): each block's logits `s` (B, K, G, t, c) update a running max
`m`, a normaliser `l` and an unnormalised output of its rows. Besides the
output `O` it returns each row's log-sum-exp `lse = m + log(l)`
(B, K, G, T), so the weights of any block can be recomputed later as
`p = exp(s - lse)`.

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
from keras_attn.ops._chunked_plan import static_loop
from keras_attn.ops.masked_softmax import MASKED_LOGIT
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.score_mods import modify_scores


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


def _put_rows(x, start, rows):
    """`x` `(B, K, G, T_pad, ...)` with `rows` written from row `start`."""
    if tuple(x.shape) == tuple(rows.shape):
        return rows  # all of it (a single query block)
    return ops.slice_update(
        x, (0, 0, 0, start) + (0,) * (len(x.shape) - 4), rows
    )


def _add_at(total, index, block):
    """`total` with `block` added at `index` (a slice of the same rank)."""
    if tuple(total.shape) == tuple(block.shape):
        # All of it (a query block's own dQ rows): PyTorch would copy it.
        return total + block
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


def _forward(plan, query, key, value, mask=None, bias=None, sinks=None):
    """`(output (B, K, G, T_pad, Hv), lse (B, K, G, T_pad))`, float32."""
    inputs = (query, mask, bias)

    def pair(q_start, k_start, edge, state):
        # The pair's rows of the inputs and of the state of every row.
        rows = [_slice_rows(x, q_start, plan.rows) for x in inputs + state]
        new = _forward_block(
            plan, *rows[:3], key, value, q_start, k_start, edge, rows[3:]
        )
        return _put_state(state, q_start, new)

    def block_state(q_start, num_whole, num_blocks):
        # One query block's rows through its key blocks: its own state.
        rows = [_slice_rows(x, q_start, plan.rows) for x in inputs]

        def key_block(edge):
            return lambda i, state: _forward_block(
                plan, *rows, key, value, q_start, i * plan.chunk, edge, state
            )

        state = _initial_state(rows[0], value, sinks)
        state = static_loop(0, num_whole, key_block(False), state)
        return static_loop(num_whole, num_blocks, key_block(True), state)

    if plan.structure() == "rows":
        # The blocks' states in a list, joined by concatenation, which
        # autodiff handles on every backend (TensorFlow has no gradient for
        # a dynamic update).
        def append_block(q_start, num_whole, num_blocks, states):
            return states + [block_state(q_start, num_whole, num_blocks)]

        states = plan.run(append_block, pair, [])
        return _normalise([ops.concatenate(x, 3) for x in zip(*states)])

    # The state of every row, a loop carry: each query block's rows are
    # written once (nested) or at each of its pairs.
    def write_block(q_start, num_whole, num_blocks, state):
        return _put_state(
            state, q_start, block_state(q_start, num_whole, num_blocks)
        )

    state = _initial_state(query, value, sinks)
    return _normalise(plan.run(write_block, pair, state))


def _put_state(state, start, rows):
    """`state` (every row's) with `rows` (one block's) written at `start`."""
    return tuple(_put_rows(x, start, y) for x, y in zip(state, rows))


def _initial_state(query, value, sinks):
    """The online softmax's running max, normaliser and output, float32.

    `(B, K, G, t)`, `(B, K, G, t)` and `(B, K, G, t, Hv)` for the `t` rows
    of `query`.
    """
    stats_shape = (ops.shape(query)[0], *query.shape[1:4])
    running_max = ops.full(stats_shape, MASKED_LOGIT, "float32")
    normaliser = ops.zeros(stats_shape, "float32")
    if sinks is not None:
        # The sink as a key seen first: max = sink, exp(sink - max) = 1.
        running_max = ops.broadcast_to(sinks, stats_shape)
        normaliser = ops.ones(stats_shape, "float32")
    accumulated = ops.zeros((*stats_shape, value.shape[-1]), "float32")
    return running_max, normaliser, accumulated


def _forward_block(
    plan, query, mask, bias, key, value, q_start, start, edge, state
):
    """The online softmax state of a query block's rows after one key block.

    `query`, `mask`, `bias` and `state` (see `_initial_state`) are the
    block's rows; `start` is the key block's first key.
    """
    running_max, normaliser, accumulated = state
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
    # (B, K, G, t, Hv)
    accumulated = accumulated * correction[..., None] + ops.matmul(
        probs, value_block
    )
    return new_max, normaliser, accumulated


def _normalise(state):
    """`(output (B, K, G, t, Hv), lse (B, K, G, t))` from the final state."""
    running_max, normaliser, accumulated = state
    # Rows that saw no valid key (none at all where no key block is
    # visible) have normaliser 0 and accumulated 0.
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
    inputs = (query, mask, bias, d_out, lse, delta)

    def pair(q_start, k_start, edge, grads):
        rows = [_slice_rows(x, q_start, plan.rows) for x in inputs]
        block = _backward_block(plan, *rows, key, value, q_start, k_start, edge)
        return _add_grads(grads, block, q_start, k_start, bias)

    def query_block(q_start, num_whole, num_blocks, grads):
        # The key blocks update the block's dQ and dBias rows, written
        # back once: PyTorch copies the whole tensor at each update.
        rows = [_slice_rows(x, q_start, plan.rows) for x in inputs]
        d_query, d_key, d_value, *d_bias = grads

        def key_block(edge):
            def body(i, block_grads):
                start = i * plan.chunk
                block = _backward_block(
                    plan, *rows, key, value, q_start, start, edge
                )
                return _add_grads(block_grads, block, 0, start, bias)

            return body

        block_grads = (ops.zeros_like(rows[0]), d_key, d_value)
        block_grads += tuple(_slice_rows(x, q_start, plan.rows) for x in d_bias)
        grads = static_loop(0, num_whole, key_block(False), block_grads)
        grads = static_loop(num_whole, num_blocks, key_block(True), grads)
        d_rows, d_key, d_value, *d_bias_rows = grads
        if d_bias and bias.shape[3] != 1:
            d_bias_rows = [_put_rows(d_bias[0], q_start, d_bias_rows[0])]
        d_query = _put_rows(d_query, q_start, d_rows)
        return (d_query, d_key, d_value, *d_bias_rows)

    # dQ (B, K, G, T_pad, H), dK, dV (B, K, S_pad, H|Hv), and dBias like
    # the bias where there is one.
    grads = (ops.zeros_like(query), ops.zeros_like(key), ops.zeros_like(value))
    if bias is not None:
        grads += (ops.zeros_like(bias),)
    grads = plan.run(query_block, pair, grads)
    grads = dict(zip(("query", "key", "value", "bias"), grads))
    grads["sinks"] = d_sinks
    return grads


def _backward_block(
    plan, query, mask, bias, d_out, lse, delta, key, value, q_start, start, edge
):
    """A block's share of `(dQ rows, dK, dV, dBias)` (dBias None if no bias).

    `query`, `mask`, `bias` and `d_out` are the query block's rows; `lse`
    and `delta` are `(B, K, G, t, 1)`; `start` is the key block's first
    key. dBias is `(b, K|1, G|1, t|1, c|1)`, summed where the bias is
    broadcast.
    """
    key_block, value_block = _key_block(key, value, start, plan.chunk)
    logits, _, capped = _logits(
        plan, query, key_block, mask, bias, q_start, start, edge
    )
    probs = ops.exp(logits - lse)  # (B, K, G, t, c)
    # (B, K, c, Hv) summed over the G query heads of a key head.
    d_value = ops.sum(ops.matmul(ops.swapaxes(probs, 3, 4), d_out), axis=2)
    # (B, K, G, t, c)
    d_probs = ops.matmul(d_out, ops.swapaxes(value_block, 3, 4))
    d_logits = probs * (d_probs - delta)
    if capped is not None:
        d_logits = d_logits * (1.0 - ops.square(capped))
    # (B, K, G, t, H) and (B, K, c, H)
    d_query = ops.matmul(d_logits, ops.swapaxes(key_block, 3, 4))
    d_key = ops.sum(ops.matmul(ops.swapaxes(d_logits, 3, 4), query), axis=2)
    d_bias = None
    if bias is not None:
        d_bias = _reduce_to(d_logits, _slice_keys(bias, start, plan.chunk))
    return d_query, d_key, d_value, d_bias


def _add_grads(grads, block, row, start, bias):
    """`grads` `(dQ, dK, dV[, dBias])` plus a block's, at its rows and keys.

    `row` is the block's first row in `dQ` and `dBias` (0 where they hold
    the query block's rows only), `start` its first key. A bias broadcast
    over the rows or the keys has its gradient there once.
    """
    d_query, d_key, d_value, *d_bias = grads
    d_query = _add_at(d_query, (0, 0, 0, row, 0), block[0])
    d_key = _add_at(d_key, (0, 0, start, 0), block[1])
    d_value = _add_at(d_value, (0, 0, start, 0), block[2])
    if d_bias:
        at = (
            0,
            0,
            0,
            0 if bias.shape[3] == 1 else row,
            0 if bias.shape[4] == 1 else start,
        )
        d_bias = [_add_at(d_bias[0], at, block[3])]
    return (d_query, d_key, d_value, *d_bias)
