"""Argument checks of a multi-head attention call (private).

The attention part of `keras_attn._validation`, kept apart for size: the
checks of `MultiHeadAttention.call` on static shapes and dtypes, before any
backend op, built from the shared helpers of `_validation`.
"""

import keras
from keras import ops

from keras_attn import _validation as v


def check_attention_call(
    query,
    value,
    key,
    *,
    built_shapes,
    axes,
    num_heads,
    num_key_value_heads,
    key_dim,
    value_dim,
    implementation,
    query_mask=None,
    value_mask=None,
    key_mask=None,
    attention_mask=None,
    attention_bias=None,
    cache=None,
    cache_update_index=None,
    return_attention_scores=False,
):
    """Checks the inputs of a call against the layer's build.

    Args:
        query, value, key: the call's input tensors (`key` not None).
        built_shapes: the `(query, value, key)` shapes of the build.
        axes: the resolved attention axes of the projected tensors.
        num_heads, num_key_value_heads, key_dim, value_dim: the layer's
            sizes.
        implementation: the attention kernel the layer runs.
        The rest: the call arguments of the same names.
    """
    shapes = tuple(tuple(x.shape) for x in (query, value, key))
    query_shape, value_shape, key_shape = shapes
    v.check_query_value_key(*shapes)
    for name, shape, built in zip(
        ("query", "value", "key"), shapes, built_shapes
    ):
        if len(shape) != len(built) or shape[-1] != built[-1]:
            raise ValueError(
                f"`{name}` must have the rank and feature size the layer was "
                f"built with, {name}.shape={built}. Received: "
                f"{name}.shape={shape}"
            )
        if v.dims_differ(query_shape[0], shape[0]):
            raise ValueError(
                f"`{name}` must have the batch size of `query`. Received: "
                f"query.shape={query_shape}, {name}.shape={shape}"
            )
    if implementation in ("fused", "chunked") and return_attention_scores:
        raise ValueError(
            "Attention scores need implementation='reference' or 'auto' (and "
            f"no flash attention). Received: implementation={implementation!r}"
            ", return_attention_scores=True"
        )
    # Keys as attended: the cache replaces `key`'s length.
    key_lengths = tuple(key_shape[1:-1])
    where = " (batch and positions)"
    if cache is not None:
        check_cache(
            query_shape,
            key_shape,
            cache,
            cache_update_index,
            (num_key_value_heads, key_dim, value_dim),
        )
        key_lengths = (tuple(cache.shape)[2],)
        where = " (batch and positions of the cache, or of `value`)"
    elif cache_update_index is not None:
        raise ValueError(
            "`cache_update_index` needs a `cache`. Received: cache=None, "
            f"cache_update_index={cache_update_index!r}"
        )
    v.check_mask("query_mask", query_mask, query_shape[:-1])
    for name, mask, batch in (
        ("value_mask", value_mask, value_shape[0]),
        ("key_mask", key_mask, key_shape[0]),
    ):
        step = (batch, *key_shape[1:-1])
        if (
            mask is not None
            and cache_update_index is not None
            and v.shapes_compatible(tuple(mask.shape), step)
        ):
            # A mask of the keys written at this step.
            v.check_mask(name, mask, step, where)
        else:
            v.check_mask(name, mask, (batch, *key_lengths), where)

    # Keras' score layout: (B, <other>, N, <query axes>, <key axes>).
    other = [
        query_shape[a] for a in range(len(query_shape) - 1) if a not in axes
    ]
    q_attn = [query_shape[a] for a in axes]
    k_attn = (
        list(key_lengths) if cache is not None else [key_shape[a] for a in axes]
    )
    scores_shape = (*other, num_heads, *q_attn, *k_attn)
    if attention_mask is not None:
        _check_attention_mask(attention_mask, scores_shape, len(axes))
    if attention_bias is not None:
        if len(query_shape) != 3:
            raise ValueError(
                "`attention_bias` needs inputs of rank 3. Received: "
                f"query.shape={query_shape}"
            )
        if "float" not in v.dtype_name(attention_bias):
            raise ValueError(
                "`attention_bias` must be a float tensor (added to the "
                f"logits). Received: attention_bias.dtype="
                f"{v.dtype_name(attention_bias)}"
            )
        v.check_rank("attention_bias", attention_bias, (0, 1, 2, 3, 4))
        v.check_broadcastable(
            "attention_bias",
            attention_bias,
            scores_shape,
            "(batch, num_heads, query positions, key positions) =",
        )


def _check_attention_mask(mask, scores_shape, num_axes):
    v.check_mask_dtype("attention_mask", mask)
    mask_shape = tuple(mask.shape)
    expanded = list(mask_shape)
    attn_dims = 2 * num_axes
    while attn_dims <= len(expanded) < len(scores_shape):
        # As the layer expands it: axes inserted before the last
        # `2 * len(attention_axes)` (the head axis first).
        expanded.insert(len(expanded) - attn_dims, 1)
    if (
        len(mask_shape) > len(scores_shape)
        or len(mask_shape) < attn_dims
        or not v.broadcastable(tuple(expanded), scores_shape)
    ):
        q_attn = scores_shape[-attn_dims:-num_axes]
        k_attn = scores_shape[-num_axes:]
        raise ValueError(
            "`attention_mask` must broadcast to (batch, query positions, key "
            f"positions) = {(scores_shape[0], *q_attn, *k_attn)}. Received: "
            f"attention_mask.shape={mask_shape}"
        )


def check_cache(query_shape, key_shape, cache, index, sizes):
    """A `(B, 2, S_max, K, H)` cache and its update index for the inputs."""
    num_key_value_heads, key_dim, value_dim = sizes
    if len(query_shape) != 3:
        raise ValueError(
            "`cache` needs inputs of rank 3 (batch, length, features). "
            f"Received: query.shape={query_shape}"
        )
    if key_dim != value_dim:
        raise ValueError(
            "`cache` needs `key_dim == value_dim`, keys and values share one "
            f"tensor. Received: key_dim={key_dim}, value_dim={value_dim}"
        )
    expected = (query_shape[0], 2, None, num_key_value_heads, key_dim)
    cache_shape = tuple(cache.shape)
    if not v.shapes_compatible(cache_shape, expected):
        raise ValueError(
            "`cache` must have shape (batch, 2, max_length, "
            f"num_key_value_heads, key_dim) = {expected}. Received: "
            f"cache.shape={cache_shape}"
        )
    if index is not None:
        v.check_cache_index(index, key_shape[1], cache_shape[2])


def check_score_mods(query, logit_soft_cap, sinks, score_mod):
    """The score modifiers of `scaled_dot_product_attention`.

    Returns:
        `sinks` as a tensor (or None): float, shape `(N,)` with `N` the
        query heads of `query` `(B, T, N, H)`.
    """
    if logit_soft_cap is not None:
        v.check_positive_number("logit_soft_cap", logit_soft_cap)
    if score_mod is not None and not callable(score_mod):
        raise TypeError(
            "`score_mod` must be a callable `score_mod(scores, batch, head, "
            f"q_idx, kv_idx)`. Received: score_mod={score_mod!r}"
        )
    if sinks is None:
        return None
    if not hasattr(sinks, "shape"):
        sinks = ops.convert_to_tensor(sinks)
    num_heads = tuple(query.shape)[2]
    if tuple(sinks.shape) != (num_heads,):
        raise ValueError(
            "`sinks` must have shape (num_heads,) = "
            f"({num_heads},), one logit per query head. Received: "
            f"sinks.shape={tuple(sinks.shape)}"
        )
    if "float" not in v.dtype_name(sinks):
        raise ValueError(
            "`sinks` must be a float tensor. Received: sinks.dtype="
            f"{v.dtype_name(sinks)}"
        )
    return sinks


def check_layer_score_mods(logit_soft_cap, use_attention_sinks, score_mod):
    """The score-modifier options of `MultiHeadAttention`.

    Returns:
        `(logit_soft_cap, use_attention_sinks, score_mod)`, the score_mod
        deserialized when given as a config dict.
    """
    v.check_positive_number("logit_soft_cap", logit_soft_cap, allow_none=True)
    if not isinstance(use_attention_sinks, bool):
        raise ValueError(
            "`use_attention_sinks` must be a bool. Received: "
            f"use_attention_sinks={use_attention_sinks!r}"
        )
    if isinstance(score_mod, dict):
        score_mod = keras.saving.deserialize_keras_object(score_mod)
    if score_mod is not None and not callable(score_mod):
        raise TypeError(
            "`score_mod` must be a `keras_attn.ops.ScoreMod` (or a callable "
            "`score_mod(scores, batch, head, q_idx, kv_idx)`) or its config "
            f"dict. Received: score_mod={score_mod!r}"
        )
    return logit_soft_cap, use_attention_sinks, score_mod
