"""Shared machinery of the RNN-era attentions (Bahdanau, Luong).

Private: the public classes are `BahdanauAttention` and `LuongAttention`.
Both score one query (or one query per decoder step) against a memory of
encoder states, normalise the scores with a masked softmax and return the
weighted sum of the memory (the context vector).
"""

import keras
from keras import ops

# Logit given to masked memory positions before the softmax. Finite, so a
# fully masked row never gives inf - inf = NaN; exp(-1e30 - m) underflows
# to exactly 0 in float32. The weights are multiplied by the mask afterwards
# too, so masked positions are exactly 0 whatever the logits.
_MASKED_LOGIT = -1e30


def _shape(x):
    return tuple(x.shape)


def _check_positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def _dim_mismatch(a, b):
    return a is not None and b is not None and a != b


class RNNAttentionBase(keras.layers.Layer):
    """Base of `BahdanauAttention` and `LuongAttention` (not public).

    Subclasses implement `_build_scoring(query_dim, memory_dim)`,
    `precompute(memory)` and `_score(query, keys)` where `query` is
    `(B, T, Dq)` and the result `(B, T, S)`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = False

    # -- validation -------------------------------------------------------

    def _validate_shapes(self, query_shape, memory_shape):
        query_shape = tuple(query_shape)
        memory_shape = tuple(memory_shape)
        if len(query_shape) not in (2, 3):
            raise ValueError(
                "`query` must have rank 2 (batch, query_dim) or 3 (batch, "
                f"steps, query_dim). Received: query.shape={query_shape}"
            )
        if len(memory_shape) != 3:
            raise ValueError(
                "`memory` must have rank 3 (batch, memory_length, "
                f"memory_dim). Received: memory.shape={memory_shape}"
            )
        if _dim_mismatch(query_shape[0], memory_shape[0]):
            raise ValueError(
                "`query` and `memory` must have the same batch size. "
                f"Received: query.shape={query_shape}, "
                f"memory.shape={memory_shape}"
            )
        if query_shape[-1] is None or memory_shape[-1] is None:
            raise ValueError(
                "The last dimension of `query` and `memory` must be known. "
                f"Received: query.shape={query_shape}, "
                f"memory.shape={memory_shape}"
            )
        if self.built:
            if query_shape[-1] != self._query_dim:
                raise ValueError(
                    f"`query` must have last dimension {self._query_dim} "
                    "(the layer was built with it). Received: "
                    f"query.shape={query_shape}"
                )
            if memory_shape[-1] != self._memory_dim:
                raise ValueError(
                    f"`memory` must have last dimension {self._memory_dim} "
                    "(the layer was built with it). Received: "
                    f"memory.shape={memory_shape}"
                )

    def _validate_mask(self, memory_mask, memory_shape):
        if memory_mask is None:
            return
        mask_shape = _shape(memory_mask)
        expected = tuple(memory_shape[:2])
        if len(mask_shape) != 2 or any(
            _dim_mismatch(m, e) for m, e in zip(mask_shape, expected)
        ):
            raise ValueError(
                "`memory_mask` must have shape (batch, memory_length) = "
                f"{expected}. Received: memory_mask.shape={mask_shape}"
            )
        dtype = keras.backend.standardize_dtype(memory_mask.dtype)
        if dtype != "bool" and "int" not in dtype:
            raise ValueError(
                "`memory_mask` must be boolean (True = may attend) or "
                f"integer. Received: memory_mask.dtype={dtype}"
            )

    def _validate_keys(self, keys, memory_shape):
        if keys is None:
            return
        keys_shape = _shape(keys)
        if len(keys_shape) != 3 or any(
            _dim_mismatch(k, m) for k, m in zip(keys_shape[:2], memory_shape)
        ):
            raise ValueError(
                "`keys` must be `precompute(memory)`, of shape (batch, "
                f"memory_length, units). Received: keys.shape={keys_shape}, "
                f"memory.shape={tuple(memory_shape)}"
            )

    # -- Keras layer API ---------------------------------------------------

    def build(
        self, query_shape, memory_shape, memory_mask_shape=None, keys_shape=None
    ):
        self._validate_shapes(query_shape, memory_shape)
        self._query_dim = int(query_shape[-1])
        self._memory_dim = int(memory_shape[-1])
        self._build_scoring(self._query_dim, self._memory_dim)
        self.built = True

    def call(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        return_attention_scores=False,
    ):
        self._validate_shapes(_shape(query), _shape(memory))
        self._validate_mask(memory_mask, _shape(memory))
        self._validate_keys(keys, _shape(memory))
        query = ops.cast(query, self.compute_dtype)
        memory = ops.cast(memory, self.compute_dtype)
        single_step = len(query.shape) == 2
        if single_step:
            query = ops.expand_dims(query, 1)  # (B, 1, Dq)
        if keys is None:
            keys = self.precompute(memory)
        scores = self._score(query, keys)  # (B, T, S)
        weights = self._masked_softmax(scores, memory_mask)  # (B, T, S)
        weights = ops.cast(weights, memory.dtype)
        context = ops.einsum("bts,bsd->btd", weights, memory)  # (B, T, Dm)
        if single_step:
            context = ops.squeeze(context, 1)  # (B, Dm)
            weights = ops.squeeze(weights, 1)  # (B, S)
        if return_attention_scores:
            return context, weights
        return context

    def _masked_softmax(self, scores, memory_mask):
        # Softmax in float32 whatever the compute dtype: float16 logits
        # overflow and the masked logit does not fit float16.
        scores = ops.cast(scores, "float32")
        if memory_mask is None:
            return ops.softmax(scores, axis=-1)
        mask = ops.cast(memory_mask, "bool")[:, None, :]  # (B, 1, S)
        scores = ops.where(mask, scores, _MASKED_LOGIT)
        weights = ops.softmax(scores, axis=-1)
        # A fully masked row is uniform after the softmax: zero it, and make
        # masked positions exactly 0 in every case.
        return weights * ops.cast(mask, "float32")

    def compute_output_shape(
        self,
        query_shape,
        memory_shape,
        memory_mask_shape=None,
        keys_shape=None,
    ):
        return tuple(query_shape[:-1]) + (memory_shape[-1],)

    def compute_output_spec(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        return_attention_scores=False,
    ):
        self._validate_shapes(_shape(query), _shape(memory))
        self._validate_mask(memory_mask, _shape(memory))
        self._validate_keys(keys, _shape(memory))
        out_shape = _shape(query)[:-1] + (_shape(memory)[-1],)
        context = keras.KerasTensor(out_shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return context
        weights_shape = _shape(query)[:-1] + (_shape(memory)[1],)
        weights = keras.KerasTensor(weights_shape, dtype=self.compute_dtype)
        return context, weights
