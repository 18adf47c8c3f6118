"""`MultiHeadAttention`: Keras' layer, with GQA, rotary, bias and a cache.

The pieces live where a reader looks for them: the attention itself in
`keras_attn.ops.scaled_dot_product_attention`, the mask rule in
`keras_attn.ops.attention_mask_from`, multi-axis folding in
`keras_attn.ops.attention_axes`, the cache write in `_kv_cache`, the
argument checks in `keras_attn._validation` / `_validation_attention`, the
sublayers, build and config in `_multi_head_attention_base`.
"""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn._validation_attention import check_attention_call
from keras_attn._validation_attention import check_layer_score_mods
from keras_attn.layers.attention._kv_cache import write_kv_cache
from keras_attn.layers.attention._multi_head_attention_base import (
    MultiHeadAttentionBase,
)
from keras_attn.layers.attention._multi_head_attention_base import (
    deserialize_rotary,
)
from keras_attn.ops.attention import scaled_dot_product_attention
from keras_attn.ops.attention_axes import fold_attention_axes
from keras_attn.ops.attention_axes import fold_attention_mask
from keras_attn.ops.attention_axes import unfold_attention_axes
from keras_attn.ops.attention_axes import unfold_attention_scores


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(MultiHeadAttentionBase):
    """Multi-head attention, a superset of `keras.layers.MultiHeadAttention`.

    Projects `query`, `key` and `value` into `num_heads` heads, attends with
    scaled dot-product attention, and projects the concatenated heads back.
    With the default options the layer has the arguments, outputs and
    variables (same order and shapes) of `keras.layers.MultiHeadAttention`,
    so weights transfer both ways with `set_weights(other.get_weights())`.

    On top of Keras' layer it offers grouped-query and multi-query attention
    (`num_key_value_heads`), rotary position embeddings applied to queries
    and keys (`rotary_embedding`), RMS normalisation of queries and keys
    (`use_qk_norm`), an additive `attention_bias` (ALiBi, relative position
    bias), score modifiers (`logit_soft_cap`, learned attention sinks with
    `use_attention_sinks`, a `score_mod` hook), and a key/value cache for
    autoregressive decoding with the semantics of
    `keras_hub.layers.CachedMultiHeadAttention` (attention scores included,
    which keras-hub's layer does not return with a cache). The attention
    itself runs in `keras_attn.ops.scaled_dot_product_attention`: dropout in
    training or returned scores take its reference path, and everything else
    (including inference with `dropout > 0`) its fastest eligible path.

    Subclasses may override `_compute_attention(query, key, value,
    attention_mask=None, training=None, return_attention_scores=False,
    use_causal_mask=False)`, the hook of Keras' layer with its signature
    and return value `(attention_output, attention_scores)`: it receives the
    projected `(B, T, N, H)` queries and `(B, S, K, H)` keys and values and
    the boolean mask `(B, T, S)` (causal and window included unless
    `use_causal_mask` is passed as True); `attention_bias` is passed to it
    as a keyword only when given.

    `use_causal_mask` and `sliding_window` are aligned to the start of the
    keys when there is no cache (query `i` sees keys `j <= i`), as in Keras.
    With a cache and `cache_update_index=i`, query `t` sits at position
    `i + t` and sees keys `j <= i + t`.

    Args:
        num_heads: int, number of attention (query) heads `N`.
        key_dim: int, size `H` of each query and key head.
        value_dim: int, size of each value head. Defaults to `key_dim`.
        dropout: float in `[0, 1)`, dropout on the attention weights.
        use_bias: bool, whether the projections use bias vectors.
        output_shape: int or tuple, the shape of the output besides the batch
            and query axes. Defaults to the query's feature size.
        attention_axes: int or tuple of ints, the axes of the query over which
            attention is applied. Defaults to every axis but the batch axis,
            the heads and the features.
        sliding_window: positive int or None. Each query attends only keys
            less than `sliding_window` positions away (a symmetric band);
            with `use_causal_mask=True`, itself and the `sliding_window - 1`
            keys before it.
        flash_attention: bool or None, Keras' name for the kernel choice:
            True means `implementation="fused"` (no dropout, no scores) and
            contradicts `"reference"` and `"chunked"` (a `ValueError`);
            False leaves the choice to `implementation`; None follows
            `keras.config.is_flash_attention_enabled()` when
            `implementation="auto"`.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        kernel_regularizer: regularizer of the projection kernels.
        bias_regularizer: regularizer of the projection biases.
        activity_regularizer: regularizer of the projections' outputs.
        kernel_constraint: constraint of the projection kernels.
        bias_constraint: constraint of the projection biases.
        use_gate: bool, gate the attention output with a sigmoid projection
            of the query, as in Keras.
        seed: int, the seed of the dropout.
        num_key_value_heads: int `K` dividing `num_heads`, the number of
            key/value heads. `K < num_heads` is grouped-query attention,
            `K == 1` multi-query attention. Defaults to `num_heads`.
        rotary_embedding: a `keras_attn.layers.RotaryEmbedding` instance (or
            its config dict), applied to the projected queries and keys.
        use_qk_norm: bool, RMS-normalise each query and key head (with a
            learned scale) before the rotary embedding and the dot product.
        implementation: one of `"auto"`, `"reference"`, `"fused"`,
            `"chunked"`, passed to `scaled_dot_product_attention`.
        logit_soft_cap: positive float or None, Gemma-style soft-capping
            of the logits, `cap * tanh(logits / cap)`.
        use_attention_sinks: bool, learn one sink logit per head (the
            variable `sinks`, zeros at first, created after Keras'
            variables) that takes softmax mass without a value, as in
            gpt-oss.
        score_mod: None or a `keras_attn.ops.ScoreMod` (a registered,
            serializable object, such as `keras_attn.ops.AlibiScoreMod`),
            or its config dict: `score_mod(scores, batch, head, q_idx,
            kv_idx)` modifies the logits (see
            `keras_attn.ops.scaled_dot_product_attention`); with a cache,
            `q_idx` is the query's position in the cache. A plain function
            works too; register it to save the layer (a lambda does not
            load in safe mode).
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        query: query tensor `(B, T, dim)` (or `(B, ..., dim)` with
            `attention_axes`).
        value: value tensor `(B, S, dim_v)`.
        key: optional key tensor `(B, S, dim_k)`. Defaults to `value`.
        query_mask: optional boolean mask `(B, T)` of valid queries; filled
            in by Keras from the mask of `query` (for example from
            `Embedding(mask_zero=True)`), as are `value_mask` and `key_mask`.
        value_mask: optional boolean mask `(B, S)` of valid values; filled in
            from the Keras mask of `value`.
        key_mask: optional boolean mask `(B, S)` of valid keys; filled in
            from the Keras mask of `key`.
        attention_mask: optional boolean mask `(B, T, S)` (broadcastable; a
            head axis may be given as `(B, N, T, S)`), True = may attend.
        return_attention_scores: bool, also return the attention weights
            `(B, N, T, S)`.
        training: bool, whether dropout is active.
        use_causal_mask: bool, query `i` attends keys `j <= i` only (see
            above for the cache).
        attention_bias: optional additive float tensor broadcastable to
            `(B, N, T, S)`, added to the logits.
        cache: optional key/value cache `(B, 2, S_max, K, key_dim)` (needs
            `key_dim == value_dim` and inputs of rank 3).
        cache_update_index: int or scalar int tensor. The new keys and values
            are written into `cache` at this position before attending; with
            None, the cache is read as is and `key`/`value` are ignored
            (cross-attention over a cached encoder output). With a cache,
            `value_mask` and `key_mask` have the length of the cache, or
            (when writing) the length of `value`: then they describe the
            keys written at this step, and the positions written before
            count as valid. The Keras masks of a decoding step's inputs
            fill them in this way.

    Returns:
        The output `(B, T, E)` with `E` the query's feature size or
        `output_shape`; then the attention scores `(B, N, T, S)` when
        `return_attention_scores`; then the updated cache when `cache` is
        given: `output`, `(output, scores)`, `(output, cache)` or
        `(output, scores, cache)`.

    Example:

    ```python
    import numpy as np
    import keras_attn

    layer = keras_attn.layers.MultiHeadAttention(
        num_heads=4, key_dim=8, num_key_value_heads=2
    )
    x = np.random.rand(2, 6, 16).astype("float32")
    out = layer(x, x, use_causal_mask=True)  # (2, 6, 16)
    # Decoding with a cache, one token at a time.
    cache = np.zeros((2, 2, 6, 2, 8), "float32")
    out, cache = layer(
        x[:, :1], x[:, :1], cache=cache, cache_update_index=0,
        use_causal_mask=True,
    )  # (2, 1, 16) and (2, 2, 6, 2, 8)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Shazeer, "Fast Transformer Decoding: One Write-Head is All You
          Need", 2019.
        - Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
          Models from Multi-Head Checkpoints", 2023.
        - Su et al., "RoFormer: Enhanced Transformer with Rotary Position
          Embedding", 2021.
        - Henry et al., "Query-Key Normalization for Transformers", 2020.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        num_key_value_heads=None,
        rotary_embedding=None,
        use_qk_norm=False,
        implementation="auto",
        logit_soft_cap=None,
        use_attention_sinks=False,
        score_mod=None,
        **kwargs,
    ):
        check = _validation.check_positive_int
        check("num_heads", num_heads)
        check("key_dim", key_dim)
        check("value_dim", value_dim, allow_none=True)
        check("num_key_value_heads", num_key_value_heads, allow_none=True)
        check("sliding_window", sliding_window, allow_none=True)
        if num_key_value_heads is not None and num_heads % num_key_value_heads:
            raise ValueError(
                "`num_heads` must be a multiple of `num_key_value_heads`. "
                f"Received: num_heads={num_heads}, "
                f"num_key_value_heads={num_key_value_heads}"
            )
        _validation.check_rate("dropout", dropout)
        output_shape = _validation.check_int_tuple(
            "output_shape", output_shape or None, positive=True
        )
        attention_axes = _validation.check_int_tuple(
            "attention_axes", attention_axes
        )
        # Keras' global flag stands in for an unset `flash_attention` only
        # where `implementation` leaves the choice open.
        flash = flash_attention
        if flash is None and implementation == "auto":
            flash = keras.config.is_flash_attention_enabled()
        self._attention_implementation = _validation.check_attention_kernel(
            flash, implementation, dropout
        )
        if isinstance(rotary_embedding, dict):
            rotary_embedding = deserialize_rotary(rotary_embedding)
        elif rotary_embedding is not None and not isinstance(
            rotary_embedding, keras.layers.Layer
        ):
            raise ValueError(
                "`rotary_embedding` must be a RotaryEmbedding layer or its "
                f"config dict. Received: rotary_embedding={rotary_embedding!r}"
            )
        super().__init__(**kwargs)
        self.supports_masking = True
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim or key_dim
        self._dropout = dropout
        self._use_bias = use_bias
        self._output_shape = output_shape
        self._attention_axes = attention_axes
        self._sliding_window = sliding_window
        self._flash_attention = flash_attention
        self._kernel_initializer = keras.initializers.get(kernel_initializer)
        self._bias_initializer = keras.initializers.get(bias_initializer)
        self._kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self._bias_regularizer = keras.regularizers.get(bias_regularizer)
        self._activity_regularizer = keras.regularizers.get(
            activity_regularizer
        )
        self._kernel_constraint = keras.constraints.get(kernel_constraint)
        self._bias_constraint = keras.constraints.get(bias_constraint)
        self._use_gate = use_gate
        self.seed = seed
        self._num_key_value_heads = num_key_value_heads or num_heads
        self._rotary_embedding = rotary_embedding
        self._use_qk_norm = use_qk_norm
        self._implementation = implementation
        self._score_mods = check_layer_score_mods(
            logit_soft_cap, use_attention_sinks, score_mod
        )

    # ------------------------------------------------------------------
    # Call
    # ------------------------------------------------------------------

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        attention_bias=None,
        cache=None,
        cache_update_index=None,
    ):
        if key is None:
            key = value
        check_attention_call(
            query,
            value,
            key,
            built_shapes=self._built_shapes,
            axes=self._axes,
            num_heads=self._num_heads,
            num_key_value_heads=self._num_key_value_heads,
            key_dim=self._key_dim,
            value_dim=self._value_dim,
            implementation=self._attention_implementation,
            query_mask=query_mask,
            value_mask=value_mask,
            key_mask=key_mask,
            attention_mask=attention_mask,
            attention_bias=attention_bias,
            cache=cache,
            cache_update_index=cache_update_index,
            return_attention_scores=return_attention_scores,
        )
        # `gate` = (B, T, N, Hv)
        gate = self._gate_dense(query) if self._use_gate else None
        # (B, T, N, H)
        projected_query = self._query_dense(query)
        # Keys and values (B, S, K, H) and (B, S, K, Hv): projected, written
        # into the cache, or read from it.
        start_index = 0
        if cache is None:
            projected_key = self._project_key(key, 0)
            projected_value = self._value_dense(value)
        else:
            if cache_update_index is not None:
                start_index = cache_update_index
                cache = write_kv_cache(
                    cache,
                    self._project_key(key, start_index),
                    self._value_dense(value),
                    start_index,
                )
            # (B, S_max, K, H) each.
            projected_key = ops.cast(cache[:, 0, ...], self.compute_dtype)
            projected_value = ops.cast(cache[:, 1, ...], self.compute_dtype)
        if self._use_qk_norm:
            projected_query = self._query_norm(projected_query)
        if self._rotary_embedding is not None:
            projected_query = self._rotate(projected_query, start_index)

        mask, is_causal = self._attention_mask(
            projected_query,
            projected_key,
            (query_mask, value_mask, key_mask, attention_mask),
            use_causal_mask,
            cache,
            cache_update_index,
            causal_flag=type(self)._compute_attention
            is MultiHeadAttention._compute_attention,
        )
        self._query_start = start_index  # `q_idx` of a `score_mod`
        # Keras passes `use_causal_mask` (and we `attention_bias`) only when
        # set, so that overrides with Keras' older signature keep working.
        extra = {"use_causal_mask": True} if is_causal else {}
        if attention_bias is not None:
            extra["attention_bias"] = attention_bias
        attention_output, scores = self._compute_attention(
            projected_query,
            projected_key,
            projected_value,
            mask,
            bool(training),
            return_attention_scores,
            **extra,
        )
        self._query_start = 0
        if gate is not None:
            attention_output = attention_output * gate
        # (B, T, E)
        output = self._output_dense(attention_output)
        outputs = (output,)
        if return_attention_scores:
            outputs += (scores,)
        if cache is not None:
            outputs += (cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    def _compute_attention(
        self,
        query,
        key,
        value,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        use_causal_mask=False,
        attention_bias=None,
    ):
        """Attention of projected heads; the hook of Keras' layer.

        Args:
            query: projected queries `(B, T, N, H)` (or `(B, ..., N, H)`
                with `attention_axes`).
            key: projected keys `(B, S, K, H)`.
            value: projected values `(B, S, K, Hv)`.
            attention_mask: boolean mask `(B, T, S)` or None (Keras' score
                layout with `attention_axes`), True = may attend.
            training: bool, whether dropout is active.
            return_attention_scores: bool, also compute the weights.
            use_causal_mask: bool, add the causal mask (`T == S`).
            attention_bias: additive bias broadcastable to `(B, N, T, S)`.

        Returns:
            `(attention_output (B, T, N, Hv), attention_scores)`, the scores
            `(B, N, T, S)` when asked for, else None.
        """
        axes = self._axes
        rank = len(query.shape)
        mask = attention_mask
        if mask is not None:
            mask = ops.cast(mask, "bool")
            # Keras' score rank (B, <other>, N, <q axes>, <k axes>): insert
            # the head axis (and missing leading axes) as Keras does.
            while len(mask.shape) < rank - 1 + len(axes):
                mask = ops.expand_dims(mask, axis=-len(axes) * 2 - 1)
        if axes == (1,) and rank == 4:
            return self._sdpa(
                query,
                key,
                value,
                mask,
                attention_bias,
                use_causal_mask,
                training,
                return_attention_scores,
            )
        # Several attention axes, or attention over inner axes:
        # (B, ..., heads, dim) -> (B', L, heads, dim).
        output, scores = self._sdpa(
            fold_attention_axes(query, axes),
            fold_attention_axes(key, axes),
            fold_attention_axes(value, axes),
            None
            if mask is None
            else fold_attention_mask(mask, query, key, axes),
            None,
            use_causal_mask,
            training,
            return_attention_scores,
        )
        # (B', T', N, Hv) -> (B, ..., N, Hv)
        output = unfold_attention_axes(output, query, axes)
        if scores is not None:
            # (B', N, T', S') -> (B, <other>, N, <q axes>, <k axes>)
            scores = unfold_attention_scores(scores, query, key, axes)
        return output, scores

    def _sdpa(
        self, query, key, value, mask, bias, is_causal, training, weights
    ):
        use_dropout = bool(training) and self._dropout > 0
        result = scaled_dot_product_attention(
            query,
            key,
            value,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            scale=1.0 / float(self._key_dim) ** 0.5,
            dropout_rate=self._dropout if use_dropout else 0.0,
            seed=self._seed_generator if use_dropout else None,
            training=use_dropout,
            return_weights=weights,
            implementation=self._attention_implementation,
            **self._score_mod_kwargs(),
        )
        return result if weights else (result, None)
