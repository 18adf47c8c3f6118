"""Scaled dot-product attention: one function, three implementations.

Layout follows `keras.ops.dot_product_attention`:

- query `(B, T, N, H)`: batch, query positions, query heads, head size;
- key `(B, S, K, H)` and value `(B, S, K, Hv)`: `K` key/value heads with
  `N % K == 0` (`K < N` is grouped-query attention, `K == 1` multi-query);
- output `(B, T, N, Hv)`; attention weights `(B, N, T, S)`.

Query head `n` reads key/value head `n // (N // K)`, the grouping of
`keras.layers.GroupQueryAttention` and of `repeat_interleave` in PyTorch.

The implementations:

- `"reference"` (`attention_reference.py`): einsum, masked softmax in
  float32, einsum. Supports everything (dropout, returning the weights) and
  is the definition the others are tested against.
- `"fused"` (`attention_fused.py`): `keras.ops.dot_product_attention`, i.e.
  the backend's own kernel (PyTorch's `scaled_dot_product_attention`, cuDNN
  or XLA on JAX).
- `"chunked"` (`attention_chunked.py`): memory-efficient attention, an
  online softmax over key blocks: O(T*S) time, O(T + S) extra memory, in
  the backward pass too (the weights are recomputed block by block; with
  a `score_mod`, plain autodiff keeps them).
- `"auto"`: picks one (see `_choose_implementation`).

Score modifiers (`logit_soft_cap`, `sinks`, `score_mod`; see
`score_mods.py`) run on the reference and chunked paths; the fused path runs
sinks in the backend kernel and hands the other two to the reference path
(the chunked one when the weight matrix would be large), as no backend
kernel has them.

This module holds the public function, its checks and the `"auto"` policy.
"""

import math

import keras
from keras import ops

from keras_attn import _validation
from keras_attn._validation_attention import check_score_mods
from keras_attn.ops.attention_chunked import chunked_attention
from keras_attn.ops.attention_fused import fused_attention
from keras_attn.ops.attention_reference import reference_attention

IMPLEMENTATIONS = ("auto", "reference", "fused", "chunked")

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
    logit_soft_cap=None,
    sinks=None,
    score_mod=None,
):
    """Scaled dot-product attention, `softmax(q k^T * scale + bias) v`.

    Attention weights are `softmax(q k^T * scale + bias)` over the keys a
    query may attend (`mask` True, and for `is_causal` no key after the
    query's own position); the output is the weighted sum of the values. A
    query that may attend no key at all gets an output of zeros (and weights
    of zeros), never NaN.

    Three optional modifiers change the logits `s = q k^T * scale + bias`
    before the softmax, in this order, on every implementation: `score_mod`
    (a function of the scores and their indices), `logit_soft_cap`
    (`cap * tanh(s / cap)`, as in Gemma 2), then the mask; and `sinks`, a
    learned logit per head that joins each row's softmax without a value
    (gpt-oss), so that a head can attend to "nothing". All are
    differentiable (the sinks too).

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
        logit_soft_cap: positive float or None, caps the logits softly to
            `(-cap, cap)` with `cap * tanh(logits / cap)`. `"fused"` falls
            back to `"reference"` (`"chunked"` when the weights would be
            large): the backend kernels have no soft cap.
        sinks: float tensor `(N,)` or None, one sink logit per query head.
            Each row's softmax is taken over its keys and the sink; the
            sink has no value, so the weights of the keys sum to less than
            1 (the returned weights exclude the sink). A fully masked row
            still returns zeros. Runs in the backend kernel on `"fused"` as
            an extra key.
        score_mod: callable `score_mod(scores, batch, head, q_idx, kv_idx)`
            or None, the idea of PyTorch's flex attention. `scores` is the
            float32 `(B, N, T, S)` block of logits (after `bias`); the
            indices are int32 tensors that broadcast against it: `batch`
            `(B, 1, 1, 1)`, `head` `(1, N, 1, 1)`, `q_idx` `(1, 1, T, 1)`
            (the row in `query`), `kv_idx` `(1, 1, 1, S)` (cast them to
            float before mixing with floats). It returns the
            modified scores, of the same shape, with broadcasting
            `keras.ops`. `"chunked"` calls it block by block with each
            block's indices (a bias or mask written this way never exists
            as a `(T, S)` tensor); `"fused"` falls back as for
            `logit_soft_cap`. See `keras_attn.ops.AlibiScoreMod` and
            `keras_attn.ops.relative_position_score_mod`.

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

    # Soft-capped logits, sinks and a score hook (here a distance
    # penalty), on the memory-efficient path.
    import keras
    sinks = np.zeros((4,), "float32")

    def distance_penalty(scores, batch, head, q_idx, kv_idx):
        distance = keras.ops.cast(keras.ops.abs(q_idx - kv_idx), "float32")
        return scores - 0.1 * distance

    out = scaled_dot_product_attention(
        q, kv, kv, logit_soft_cap=30.0, sinks=sinks,
        score_mod=distance_penalty, implementation="chunked", chunk_size=4,
    )  # (2, 5, 4, 8)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Rabe and Staats, "Self-attention Does Not Need O(n^2) Memory",
          2021 (the chunked path).
        - Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
          Models from Multi-Head Checkpoints", 2023.
        - Gemma Team, "Gemma 2: Improving Open Language Models at a
          Practical Size", 2024 (logit soft-capping).
        - Xiao et al., "Efficient Streaming Language Models with Attention
          Sinks", 2024; OpenAI, "gpt-oss-120b & gpt-oss-20b Model Card",
          2025 (learned sinks).
        - Dong et al., "Flex Attention: A Programming Model for Generating
          Optimized Attention Kernels", 2024 (`score_mod`).
    """
    query, key, value = (_as_tensor(x) for x in (query, key, value))
    if mask is not None:
        mask = _as_tensor(mask)
    if bias is not None:
        bias = _as_tensor(bias)
    _validation.check_attention_inputs(query, key, value, mask, bias)
    _validation.check_rate("dropout_rate", dropout_rate)
    _validation.check_choice("implementation", implementation, IMPLEMENTATIONS)
    _validation.check_positive_int("chunk_size", chunk_size, allow_none=True)
    sinks = check_score_mods(query, logit_soft_cap, sinks, score_mod)
    modifies = score_mod is not None or logit_soft_cap is not None
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
    if implementation == "auto" or (implementation == "fused" and modifies):
        # The backend kernels have no soft cap nor score hook: "fused" with
        # them falls back as "auto" would, among the other two.
        implementation = _choose_implementation(
            query, key, mask, bias, is_causal, needs_reference, not modifies
        )

    if implementation == "chunked":
        return chunked_attention(
            query,
            key,
            value,
            mask,
            bias,
            is_causal,
            scale,
            chunk_size,
            score_mod,
            logit_soft_cap,
            sinks,
        )
    if implementation == "fused":
        return fused_attention(
            query, key, value, mask, bias, is_causal, scale, sinks
        )
    return reference_attention(
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
        score_mod,
        logit_soft_cap,
        sinks,
    )


def _choose_implementation(
    query, key, mask, bias, is_causal, needs_reference, fused_ok=True
):
    """The `"auto"` policy (see `benchmarks/attention_ops.py`).

    - dropout or returned weights: `"reference"`, the only one that has them;
    - sequence lengths unknown at trace time: `"reference"`;
    - PyTorch with a plain causal or unmasked call: `"fused"` (its native
      kernels are fast and need no (T, S) matrix);
    - a dense weight matrix over the backend's threshold in
      `_AUTO_CHUNK_BYTES`: `"chunked"`;
    - otherwise `"fused"` on PyTorch, and on JAX and TensorFlow for a
      plain float32 call (XLA's kernel skips the reference's masked-row
      handling: a training step of `benchmarks/training.py` takes about 6%
      less CPU time); `"reference"` elsewhere, which keeps the softmax of
      float16 and bfloat16 inputs in float32.

    With `fused_ok=False` (a soft cap or a score hook, which no backend
    kernel has), `"fused"` is never chosen: `"reference"` instead.
    """
    if needs_reference:
        return "reference"
    batch, q_len, num_heads, _ = _validation.static_shape(query)
    k_len = _validation.static_shape(key)[1]
    if None in (q_len, k_len, num_heads):
        return "reference"
    backend = keras.backend.backend()
    plain = mask is None and bias is None and (not is_causal or q_len == k_len)
    if backend == "torch" and plain and fused_ok:
        return "fused"
    weight_bytes = (batch or 1) * num_heads * q_len * k_len * 4
    threshold = _AUTO_CHUNK_BYTES.get(backend, _AUTO_CHUNK_BYTES_DEFAULT)
    if weight_bytes > threshold:
        return "chunked"
    float32 = keras.backend.standardize_dtype(query.dtype) == "float32"
    if backend == "torch" or (plain and float32):
        return "fused" if fused_ok else "reference"
    return "reference"


def _as_tensor(x):
    if isinstance(x, keras.KerasTensor):
        return x
    return ops.convert_to_tensor(x)
