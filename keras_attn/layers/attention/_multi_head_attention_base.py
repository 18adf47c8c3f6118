"""The sublayers of `MultiHeadAttention`: projections, build, shapes, config.

A private base class, so that `multi_head_attention.py` holds what a call
does (masks, cache, the `_compute_attention` hook) and this file what the
layer is made of. `MultiHeadAttention.__init__` stores the arguments.
"""

import string

import keras
from keras import ops

from keras_attn import _validation
from keras_attn._adapters import AdapterMixin
from keras_attn.ops.masks import attention_mask_from
from keras_attn.ops.masks import cache_mask_from_step


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


class MultiHeadAttentionBase(AdapterMixin, keras.layers.Layer):
    """The sublayers of `MultiHeadAttention`: build, shapes and config.

    Private base: `MultiHeadAttention.__init__` stores the arguments read
    here; the call, the masks and the attention live in the public class.
    """

    # Properties of keras.layers.MultiHeadAttention (read-only).
    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)
    num_key_value_heads = property(lambda self: self._num_key_value_heads)
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    # ------------------------------------------------------------------
    # Build
    # ------------------------------------------------------------------

    def _sublayer_kwargs(self):
        # One fresh copy of each initializer per sublayer, as Keras makes
        # them (same number, same order: each unseeded copy takes one draw
        # from the global seed), so that a seeded build starts from Keras'
        # weights and no two kernels share a stateless initializer.
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

    def _dense(self, equation, output_shape, name, **kwargs):
        bias_axes = kwargs.pop("bias_axes")
        layer = keras.layers.EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self._use_bias else None,
            name=name,
            **kwargs,
            **self._sublayer_kwargs(),
        )
        # Position-wise, so the Keras mask of the input (B, <positions>)
        # still describes the output: let it pass instead of warning that
        # it is dropped. The layer has read it as query/value/key_mask.
        layer.supports_masking = True
        return layer

    def _projection(self, input_shape, heads, head_dim, name, **kwargs):
        # (B, ..., dim) x (dim, heads, head_dim) -> (B, ..., heads, head_dim)
        rank = len(input_shape)
        equation, bias_axes = _projection_equation(rank - 1, 1, 2)
        layer = self._dense(
            equation,
            [None] * (rank - 2) + [heads, head_dim],
            name,
            bias_axes=bias_axes,
            **kwargs,
        )
        layer.build(input_shape)
        return layer

    def build(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        _validation.check_query_value_key(query_shape, value_shape, key_shape)
        query_rank = len(query_shape)
        self._axes = _validation.check_attention_axes(
            self._attention_axes, query_rank
        )
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
        self._built_shapes = (query_shape, value_shape, key_shape)
        num_heads, num_kv = self._num_heads, self._num_key_value_heads
        # Same sublayers, names and order as keras.layers.MultiHeadAttention
        # (query, key, gate, value, dropout seed, output), so that the
        # weights line up and a seeded build draws the same initial values.
        self._query_dense = self._projection(
            query_shape, num_heads, self._key_dim, "query"
        )
        self._key_dense = self._projection(
            key_shape, num_kv, self._key_dim, "key"
        )
        if self._use_gate:
            self._gate_dense = self._projection(
                query_shape,
                num_heads,
                self._value_dim,
                "gate",
                activation="sigmoid",
            )
        self._value_dense = self._projection(
            value_shape, num_kv, self._value_dim, "value"
        )
        self._seed_generator = (
            keras.random.SeedGenerator(self.seed) if self._dropout > 0 else None
        )
        # (B, ..., N, Hv) x (N, Hv, *output_shape) -> (B, ..., *output_shape)
        output_shape = self._output_shape or (query_shape[-1],)
        equation, bias_axes = _projection_equation(
            query_rank - 1, 2, len(output_shape)
        )
        self._output_dense = self._dense(
            equation,
            [None] * (query_rank - 2) + list(output_shape),
            "attention_output",
            bias_axes=bias_axes,
        )
        self._output_dense.build(
            (*query_shape[:-1], num_heads, self._value_dim)
        )
        # Beyond Keras: created only when enabled, after Keras' variables.
        if self._use_qk_norm:
            self._query_norm, self._key_norm = (
                keras.layers.RMSNormalization(
                    axis=-1, epsilon=1e-6, dtype=self.dtype_policy, name=name
                )
                for name in ("query_norm", "key_norm")
            )
            self._query_norm.build(
                (*query_shape[:-1], num_heads, self._key_dim)
            )
            self._key_norm.build((*key_shape[:-1], num_kv, self._key_dim))
        if self._score_mods[1]:
            # (N,) learned sink logits, in a sublayer so that they come
            # after Keras' variables (a layer's own variables come first).
            self._attention_sinks = _AttentionSinks(
                num_heads, dtype=self.dtype_policy, name="attention_sinks"
            )
            self._attention_sinks.build()
        self._restore_lora()
        self.built = True

    @property
    def sinks(self):
        """The `(num_heads,)` sink logits (`use_attention_sinks`) or None."""
        sinks = getattr(self, "_attention_sinks", None)
        return None if sinks is None else sinks.sinks

    def _score_mod_kwargs(self):
        """The score modifiers for `scaled_dot_product_attention`."""
        logit_soft_cap, use_sinks, score_mod = self._score_mods
        if score_mod is not None:
            # Rows are positions: shifted by the cache index when decoding.
            start, mod = getattr(self, "_query_start", 0), score_mod

            def score_mod(scores, batch, head, q_idx, kv_idx):
                return mod(scores, batch, head, q_idx + start, kv_idx)

        return {
            "logit_soft_cap": logit_soft_cap,
            "sinks": self.sinks if use_sinks else None,
            "score_mod": score_mod,
        }

    def _project_key(self, key, start_index):
        # (B, S, K, H), normalised and rotated before it enters the cache.
        projected = self._key_dense(key)
        if self._use_qk_norm:
            projected = self._key_norm(projected)
        if self._rotary_embedding is not None:
            projected = self._rotate(projected, start_index)
        return projected

    def _rotate(self, x, start_index):
        # The rotary layer is the user's, with its own dtype policy
        # (float32 by default): cast back, or under mixed precision the
        # queries and keys would be float32 and the values float16.
        x = self._rotary_embedding(x, start_index=start_index)
        return ops.cast(x, self.compute_dtype)

    def _attention_mask(
        self,
        query,
        key,
        masks,
        use_causal_mask,
        cache,
        cache_update_index,
        causal_flag,
    ):
        """The boolean mask `(B|1, T, S)` (Keras' layout), and is_causal.

        `query` and `key` are projected `(B, ..., heads, dim)`; with a cache,
        `key` spans the cache. `is_causal` is True only where the causal
        mask is the whole mask and `T == S` (the attention core's flag then
        agrees with Keras' start-aligned one and needs no `(T, S)` mask),
        and `causal_flag` allows it (False where `_compute_attention` is
        overridden: an override gets the mask itself, as in Keras).
        """
        query_mask, value_mask, key_mask, attention_mask = masks
        # Query 0 sits at key position 0 (start-aligned, as Keras) without
        # a cache, at the update index with one.
        offset = 0 if cache_update_index is None else cache_update_index
        q_len, k_len = ops.shape(query)[1], ops.shape(key)[1]
        if cache_update_index is not None:
            # Masks of the keys written at this step, spread over the cache.
            value_mask, key_mask = (
                m
                if m is None or m.shape[1] == key.shape[1]
                else cache_mask_from_step(m, k_len, offset)
                for m in (value_mask, key_mask)
            )
        static_q, static_k = query.shape[1], key.shape[1]
        is_causal = (
            use_causal_mask
            and not any(m is not None for m in masks)
            and cache is None
            and self._sliding_window is None
            and len(self._axes) == 1
            and static_q is not None
            and static_q == static_k
            and causal_flag
        )
        mask = attention_mask_from(
            q_len,
            k_len,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask=use_causal_mask and not is_causal,
            sliding_window=self._sliding_window,
            offset=offset,
        )
        return mask, is_causal

    # ------------------------------------------------------------------
    # Shapes and config
    # ------------------------------------------------------------------

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        _validation.check_query_value_key(query_shape, value_shape, key_shape)
        if self._output_shape:
            return query_shape[:-1] + self._output_shape
        return query_shape

    def compute_output_spec(self, query, value, key=None, **kwargs):
        # The call's arguments: only scores and a cache add outputs.
        return_attention_scores = kwargs.get("return_attention_scores")
        cache = kwargs.get("cache")
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
            axes = _validation.check_attention_axes(
                self._attention_axes, len(query_shape)
            )
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
                "logit_soft_cap": self._score_mods[0],
                "use_attention_sinks": self._score_mods[1],
                "score_mod": (
                    None
                    if self._score_mods[2] is None
                    else keras.saving.serialize_keras_object(
                        self._score_mods[2]
                    )
                ),
            }
        )
        return config


class _AttentionSinks(keras.layers.Layer):
    """Holds the learned sink logits `(num_heads,)`, zeros at first."""

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads

    def build(self, input_shape=None):
        self.sinks = self.add_weight(
            name="sinks", shape=(self.num_heads,), initializer="zeros"
        )
        self.built = True

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads}


def deserialize_rotary(config):
    if "class_name" in config:
        return keras.saving.deserialize_keras_object(config)
    from keras_attn.layers.embeddings.rotary_embedding import RotaryEmbedding

    return RotaryEmbedding.from_config(config)
