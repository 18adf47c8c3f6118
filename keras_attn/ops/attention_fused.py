"""The fused attention: the backend's own kernel.

`keras.ops.dot_product_attention`, i.e. PyTorch's
`scaled_dot_product_attention`, cuDNN or XLA on JAX, with the conventions
of `keras_attn.ops.scaled_dot_product_attention` layered on top: the
end-aligned causal mask, zeros for fully masked rows, a mask and a bias
together, `Hv != H` and multi-query heads on every backend. Attention
sinks run in the kernel too, as one extra key (see `_prepend_sink`); the
backend kernels have no soft cap nor score hook, and
`scaled_dot_product_attention` takes another path for those.
"""

import keras
from keras import ops

from keras_attn import _compat
from keras_attn._validation import static_shape
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks


def to_rank4(x):
    """Leading axes of size 1 up to rank 4: `(t, s)` -> `(1, 1, t, s)`."""
    while len(x.shape) < 4:
        x = ops.expand_dims(x, 0)
    return x


def fused_attention(
    query, key, value, mask, bias, is_causal, scale, sinks=None
):
    q_len, k_len = static_shape(query)[1], static_shape(key)[1]
    same_length = q_len is not None and q_len == k_len
    explicit = mask is not None or bias is not None or sinks is not None
    if is_causal and (explicit or not same_length):
        # Backends align the causal mask to the start; ours ends at the last
        # key, so give it explicitly unless the two agree (T == S). With a
        # mask it is folded in too, so that rows left with no key are seen;
        # with a bias too, as PyTorch takes no bias together with is_causal.
        q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
        mask = combine_masks(mask, causal_mask(q_len, k_len))
        is_causal = False
    row_has_key = None
    if mask is not None:
        mask = to_rank4(ops.cast(mask, "bool"))
        # (b, n, t, 1): rows with at least one key. Rows with none would be
        # NaN or uniform in backend kernels: let them attend everywhere, and
        # zero their output below.
        row_has_key = ops.any(mask, axis=-1, keepdims=True)
        mask = ops.logical_or(mask, ops.logical_not(row_has_key))
    if sinks is not None:
        key, value, mask, bias = _prepend_sink(
            query, key, value, mask, bias, sinks
        )
    if mask is not None and bias is not None:
        # Backends take a mask or a bias, not both: fold the mask in.
        bias = ops.cast(bias, query.dtype) + ops.cast(
            ops.where(mask, 0.0, _fused_masked_logit(query.dtype)),
            query.dtype,
        )
        mask = None
    # PyTorch's CUDA kernels want the keys' axis of a mask or bias spelled
    # out (stride 1): one of size 1, broadcast over the keys, fails there
    # with "last dimension must be contiguous". Broadcast it here.
    mask, bias = (_spell_out_keys(x, key) for x in (mask, bias))
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
    output = _compat.dot_product_attention(
        query, key, value, bias, mask, scale, is_causal
    )
    output = output[..., :value_dim]
    if row_has_key is not None:
        # (b, n, t, 1) -> (b, t, n, 1) to match the output (B, T, N, Hv).
        row_has_key = ops.transpose(row_has_key, (0, 2, 1, 3))
        output = ops.where(row_has_key, output, ops.zeros_like(output))
    return output


def _prepend_sink(query, key, value, mask, bias, sinks):
    """Attention sinks as one more key, for a kernel that has none.

    A sink is a logit per head with no value. Prepending a key of zeros
    (logit 0 for every query) with a value of zeros, and adding the sink
    to its column through the bias, gives the kernel exactly that softmax:
    the extra column takes its share of the mass and contributes nothing.
    The mask (rank 4, causal already folded in) gets a column that is always
    True in front, so the end-aligned positions of the real keys are kept.

    Returns:
        `(key, value, mask, bias)` with `S + 1` keys; the bias
        `(b|1, N, t|1, S + 1)` holds the sinks in column 0.
    """
    k_len = ops.shape(key)[1]
    num_heads = query.shape[2]
    # (B, 1 + S, K, H) and (B, 1 + S, K, Hv)
    key = ops.concatenate([ops.zeros_like(key[:, :1]), key], axis=1)
    value = ops.concatenate([ops.zeros_like(value[:, :1]), value], axis=1)
    # (1, N, 1, 1) sinks; the bias over the real keys, heads made explicit.
    sink = ops.reshape(ops.cast(sinks, query.dtype), (1, num_heads, 1, 1))
    if bias is None:
        bias = ops.zeros((1, num_heads, 1, k_len), query.dtype)
    bias = to_rank4(ops.cast(bias, query.dtype))
    bias_shape = ops.shape(bias)
    rows = (bias_shape[0], num_heads, bias_shape[2])
    bias = ops.concatenate(
        [
            ops.broadcast_to(sink, (*rows, 1)),
            ops.broadcast_to(bias, (*rows, k_len)),
        ],
        axis=-1,
    )
    if mask is not None:
        mask_shape = ops.shape(mask)
        mask = ops.broadcast_to(mask, (*mask_shape[:3], k_len))
        mask = ops.concatenate([ops.ones_like(mask[..., :1]), mask], axis=-1)
    return key, value, mask, bias


def _spell_out_keys(x, key):
    """`(.., 1)` -> `(.., S)`, for a mask or bias of rank 4 (or None)."""
    if x is None or x.shape[-1] != 1 or key.shape[1] == 1:
        return x
    x = to_rank4(x)
    # (b|1, n|1, t|1, 1) -> (b|1, n|1, t|1, S)
    return ops.broadcast_to(x, (*ops.shape(x)[:3], ops.shape(key)[1]))


def _pad_last(x, width):
    extra = width - x.shape[-1]
    return x if extra == 0 else ops.pad(x, [[0, 0]] * 3 + [[0, extra]])


def _fused_masked_logit(dtype):
    # A bias must be representable in the compute dtype (float16 max 65504).
    return (
        -1e30 if keras.backend.standardize_dtype(dtype) != "float16" else -3e4
    )
