import string

import keras
from keras import ops

from keras_attn.ops.attention import IMPLEMENTATIONS
from keras_attn.ops.attention import scaled_dot_product_attention
from keras_attn.ops.masks import causal_mask
from keras_attn.ops.masks import combine_masks
from keras_attn.ops.masks import sliding_window_mask


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )


def _projection_equation(free_dims, bound_dims, output_dims):
    """Einsum equation of a projection, e.g. `"abc,cde->abde"`.

    The input has `free_dims` axes that pass through and `bound_dims` axes
    contracted with the kernel; the kernel adds `output_dims` axes, which are
    also the bias axes. This is the layout of `keras.layers.MultiHeadAttention`
    so that kernels transfer between the two layers.

    Returns:
        `(equation, bias_axes)`.
    """
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out


def _shape(x):
    return tuple(x.shape)


def _without_keras_mask(x, mask):
    """`x` without its Keras mask, which this layer has consumed.

    The masks of the inputs arrive as `query_mask`, `value_mask` and
    `key_mask`; the projections do not support masking and would warn.
    Tensors that take attributes lose the mask in place (as in Keras);
    others (JAX arrays, whose masks Keras keeps in a table by id) are
    replaced by a new tensor, only when a mask was given.
    """
    if mask is None:
        return x
    try:
        x._keras_mask = None
    except AttributeError:
        x = ops.add(x, ops.zeros((), x.dtype))
    return x


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(keras.layers.Layer):
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
    bias), and a key/value cache for autoregressive decoding with the
    semantics of `keras_hub.layers.CachedMultiHeadAttention`. The attention
    itself runs in `keras_attn.ops.scaled_dot_product_attention`: dropout in
    training or returned scores take its reference path, and everything else
    (including inference with `dropout > 0`) its fastest eligible path.

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
        flash_attention: bool or None. True forces the fused kernel
            (`implementation="fused"`), which can neither apply dropout nor
            return scores. None follows
            `keras.config.is_flash_attention_enabled()`.
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
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        query: query tensor `(B, T, dim)` (or `(B, ..., dim)` with
            `attention_axes`).
        value: value tensor `(B, S, dim_v)`.
        key: optional key tensor `(B, S, dim_k)`. Defaults to `value`.
        query_mask: optional boolean mask `(B, T)` of valid queries; filled
            in from the Keras mask of `query` (for example from
            `Embedding(mask_zero=True)`).
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
            (cross-attention over a cached encoder output).

    Returns:
        The output `(B, T, E)` with `E` the query's feature size or
        `output_shape`; then the attention scores `(B, N, T, S)` when
        `return_attention_scores`; then the updated cache when `cache` is
        given: `output`, `(output, scores)`, `(output, cache)` or
        `(output, scores, cache)`.

    Example:

    >>> import numpy as np
    >>> import keras_attn
    >>> layer = keras_attn.layers.MultiHeadAttention(
    ...     num_heads=4, key_dim=8, num_key_value_heads=2
    ... )
    >>> x = np.random.rand(2, 6, 16).astype("float32")
    >>> out = layer(x, x, use_causal_mask=True)
    >>> tuple(out.shape)
    (2, 6, 16)
    >>> # Decoding with a cache, one token at a time.
    >>> cache = np.zeros((2, 2, 6, 2, 8), "float32")
    >>> out, cache = layer(
    ...     x[:, :1], x[:, :1], cache=cache, cache_update_index=0,
    ...     use_causal_mask=True,
    ... )
    >>> tuple(out.shape), tuple(cache.shape)
    ((2, 1, 16), (2, 2, 6, 2, 8))

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
        **kwargs,
    ):
        _check_positive_int("num_heads", num_heads)
        _check_positive_int("key_dim", key_dim)
        _check_positive_int("value_dim", value_dim, allow_none=True)
        _check_positive_int(
            "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        _check_positive_int("sliding_window", sliding_window, allow_none=True)
        if num_key_value_heads is not None and num_heads % num_key_value_heads:
            raise ValueError(
                "`num_heads` must be a multiple of `num_key_value_heads`. "
                f"Received: num_heads={num_heads}, "
                f"num_key_value_heads={num_key_value_heads}"
            )
        if isinstance(dropout, bool) or not (
            isinstance(dropout, (int, float)) and 0.0 <= dropout < 1.0
        ):
            raise ValueError(
                f"`dropout` must be a float in [0, 1). Received: "
                f"dropout={dropout!r}"
            )
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"`implementation` must be one of {IMPLEMENTATIONS}. "
                f"Received: implementation={implementation!r}"
            )
        if output_shape:
            if isinstance(output_shape, int):
                output_shape = (output_shape,)
            if not isinstance(output_shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d > 0
                for d in output_shape
            ):
                raise ValueError(
                    "`output_shape` must be a positive int or a tuple of "
                    f"positive ints. Received: output_shape={output_shape!r}"
                )
            output_shape = tuple(output_shape)
        else:
            output_shape = None
        if isinstance(attention_axes, int) and not isinstance(
            attention_axes, bool
        ):
            attention_axes = (attention_axes,)
        if attention_axes is not None and (
            not isinstance(attention_axes, (list, tuple))
            or not attention_axes
            or not all(
                isinstance(a, int) and not isinstance(a, bool)
                for a in attention_axes
            )
        ):
            raise ValueError(
                "`attention_axes` must be an int, or a non-empty list or "
                f"tuple of ints. Received: attention_axes={attention_axes!r}"
            )
        if flash_attention is None:
            flash_attention = keras.config.is_flash_attention_enabled()
        if flash_attention and dropout > 0:
            raise ValueError(
                "Dropout is not supported with flash attention. Received: "
                f"flash_attention={flash_attention}, dropout={dropout}"
            )
        if isinstance(rotary_embedding, dict):
            rotary_embedding = _deserialize_rotary(rotary_embedding)
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
        self._attention_axes = (
            None if attention_axes is None else tuple(attention_axes)
        )
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
        if flash_attention and implementation == "auto":
            self._attention_implementation = "fused"
        else:
            self._attention_implementation = implementation

    # Properties of keras.layers.MultiHeadAttention.
    @property
    def num_heads(self):
        return self._num_heads

    @property
    def key_dim(self):
        return self._key_dim

    @property
    def value_dim(self):
        return self._value_dim

    @property
    def dropout(self):
        return self._dropout

    @property
    def use_bias(self):
        return self._use_bias

    @property
    def attention_axes(self):
        return self._attention_axes

    @property
    def num_key_value_heads(self):
        return self._num_key_value_heads

    @property
    def query_dense(self):
        return self._query_dense

    @property
    def key_dense(self):
        return self._key_dense

    @property
    def value_dense(self):
        return self._value_dense

    @property
    def output_dense(self):
        return self._output_dense

    # ------------------------------------------------------------------
    # Build
    # ------------------------------------------------------------------

    def _sublayer_kwargs(self):
        # Fresh initializers per sublayer: a shared stateless initializer
        # would give every kernel the same values.
        return dict(
            kernel_initializer=self._kernel_initializer.__class__.from_config(
                self._kernel_initializer.get_config()
            ),
            bias_initializer=self._bias_initializer.__class__.from_config(
                self._bias_initializer.get_config()
            ),
            kernel_regularizer=self._kernel_regularizer,
            bias_regularizer=self._bias_regularizer,
            activity_regularizer=self._activity_regularizer,
            kernel_constraint=self._kernel_constraint,
            bias_constraint=self._bias_constraint,
            dtype=self.dtype_policy,
        )

    def _projection(self, input_rank, heads, head_dim, name, **kwargs):
        # (B, ..., dim) x (dim, heads, head_dim) -> (B, ..., heads, head_dim)
        equation, bias_axes = _projection_equation(input_rank - 1, 1, 2)
        return keras.layers.EinsumDense(
            equation,
            output_shape=[None] * (input_rank - 2) + [heads, head_dim],
            bias_axes=bias_axes if self._use_bias else None,
            name=name,
            **kwargs,
            **self._sublayer_kwargs(),
        )

    def _check_shapes(self, query_shape, value_shape, key_shape):
        query_rank = len(query_shape)
        if query_rank < 3:
            raise ValueError(
                "`query` must have rank 3 or more (batch, ..., features). "
                f"Received: query.shape={query_shape}"
            )
        for name, shape in (("value", value_shape), ("key", key_shape)):
            if len(shape) != query_rank:
                raise ValueError(
                    f"`{name}` must have the rank of `query` "
                    f"({query_rank}). Received: {name}.shape={shape}, "
                    f"query.shape={query_shape}"
                )
            if shape[-1] is None:
                raise ValueError(
                    f"The last axis of `{name}` must be known. Received: "
                    f"{name}.shape={shape}"
                )
        if query_shape[-1] is None:
            raise ValueError(
                "The last axis of `query` must be known. Received: "
                f"query.shape={query_shape}"
            )
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "All axes of `value` and `key` but the last must be equal. "
                f"Received: value.shape={value_shape}, key.shape={key_shape}"
            )

    def _resolve_attention_axes(self, query_rank):
        # Axes of the projected tensors (rank query_rank + 1), as in Keras.
        rank = query_rank + 1
        if self._attention_axes is None:
            axes = tuple(range(1, rank - 2))
        else:
            axes = tuple(
                a if a >= 0 else (rank - 1) + a for a in self._attention_axes
            )
        if any(not 1 <= a <= rank - 3 for a in axes) or len(set(axes)) != len(
            axes
        ):
            raise ValueError(
                "`attention_axes` must be distinct axes of `query` other "
                f"than the batch and feature axes (1 to {query_rank - 2} for "
                f"a query of rank {query_rank}). Received: "
                f"attention_axes={self._attention_axes}"
            )
        return tuple(sorted(axes))

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_shapes(query_shape, value_shape, key_shape)
        query_rank = len(query_shape)
        self._axes = self._resolve_attention_axes(query_rank)
        self._query_shape = query_shape
        self._value_shape = value_shape
        self._key_shape = key_shape
        num_kv = self._num_key_value_heads
        # Same sublayers, names and order as keras.layers.MultiHeadAttention
        # (query, key, gate, value, output), so the weights line up.
        self._query_dense = self._projection(
            query_rank, self._num_heads, self._key_dim, "query"
        )
        self._query_dense.build(query_shape)
        self._key_dense = self._projection(
            query_rank, num_kv, self._key_dim, "key"
        )
        self._key_dense.build(key_shape)
        if self._use_gate:
            self._gate_dense = self._projection(
                query_rank,
                self._num_heads,
                self._value_dim,
                "gate",
                activation="sigmoid",
            )
            self._gate_dense.build(query_shape)
        self._value_dense = self._projection(
            query_rank, num_kv, self._value_dim, "value"
        )
        self._value_dense.build(value_shape)
        self._seed_generator = (
            keras.random.SeedGenerator(self.seed) if self._dropout > 0 else None
        )
        # (B, ..., N, Hv) x (N, Hv, *output_shape) -> (B, ..., *output_shape)
        output_shape = self._output_shape or (query_shape[-1],)
        equation, bias_axes = _projection_equation(
            query_rank - 1, 2, len(output_shape)
        )
        self._output_dense = keras.layers.EinsumDense(
            equation,
            output_shape=[None] * (query_rank - 2) + list(output_shape),
            bias_axes=bias_axes if self._use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        self._output_dense.build(
            (*query_shape[:-1], self._num_heads, self._value_dim)
        )
        # Beyond Keras: created only when enabled, after Keras' variables.
        if self._use_qk_norm:
            self._query_norm = keras.layers.RMSNormalization(
                axis=-1,
                epsilon=1e-6,
                dtype=self.dtype_policy,
                name="query_norm",
            )
            self._query_norm.build(
                (*query_shape[:-1], self._num_heads, self._key_dim)
            )
            self._key_norm = keras.layers.RMSNormalization(
                axis=-1, epsilon=1e-6, dtype=self.dtype_policy, name="key_norm"
            )
            self._key_norm.build((*key_shape[:-1], num_kv, self._key_dim))
        if self._rotary_embedding is not None:
            if query_rank != 3:
                raise ValueError(
                    "`rotary_embedding` needs inputs of rank 3 (batch, "
                    f"length, features). Received: query.shape={query_shape}"
                )
            if self._key_dim % 2:
                raise ValueError(
                    "`rotary_embedding` needs an even `key_dim`. Received: "
                    f"key_dim={self._key_dim}"
                )
        self.built = True

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
        key_is_value = key is None or key is value
        query = _without_keras_mask(query, query_mask)
        value = _without_keras_mask(value, value_mask)
        key = value if key_is_value else _without_keras_mask(key, key_mask)
        self._validate_call(
            query,
            value,
            key,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            return_attention_scores,
            attention_bias,
            cache,
            cache_update_index,
        )
        training = bool(training) if training is not None else False

        # `gate` = (B, T, N, Hv)
        gate = self._gate_dense(query) if self._use_gate else None
        # (B, T, N, H)
        projected_query = self._query_dense(query)

        # Keys and values (B, S, K, H) and (B, S, K, Hv): projected, spliced
        # into the cache, or read from it.
        start_index = 0
        if cache is not None:
            # (B, S_max, K, H) each.
            key_cache = cache[:, 0, ...]
            value_cache = cache[:, 1, ...]
            if cache_update_index is None:
                projected_key, projected_value = key_cache, value_cache
            else:
                start_index = cache_update_index
                key_update = self._project_key(key, start_index)
                value_update = self._value_dense(value)
                start = [0, cache_update_index, 0, 0]
                projected_key = ops.slice_update(
                    key_cache, start, ops.cast(key_update, key_cache.dtype)
                )
                projected_value = ops.slice_update(
                    value_cache,
                    start,
                    ops.cast(value_update, value_cache.dtype),
                )
                # (B, 2, S_max, K, H)
                cache = ops.stack((projected_key, projected_value), axis=1)
            projected_key = ops.cast(projected_key, self.compute_dtype)
            projected_value = ops.cast(projected_value, self.compute_dtype)
        else:
            projected_key = self._project_key(key, 0)
            projected_value = self._value_dense(value)

        if self._use_qk_norm:
            projected_query = self._query_norm(projected_query)
        if self._rotary_embedding is not None:
            projected_query = self._rotary_embedding(
                projected_query, start_index=start_index
            )

        mask, is_causal = self._attention_mask(
            query,
            projected_key,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
            cache is not None,
            cache_update_index,
        )
        attention_output, scores = self._attend(
            projected_query,
            projected_key,
            projected_value,
            mask,
            attention_bias,
            is_causal,
            training,
            return_attention_scores,
        )
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

    def _project_key(self, key, start_index):
        # (B, S, K, H), normalised and rotated before it enters the cache.
        projected = self._key_dense(key)
        if self._use_qk_norm:
            projected = self._key_norm(projected)
        if self._rotary_embedding is not None:
            projected = self._rotary_embedding(
                projected, start_index=start_index
            )
        return projected

    def _attention_mask(
        self,
        query,
        projected_key,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
        has_cache,
        cache_update_index,
    ):
        """The boolean mask in Keras' layout, and whether to pass is_causal.

        Returns `(mask, is_causal)`; `mask` broadcasts to Keras' score shape
        `(B, <other axes>, N, <query axes>, <key axes>)` after the expansion
        of `_expand_mask`, or is None.
        """
        q_len = ops.shape(query)[1]
        k_len = ops.shape(projected_key)[1]
        static_q, static_k = query.shape[1], projected_key.shape[1]
        # Query position of query 0: 0 (start-aligned, as Keras) without a
        # cache, the update index with one.
        offset = 0
        if has_cache and cache_update_index is not None:
            offset = cache_update_index
        masks = []
        if query_mask is not None:
            # (B, T, 1)
            masks.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
        for m in (value_mask, key_mask):
            if m is not None:
                # (B, 1, S)
                masks.append(ops.expand_dims(ops.cast(m, "bool"), -2))
        if attention_mask is not None:
            masks.append(ops.cast(attention_mask, "bool"))
        is_causal = False
        only_causal = (
            not masks
            and not has_cache
            and self._sliding_window is None
            and len(self._axes) == 1
            and static_q is not None
            and static_q == static_k
        )
        if use_causal_mask and only_causal:
            # T == S: the end-aligned causal flag of the attention core is
            # the start-aligned one, and fused kernels need no (T, S) mask.
            is_causal = True
        elif use_causal_mask:
            # (1, T, S)
            masks.append(causal_mask(q_len, k_len, offset=offset)[None])
        if self._sliding_window is not None:
            # (1, T, S)
            masks.append(
                sliding_window_mask(
                    q_len, k_len, window=self._sliding_window, offset=offset
                )[None]
            )
        return combine_masks(*masks), is_causal

    def _expand_mask(self, mask, scores_rank):
        # Insert the head axis (and any missing leading axes) as Keras does.
        axis = -len(self._axes) * 2 - 1
        while len(mask.shape) < scores_rank:
            mask = ops.expand_dims(mask, axis=axis)
        return mask

    def _attend(
        self,
        query,
        key,
        value,
        mask,
        bias,
        is_causal,
        training,
        return_attention_scores,
    ):
        """Attention over `self._axes` of projected `(B, ..., heads, dim)`."""
        axes = self._axes
        rank = len(query.shape)
        if mask is not None:
            # Keras' score rank: (B, <other>, N, <q axes>, <k axes>).
            mask = self._expand_mask(mask, rank - 1 + len(axes))
        single_axis = axes == (1,) and rank == 4
        if single_axis:
            output, scores = self._sdpa(
                query,
                key,
                value,
                mask,
                bias,
                is_causal,
                training,
                return_attention_scores,
            )
            return output, scores

        # Several attention axes, or attention over inner axes: move the
        # other axes into the batch and flatten the attention axes.
        other = [a for a in range(rank - 2) if a not in axes]
        perm = (*other, *axes, rank - 2, rank - 1)
        q_shape, k_shape = ops.shape(query), ops.shape(key)
        other_q = [q_shape[a] for a in other]
        attn_q = [q_shape[a] for a in axes]
        attn_k = [k_shape[a] for a in axes]
        t_len = _prod([query.shape[a] for a in axes])
        s_len = _prod([key.shape[a] for a in axes])
        t_len = -1 if t_len is None else t_len
        s_len = -1 if s_len is None else s_len

        def flatten(x, length):
            # (B, <other>, <attn>, heads, dim) -> (B', L, heads, dim)
            x = ops.transpose(x, perm)
            return ops.reshape(x, (-1, length, x.shape[-2], x.shape[-1]))

        query_f = flatten(query, t_len)
        key_f = flatten(key, s_len)
        value_f = flatten(value, s_len)
        if mask is not None:
            # Keras' score layout (<other>, N|1, <q attn>, <k attn>)
            # -> (B', 1|N, T', S').
            heads = mask.shape[len(other)]
            heads = 1 if heads == 1 else self._num_heads
            mask = ops.broadcast_to(mask, (*other_q, heads, *attn_q, *attn_k))
            mask = ops.reshape(mask, (-1, heads, t_len, s_len))
        output, scores = self._sdpa(
            query_f,
            key_f,
            value_f,
            mask,
            None,
            is_causal,
            training,
            return_attention_scores,
        )
        # (B', T', N, Hv) -> (B, <other>, <attn>, N, Hv) -> input order.
        output = ops.reshape(
            output, (*other_q, *attn_q, self._num_heads, self._value_dim)
        )
        inverse = [perm.index(i) for i in range(rank)]
        output = ops.transpose(output, inverse)
        if scores is not None:
            # (B', N, T', S') -> Keras' (<other>, N, <q attn>, <k attn>)
            scores = ops.reshape(
                scores, (*other_q, self._num_heads, *attn_q, *attn_k)
            )
        return output, scores

    def _sdpa(
        self, query, key, value, mask, bias, is_causal, training, weights
    ):
        use_dropout = training and self._dropout > 0
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
        )
        if weights:
            return result
        return result, None

    # ------------------------------------------------------------------
    # Validation: shapes and dtypes only, before any backend op.
    # ------------------------------------------------------------------

    def _validate_call(
        self,
        query,
        value,
        key,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        return_attention_scores,
        attention_bias,
        cache,
        cache_update_index,
    ):
        query_shape, value_shape, key_shape = (
            _shape(query),
            _shape(value),
            _shape(key),
        )
        self._check_shapes(query_shape, value_shape, key_shape)
        for name, shape, built in (
            ("query", query_shape, self._query_shape),
            ("value", value_shape, self._value_shape),
            ("key", key_shape, self._key_shape),
        ):
            if len(shape) != len(built) or shape[-1] != built[-1]:
                raise ValueError(
                    f"`{name}` must have the rank and feature size the layer "
                    f"was built with, {name}.shape={built}. Received: "
                    f"{name}.shape={shape}"
                )
        batch = query_shape[0]
        for name, shape in (("value", value_shape), ("key", key_shape)):
            if None not in (batch, shape[0]) and shape[0] != batch:
                raise ValueError(
                    f"`{name}` must have the batch size of `query`. "
                    f"Received: query.shape={query_shape}, "
                    f"{name}.shape={shape}"
                )
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "Attention scores cannot be returned with flash attention. "
                "Received: flash_attention=True, return_attention_scores=True"
            )
        if (
            self._attention_implementation in ("fused", "chunked")
            and return_attention_scores
        ):
            raise ValueError(
                "Attention scores need implementation='reference' or 'auto'. "
                f"Received: implementation={self._implementation!r}, "
                "return_attention_scores=True"
            )

        # Keys as attended: the cache replaces `key`'s length.
        key_lengths = tuple(key_shape[1:-1])
        if cache is not None:
            self._validate_cache(
                query_shape, value_shape, key_shape, cache, cache_update_index
            )
            key_lengths = (_shape(cache)[2],)
        elif cache_update_index is not None:
            raise ValueError(
                "`cache_update_index` needs a `cache`. Received: cache=None, "
                f"cache_update_index={cache_update_index!r}"
            )

        for name, mask, shape in (
            ("query_mask", query_mask, query_shape[:-1]),
            ("value_mask", value_mask, (value_shape[0], *key_lengths)),
            ("key_mask", key_mask, (key_shape[0], *key_lengths)),
        ):
            if mask is None:
                continue
            _check_mask_dtype(name, mask)
            if not _compatible(_shape(mask), shape):
                raise ValueError(
                    f"`{name}` must have shape {shape} (batch and positions"
                    f"{' of the cache' if cache is not None else ''}). "
                    f"Received: {name}.shape={_shape(mask)}"
                )

        # Keras' score layout: (B, <other>, N, <query axes>, <key axes>).
        rank = len(query_shape) + 1
        other = [query_shape[a] for a in range(rank - 2) if a not in self._axes]
        q_attn = [query_shape[a] for a in self._axes]
        k_attn = (
            list(key_lengths)
            if cache is not None
            else [key_shape[a] for a in self._axes]
        )
        scores_shape = (*other, self._num_heads, *q_attn, *k_attn)
        if attention_mask is not None:
            _check_mask_dtype("attention_mask", attention_mask)
            mask_shape = _shape(attention_mask)
            expanded = list(mask_shape)
            attn_dims = 2 * len(self._axes)
            while attn_dims <= len(expanded) < len(scores_shape):
                # Mirrors `_expand_mask`: axes inserted before the last
                # `2 * len(attention_axes)` (the head axis first).
                expanded.insert(len(expanded) - attn_dims, 1)
            if (
                len(mask_shape) > len(scores_shape)
                or len(mask_shape) < attn_dims
                or not _broadcastable(tuple(expanded), scores_shape)
            ):
                raise ValueError(
                    "`attention_mask` must broadcast to (batch, query "
                    "positions, key positions) "
                    f"= {(scores_shape[0], *q_attn, *k_attn)}. Received: "
                    f"attention_mask.shape={mask_shape}"
                )
        if attention_bias is not None:
            bias_shape = _shape(attention_bias)
            if len(query_shape) != 3:
                raise ValueError(
                    "`attention_bias` needs inputs of rank 3. Received: "
                    f"query.shape={query_shape}"
                )
            dtype = keras.backend.standardize_dtype(attention_bias.dtype)
            if "float" not in dtype:
                raise ValueError(
                    "`attention_bias` must be a float tensor (added to the "
                    f"logits). Received: attention_bias.dtype={dtype}"
                )
            if len(bias_shape) > 4 or not _broadcastable(
                bias_shape, scores_shape
            ):
                raise ValueError(
                    "`attention_bias` must broadcast to (batch, num_heads, "
                    f"query positions, key positions) = {scores_shape}. "
                    f"Received: attention_bias.shape={bias_shape}"
                )

    def _validate_cache(
        self, query_shape, value_shape, key_shape, cache, cache_update_index
    ):
        cache_shape = _shape(cache)
        if len(query_shape) != 3:
            raise ValueError(
                "`cache` needs inputs of rank 3 (batch, length, features). "
                f"Received: query.shape={query_shape}"
            )
        if self._key_dim != self._value_dim:
            raise ValueError(
                "`cache` needs `key_dim == value_dim`, keys and values share "
                f"one tensor. Received: key_dim={self._key_dim}, "
                f"value_dim={self._value_dim}"
            )
        expected = (
            query_shape[0],
            2,
            None,
            self._num_key_value_heads,
            self._key_dim,
        )
        if len(cache_shape) != 5 or not _compatible(cache_shape, expected):
            raise ValueError(
                "`cache` must have shape (batch, 2, max_length, "
                f"num_key_value_heads, key_dim) = {expected}. Received: "
                f"cache.shape={cache_shape}"
            )
        if cache_update_index is None:
            return
        if isinstance(cache_update_index, bool) or (
            isinstance(cache_update_index, int) and cache_update_index < 0
        ):
            raise ValueError(
                "`cache_update_index` must be a non-negative integer. "
                f"Received: cache_update_index={cache_update_index!r}"
            )
        if not isinstance(cache_update_index, int):
            index_shape = _shape(cache_update_index)
            if len(index_shape) != 0:
                raise ValueError(
                    "`cache_update_index` must be an int or a scalar tensor. "
                    f"Received: cache_update_index.shape={index_shape}"
                )
            return
        update_len = key_shape[1]
        if (
            update_len is not None
            and cache_shape[2] is not None
            and cache_update_index + update_len > cache_shape[2]
        ):
            raise ValueError(
                "`cache_update_index` plus the length of `key`/`value` must "
                f"fit in the cache ({cache_shape[2]}). Received: "
                f"cache_update_index={cache_update_index}, "
                f"key.shape={key_shape}"
            )

    # ------------------------------------------------------------------
    # Shapes and config
    # ------------------------------------------------------------------

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_shapes(query_shape, value_shape, key_shape)
        if self._output_shape:
            return query_shape[:-1] + self._output_shape
        return query_shape

    def compute_output_spec(
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
        key_shape = None if key is None else _shape(key)
        if key_shape is None:
            key_shape = _shape(value)
        output_shape = self.compute_output_shape(
            _shape(query), _shape(value), key_shape
        )
        outputs = (keras.KerasTensor(output_shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            query_shape = _shape(query)
            rank = len(query_shape) + 1
            axes = self._resolve_attention_axes(len(query_shape))
            other = [query_shape[a] for a in range(rank - 2) if a not in axes]
            if cache is not None:
                k_attn = [_shape(cache)[2]]
            else:
                k_attn = [key_shape[a] for a in axes]
            scores_shape = (
                *other,
                self._num_heads,
                *[query_shape[a] for a in axes],
                *k_attn,
            )
            outputs += (
                keras.KerasTensor(scores_shape, dtype=self.compute_dtype),
            )
        if cache is not None:
            outputs += (keras.KerasTensor(_shape(cache), dtype=cache.dtype),)
        return outputs[0] if len(outputs) == 1 else outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self._num_heads,
                "key_dim": self._key_dim,
                "value_dim": self._value_dim,
                "dropout": self._dropout,
                "use_bias": self._use_bias,
                "use_gate": self._use_gate,
                "output_shape": self._output_shape,
                "attention_axes": self._attention_axes,
                "sliding_window": self._sliding_window,
                "flash_attention": self._flash_attention,
                "kernel_initializer": keras.initializers.serialize(
                    self._kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self._bias_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self._kernel_regularizer
                ),
                "bias_regularizer": keras.regularizers.serialize(
                    self._bias_regularizer
                ),
                "activity_regularizer": keras.regularizers.serialize(
                    self._activity_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(
                    self._kernel_constraint
                ),
                "bias_constraint": keras.constraints.serialize(
                    self._bias_constraint
                ),
                "seed": self.seed,
                "num_key_value_heads": self._num_key_value_heads,
                "rotary_embedding": (
                    None
                    if self._rotary_embedding is None
                    else keras.saving.serialize_keras_object(
                        self._rotary_embedding
                    )
                ),
                "use_qk_norm": self._use_qk_norm,
                "implementation": self._implementation,
            }
        )
        return config


def _deserialize_rotary(config):
    if "class_name" in config:
        return keras.saving.deserialize_keras_object(config)
    from keras_attn.layers.embeddings.rotary_embedding import RotaryEmbedding

    return RotaryEmbedding.from_config(config)


def _prod(dims):
    result = 1
    for d in dims:
        if d is None:
            return None
        result *= d
    return result


def _compatible(shape, expected):
    if len(shape) != len(expected):
        return False
    return all(
        a is None or b is None or a == b
        for a, b in zip(shape, expected, strict=True)
    )


def _broadcastable(shape, target):
    if len(shape) > len(target):
        return False
    for dim, full in zip(reversed(shape), reversed(target), strict=False):
        if dim in (1, None) or full is None or dim == full:
            continue
        return False
    return True


def _check_mask_dtype(name, mask):
    dtype = keras.backend.standardize_dtype(mask.dtype)
    if dtype != "bool" and "int" not in dtype and "float" not in dtype:
        raise ValueError(
            f"`{name}` must be a boolean (or 0/1 numeric) tensor. Received: "
            f"{name}.dtype={dtype}"
        )
