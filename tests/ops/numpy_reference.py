"""Attention written out in NumPy, float64: the oracle for the ops tests.

Independent of `keras_attn`: no code is shared with the library.
"""

import numpy as np


def allowed(batch, heads, q_len, k_len, mask=None, is_causal=False):
    """Boolean `(B, N, T, S)`: which keys each query may attend."""
    ok = np.ones((batch, heads, q_len, k_len), bool)
    if mask is not None:
        ok = ok & np.broadcast_to(np.asarray(mask, bool), ok.shape)
    if is_causal:
        # Aligned to the end: query i sits at key position i + S - T.
        i = np.arange(q_len)[:, None] + (k_len - q_len)
        j = np.arange(k_len)[None, :]
        ok = ok & (j <= i)
    return ok


def attention(
    q,
    k,
    v,
    mask=None,
    bias=None,
    is_causal=False,
    scale=None,
    soft_cap=None,
    sinks=None,
    score_mod=None,
):
    """Returns `(output (B, T, N, Hv), weights (B, N, T, S))` in float64.

    `score_mod(logits, b, n, i, j)` gets NumPy index grids `(B, 1, 1, 1)`,
    `(1, N, 1, 1)`, `(1, 1, T, 1)`, `(1, 1, 1, S)`; then `soft_cap` caps
    the logits, `sinks` `(N,)` adds one value-less logit per head to each
    row's normaliser.
    """
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch, q_len, heads, head_dim = q.shape
    k_len, kv_heads = k.shape[1], k.shape[2]
    groups = heads // kv_heads
    scale = 1.0 / np.sqrt(head_dim) if scale is None else scale
    # Query head n reads key/value head n // groups.
    k = np.repeat(k, groups, axis=2)
    v = np.repeat(v, groups, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) * scale
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    if score_mod is not None:
        logits = score_mod(
            logits,
            np.arange(batch).reshape(-1, 1, 1, 1),
            np.arange(heads).reshape(1, -1, 1, 1),
            np.arange(q_len).reshape(1, 1, -1, 1),
            np.arange(k_len).reshape(1, 1, 1, -1),
        )
    if soft_cap is not None:
        logits = soft_cap * np.tanh(logits / soft_cap)
    ok = allowed(batch, heads, q_len, k_len, mask, is_causal)
    logits = np.where(ok, logits, -np.inf)
    row_max = logits.max(-1, keepdims=True)
    if sinks is not None:
        sink = np.asarray(sinks, np.float64).reshape(1, -1, 1, 1)
        row_max = np.maximum(row_max, sink)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(ok, np.exp(logits - row_max), 0.0)
    total = e.sum(-1, keepdims=True)
    if sinks is not None:
        total = total + np.exp(sink - row_max)
    weights = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
    out = np.einsum("bnts,bsnh->btnh", weights, v)
    return out, weights


def attention_grads(q, k, v, d_out, mask=None, bias=None, is_causal=False):
    """Gradients of `sum(attention(q, k, v) * d_out)` w.r.t. q, k, v.

    Backpropagation of softmax attention written by hand:
    O = P V, dV = P^T dO, dP = dO V^T, dL = P * (dP - rowsum(dP * P)),
    dQ = dL K * scale, dK = dL^T Q * scale; grouped heads sum their
    contributions into the shared key/value head.
    """
    q, k, v, d_out = (np.asarray(x, np.float64) for x in (q, k, v, d_out))
    heads, kv_heads = q.shape[2], k.shape[2]
    groups = heads // kv_heads
    scale = 1.0 / np.sqrt(q.shape[-1])
    _, p = attention(q, k, v, mask, bias, is_causal)
    k_rep = np.repeat(k, groups, axis=2)
    v_rep = np.repeat(v, groups, axis=2)
    d_v = np.einsum("bnts,btnh->bsnh", p, d_out)
    d_p = np.einsum("btnh,bsnh->bnts", d_out, v_rep)
    d_logits = p * (d_p - (d_p * p).sum(-1, keepdims=True))
    d_q = np.einsum("bnts,bsnh->btnh", d_logits, k_rep) * scale
    d_k = np.einsum("bnts,btnh->bsnh", d_logits, q) * scale

    def fold(x):  # (B, S, N, H) -> (B, S, K, H): sum each group
        b, s, _, h = x.shape
        return x.reshape(b, s, kv_heads, groups, h).sum(3)

    return d_q, fold(d_k), fold(d_v)
