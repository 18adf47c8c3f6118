"""A transformer block in float64 NumPy, from a layer's weight list.

The independent reference for the options that keras-hub and torch do not
have: grouped-query attention, RMSNorm, GLU feed-forward, rotary, ALiBi and
T5 relative position biases, sliding windows.
"""

import math

import numpy as np


def act(name, x):
    if name == "relu":
        return np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu":
        # keras' default gelu is the exact (erf) one.
        return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    raise ValueError(name)


def rotary(x, start=0, max_wavelength=10000.0):
    """RoFormer rotation of `(B, T, heads, H)`, halves convention."""
    dim = x.shape[-1]
    inv_freq = 1.0 / max_wavelength ** (np.arange(0, dim, 2) / dim)
    angles = np.outer(np.arange(x.shape[1]) + start, inv_freq)
    cos = np.concatenate([np.cos(angles)] * 2, -1)[None, :, None, :]
    sin = np.concatenate([np.sin(angles)] * 2, -1)[None, :, None, :]
    x1, x2 = x[..., : dim // 2], x[..., dim // 2 :]
    return x * cos + np.concatenate([-x2, x1], -1) * sin


def alibi(num_heads, t, s, bidirectional):
    slopes = 2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)
    distance = np.arange(s)[None, :] - np.arange(t)[:, None]  # (T, S)
    if bidirectional:
        distance = -np.abs(distance)
    return slopes[:, None, None] * distance[None]  # (N, T, S)


def t5_buckets(t, s, bidirectional, num_buckets=32, max_distance=128):
    relative = np.arange(s)[None, :] - np.arange(t)[:, None]  # key - query
    n = -relative
    buckets = np.zeros_like(n)
    if bidirectional:
        num_buckets //= 2
        buckets += (n < 0) * num_buckets
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = num_buckets // 2
    large = max_exact + (
        np.log(np.maximum(n, 1) / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).astype("int64")
    large = np.minimum(large, num_buckets - 1)
    return buckets + np.where(n < max_exact, n, large)


def layer_norm(x, gamma, beta, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def rms_norm(x, scale, eps):
    return x / np.sqrt(np.mean(x**2, -1, keepdims=True) + eps) * scale


def attention(q_in, kv_in, w, num_heads, mask=None, bias=None, rope=False):
    """`w`: the 8 kernels and biases of query, key, value, output."""
    qk, qb, kk, kb, vk, vb, ok, ob = w
    q = np.einsum("btd,dnh->btnh", q_in, qk) + qb
    k = np.einsum("bsd,dkh->bskh", kv_in, kk) + kb
    v = np.einsum("bsd,dkh->bskh", kv_in, vk) + vb
    if rope:
        q, k = rotary(q), rotary(k)
    group = num_heads // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    logits = np.einsum("btnh,bsnh->bnts", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    if mask is not None:
        logits = np.where(mask[:, None], logits, -1e30)
    logits = logits - logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    weights = weights / weights.sum(-1, keepdims=True)
    if mask is not None:
        # A query with no key to attend gets zeros (the library's contract).
        weights = np.where(mask.any(-1)[:, None, :, None], weights, 0.0)
    out = np.einsum("bnts,bsnh->btnh", weights, v)
    return np.einsum("btnh,nhd->btd", out, ok) + ob


def block(
    x,
    weights,
    num_heads,
    memory=None,
    causal=False,
    mask=None,
    memory_mask=None,
    normalize_first=False,
    norm="layer_norm",
    gated=False,
    activation="relu",
    position=None,
    sliding_window=None,
    eps=1e-5,
    decoder_order=False,
    num_key_value_heads=None,
):
    """One encoder (or decoder, `decoder_order=True`) block.

    `mask` `(B, T, T)` and `memory_mask` `(B, T, S)` are boolean; `weights`
    the layer's weight list in its order (which also gives the number of
    key/value heads). A query with no key to attend outputs zeros.
    """
    w = [np.asarray(v, "float64") for v in weights]
    x = np.asarray(x, "float64")
    n_norm = 2 if norm == "layer_norm" else 1
    n_ff = 6 if gated else 4

    def take(n):
        nonlocal w
        out, w = w[:n], w[n:]
        return out

    def apply_norm(x, p):
        if norm == "layer_norm":
            return layer_norm(x, p[0], p[1], eps)
        return rms_norm(x, p[0], eps)

    self_w = take(8)
    self_norm = take(n_norm)
    if memory is not None:
        cross_w = take(8)
        cross_norm = take(n_norm)
    if decoder_order:
        ff_w = take(n_ff)
        ff_norm = take(n_norm)
    else:
        ff_norm = take(n_norm)
        ff_w = take(n_ff)
    table = take(1)[0] if position == "relative" else None

    batch, t = x.shape[:2]
    self_mask = np.ones((batch, t, t), bool)
    if mask is not None:
        self_mask &= mask
    if causal:
        self_mask &= np.tril(np.ones((t, t), bool))[None]
    if sliding_window is not None:
        i, j = np.arange(t)[:, None], np.arange(t)[None, :]
        self_mask &= (np.abs(i - j) < sliding_window)[None]
    bias = None
    if position == "alibi":
        bias = alibi(num_heads, t, t, bidirectional=not causal)[None]
    elif position == "relative":
        buckets = t5_buckets(t, t, bidirectional=not causal)
        bias = np.transpose(table[buckets], (2, 0, 1))[None]

    def sublayer(x, fn, norm_params):
        if normalize_first:
            return x + fn(apply_norm(x, norm_params))
        return apply_norm(x + fn(x), norm_params)

    x = sublayer(
        x,
        lambda h: attention(
            h, h, self_w, num_heads, self_mask, bias, position == "rotary"
        ),
        self_norm,
    )
    if memory is not None:
        memory = np.asarray(memory, "float64")
        x = sublayer(
            x,
            lambda h: attention(h, memory, cross_w, num_heads, memory_mask),
            cross_norm,
        )

    def feed_forward(h):
        hidden = act(activation, h @ ff_w[0] + ff_w[1])
        rest = ff_w[2:]
        if gated:
            hidden = hidden * (h @ rest[0] + rest[1])
            rest = rest[2:]
        return hidden @ rest[0] + rest[1]

    return sublayer(x, feed_forward, ff_norm)
