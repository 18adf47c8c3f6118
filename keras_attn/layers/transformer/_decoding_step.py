"""A cached decoding step of `TransformerDecoder` with few layer calls.

Decoding one token runs a block as a handful of small ops, and on PyTorch
Keras' `Layer.__call__` (masks, autocast, name scopes, argument binding)
costs more than the ops of a sublayer: a block called sublayer by sublayer
is about a dozen of them per step. When a step needs none of that
machinery (no masks, no scores, inference, a plain block), the block runs
the same maths here instead: the leaf sublayers (norms, projections) by
their own `call`, which is exactly what their `__call__` runs in between,
and the attention sublayer's orchestration (cache write, causal mask,
attention core) written out with the same functions `MultiHeadAttention`
uses. The block itself is still called once through `__call__`, whose
autocast scope covers these calls under mixed precision.

Anything this path does not cover (cross-attention, rotary or bias
positions, a sliding window, score modifiers, query/key normalization,
gates, quantized kernels, masks, returned scores, dropout in training)
takes the generic path of `TransformerDecoder.call`. The two are tested
against each other.
"""

import keras
from keras import ops

from keras_attn import _compat
from keras_attn._validation_attention import check_cache
from keras_attn.layers.attention._kv_cache import write_kv_cache
from keras_attn.layers.attention.multi_head_attention import MultiHeadAttention
from keras_attn.layers.transformer.feed_forward import FeedForward
from keras_attn.ops.attention import scaled_dot_product_attention
from keras_attn.ops.masks import attention_mask_from

# The `MultiHeadAttention` options this path implements (their defaults);
# any other value takes the generic path.
_PLAIN_ATTENTION = {
    "sliding_window": None,
    "rotary_embedding": None,
    "use_qk_norm": False,
    "use_gate": False,
    "logit_soft_cap": None,
    "use_attention_sinks": False,
    "score_mod": None,
    "attention_axes": None,
    "output_shape": None,
    "flash_attention": None,
    "implementation": "auto",
}


def plain_attention_config(attention):
    """`(num_key_value_heads, key_dim)` of a plain attention layer, or None.

    Read from its config (the constructor arguments): none of them changes
    after construction, so a block computes this once. A subclass may
    compute attention its own way: only the class itself qualifies.
    """
    if type(attention) is not MultiHeadAttention:
        return None
    config = attention.get_config()
    for name, default in _PLAIN_ATTENTION.items():
        value = config.get(name, default)
        if value != default and not (name == "output_shape" and not value):
            return None
    value_dim = config.get("value_dim")
    if value_dim is not None and value_dim != config["key_dim"]:
        return None
    num_kv_heads = config.get("num_key_value_heads") or config["num_heads"]
    return num_kv_heads, config["key_dim"]


def _leaf_ok(layer):
    # A quantized layer runs `quantized_call` from `__call__`, not `call`.
    return layer is None or layer.quantization_mode is None


def attention_kernel():
    """The attention implementation a plain layer runs.

    A layer built with `flash_attention=None` and `implementation="auto"`
    follows Keras' global flash-attention flag (see `MultiHeadAttention`).
    """
    return "fused" if keras.config.is_flash_attention_enabled() else "auto"


def plain_self_attention(attention, x, cache, index, key_dim):
    """The cached self-attention sublayer: `(output (B, T, D), cache)`.

    The maths of `MultiHeadAttention.call` with a cache, an update index,
    the causal mask and nothing else.

    Args:
        attention: the block's `MultiHeadAttention`.
        x: normalized inputs `(B, T, D)`.
        cache: `(B, 2, S_max, K, H)`.
        index: int or scalar int tensor, the cache position of `x[:, 0]`.
        key_dim: int, the head size `H`.
    """
    dtype = attention.compute_dtype
    # (B, T, D) -> (B, T, N, H) queries, (B, T, K, H) keys and values.
    query = attention.query_dense.call(x)
    cache = write_kv_cache(
        cache,
        attention.key_dense.call(x),
        attention.value_dense.call(x),
        index,
    )
    query_length = query.shape[1]
    length = _compat.cache_prefix_length(index, query_length)
    mask = None
    if length is None:
        # (B, S_max, K, H) each.
        key, value = cache[:, 0, ...], cache[:, 1, ...]
        # (1, T, S_max): query t sits at cache position index + t.
        mask = attention_mask_from(
            ops.shape(query)[1],
            ops.shape(key)[1],
            use_causal_mask=True,
            offset=index,
        )
        # (1, 1, T, S_max), broadcast over heads.
        mask = ops.expand_dims(ops.cast(mask, "bool"), 1)
    else:
        # (B, index + T, K, H) each: the positions written so far; the
        # end-aligned causal flag masks within the new block only.
        key, value = cache[:, 0, :length, ...], cache[:, 1, :length, ...]
    # (B, T, N, H)
    output = scaled_dot_product_attention(
        query,
        ops.cast(key, dtype),
        ops.cast(value, dtype),
        mask=mask,
        is_causal=mask is None and query_length != 1,
        scale=1.0 / float(key_dim) ** 0.5,
        implementation=attention_kernel(),
    )
    # (B, T, N, H) -> (B, T, D)
    return attention.output_dense.call(output), cache


def plain_feedforward(feedforward, x):
    """`FeedForward.call` without dropout, its dense layers by `call`."""
    # (B, T, D) -> (B, T, I)
    hidden = feedforward.intermediate_dense.call(x)
    if feedforward.gated:
        hidden = hidden * feedforward.gate_dense.call(x)
    # (B, T, I) -> (B, T, D)
    return feedforward.output_dense.call(hidden)


def plain_step_sizes(block):
    """`(num_key_value_heads, key_dim)` of a block the plain step covers.

    None for any other block.

    Called at the end of `TransformerDecoder.build`: what it reads (the
    block's options and the attention layer's constructor arguments) is
    fixed from then on. What can change later (quantization) is checked
    at each call by `can_step_plainly`.
    """
    if (
        block._cross_attention_layer is not None
        or block.position is not None
        or block._position_bias_layer is not None
        or type(block._feedforward_layer) is not FeedForward
    ):
        return None
    return plain_attention_config(block._self_attention_layer)


def _leaves(block):
    attention = block._self_attention_layer
    feedforward = block._feedforward_layer
    return (
        block._self_attention_layer_norm,
        block._feedforward_layer_norm,
        attention.query_dense,
        attention.key_dense,
        attention.value_dense,
        attention.output_dense,
        feedforward.intermediate_dense,
        getattr(feedforward, "gate_dense", None),
        feedforward.output_dense,
    )


def can_step_plainly(block, cache, masks, sequence_mask, causal, training):
    """Whether a call of a plain block (`plain_step_key_dim`) is a step.

    Args:
        block: the `TransformerDecoder`.
        cache: the self-attention cache or None.
        masks: the padding, attention and Keras masks of the call.
        sequence_mask: the `decoder_sequence_mask` of the call.
        causal: bool, the causal mask is asked for and no scores are.
        training: the call's `training` flag.
    """
    return (
        cache is not None
        and causal
        and sequence_mask is None
        and all(mask is None for mask in masks)
        and not (training and block.dropout > 0)
        and not (training and block.attention_dropout)
        and all(_leaf_ok(layer) for layer in _leaves(block))
    )


def steps_without_layer_call(block, cache):
    """Whether a model may step `block` by `plain_decoder_step` directly.

    On PyTorch the block's own `Layer.__call__` costs about as much as the
    plain step it leads to. A model whose blocks take its own embeddings
    (`TransformerLM`) calls `plain_decoder_step` itself for an inference
    step when nothing of `__call__` is needed: the block would take the
    plain step (no masks, no scores, not training) and its dtype policy
    is not mixed (no autocast scope to open).

    Args:
        block: a built decoder block of the model.
        cache: the block's self-attention cache for this step.
    """
    policy = block.dtype_policy
    return (
        getattr(block, "_plain_step_sizes", None) is not None
        and policy.compute_dtype == policy.variable_dtype
        and can_step_plainly(block, cache, (), None, True, training=False)
    )


def plain_decoder_step(block, x, cache, index):
    """A pre- or post-norm decoder block without cross-attention.

    Args:
        block: the `TransformerDecoder` (`can_step_plainly` holds).
        x: `(B, T, D)` inputs.
        cache: `(B, 2, S_max, K, H)` self-attention cache.
        index: int or scalar int tensor, the cache position of `x[:, 0]`.

    Returns:
        `(outputs (B, T, D), cache)`, the values of the generic path.
    """
    num_kv_heads, key_dim = block._plain_step_sizes
    check_cache(
        tuple(x.shape),
        tuple(x.shape),
        cache,
        index,
        (num_kv_heads, key_dim, key_dim),
    )
    pre = block.normalize_first
    attention_norm = block._self_attention_layer_norm
    feedforward_norm = block._feedforward_layer_norm
    residual = x
    if pre:
        x = attention_norm.call(x)
    x, cache = plain_self_attention(
        block._self_attention_layer,
        x,
        cache,
        index,
        key_dim,
    )
    x = x + residual
    if not pre:
        x = attention_norm.call(x)
    residual = x
    if pre:
        x = feedforward_norm.call(x)
    x = plain_feedforward(block._feedforward_layer, x) + residual
    if not pre:
        x = feedforward_norm.call(x)
    return x, cache
