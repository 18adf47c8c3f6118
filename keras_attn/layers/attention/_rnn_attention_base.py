"""Shared machinery of the RNN-era attentions (Bahdanau, Luong).

Private: the public classes are `BahdanauAttention` and `LuongAttention`.
Both score one query (or one query per decoder step) against a memory of
encoder states, normalise the scores with a masked softmax and return the
weighted sum of the memory (the context vector).
"""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn.ops import hardmax
from keras_attn.ops import masked_softmax
from keras_attn.ops import sparsemax

# Normalisations of the scores over the memory, by `probability_fn` name.
PROBABILITY_FNS = {
    "softmax": masked_softmax,
    "hardmax": hardmax,
    "sparsemax": sparsemax,
}


def _shape(x):
    return tuple(x.shape)


def check_per_memory_position(name, x, memory_shape, kind="mask"):
    """`x` is `(batch, memory_length)`: a mask, or a float alignment/noise."""
    if x is None:
        return
    _validation.check_shape(
        name, x, tuple(memory_shape[:2]), "(batch, memory_length)"
    )
    if kind == "mask":
        _validation.check_mask_dtype(name, x)
    else:
        _validation.check_float_dtype(name, x)


class RNNAttentionBase(keras.layers.Layer):
    """Base of `BahdanauAttention` and `LuongAttention` (not public).

    Subclasses implement `_build_scoring(query_dim, memory_dim)`,
    `precompute(memory)` and `_score(query, keys)` where `query` is
    `(B, T, Dq)` and the result `(B, T, S)`.

    The hooks below are what `AttentionRNN` asks of a mechanism; a
    subclass that needs more from the decoder loop overrides them.
    """

    #: Whether `call` takes the previous step's alignment as
    #: `previous_alignments` (and `initial_alignments` gives the first);
    #: `AttentionRNN` then carries the alignment in its state.
    needs_previous_alignments = False

    def __init__(
        self,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        probability_fn="softmax",
        **kwargs,
    ):
        _validation.check_choice(
            "probability_fn", probability_fn, tuple(PROBABILITY_FNS)
        )
        super().__init__(**kwargs)
        self.probability_fn = probability_fn
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.supports_masking = False

    # -- hooks of the decoder loop ----------------------------------------

    def initial_alignments(self, batch_size, memory_length):
        """The alignment before the first step (monotonic attentions)."""
        raise NotImplementedError(
            f"{type(self).__name__} does not carry alignments between steps."
        )

    def next_alignment_state(self, previous_state, alignments):
        """What the loop carries to the next step, from this step's output.

        The alignments themselves by default; a location-sensitive
        attention with cumulative features returns their running sum.

        Args:
            previous_state: `(B, S)`, the carried state of the last step.
            alignments: `(B, S)`, this step's alignments.
        """
        return alignments

    def draw_step_noise(self, steps, batch_size, memory_length, training):
        """Noise for every decoder step at once, or None.

        A loop cannot advance a seed generator from inside a compiled JAX
        loop: `AttentionRNN` draws all its steps' noise with this hook
        before the loop and passes step `t`'s slice as `energy_noise`.

        Returns:
            None (no noise), or a `(steps, batch_size, memory_length)`
            tensor.
        """
        return None

    # -- sublayers ---------------------------------------------------------

    def _kernel_initializer(self):
        # A fresh initializer per weight: a shared instance would give two
        # kernels of the same shape the same values.
        return self.kernel_initializer.clone()

    def _projection(self, units, name, input_dim):
        layer = keras.layers.Dense(
            units,
            use_bias=False,
            kernel_initializer=self._kernel_initializer(),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name=name,
        )
        layer.build((None, None, input_dim))
        return layer

    def _build_additive(self, units, query_dim, memory_dim):
        """`W_q`, `W_m` and `v` of the score `v^T tanh(W_q q + W_m m)`."""
        self.query_dense = self._projection(units, "query_dense", query_dim)
        self.memory_dense = self._projection(units, "memory_dense", memory_dim)
        self.attention_v = self.add_weight(
            name="attention_v",
            shape=(units,),
            initializer=self._kernel_initializer(),
            regularizer=self.kernel_regularizer,
        )

    def _additive_score(self, query, keys, v, bias=None):
        processed = self.query_dense(query)  # (B, T, U)
        # (B, T, 1, U) + (B, 1, S, U) -> (B, T, S, U)
        hidden = processed[:, :, None, :] + keys[:, None, :, :]
        if bias is not None:
            hidden = hidden + bias
        return ops.einsum("btsu,u->bts", ops.tanh(hidden), v)  # (B, T, S)

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
        if _validation.dims_differ(query_shape[0], memory_shape[0]):
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
            for name, got, built in (
                ("query", query_shape, self._query_dim),
                ("memory", memory_shape, self._memory_dim),
            ):
                if got[-1] != built:
                    raise ValueError(
                        f"`{name}` must have last dimension {built} (the "
                        "layer was built with it). Received: "
                        f"{name}.shape={got}"
                    )

    def _validate_mask(self, memory_mask, memory_shape):
        check_per_memory_position("memory_mask", memory_mask, memory_shape)

    def _validate_keys(self, keys, memory_shape):
        if keys is None:
            return
        keys_shape = _shape(keys)
        if len(keys_shape) != 3 or not _validation.shapes_compatible(
            keys_shape[:2], tuple(memory_shape[:2])
        ):
            raise ValueError(
                "`keys` must be `precompute(memory)`, of shape (batch, "
                f"memory_length, units). Received: keys.shape={keys_shape}, "
                f"memory.shape={tuple(memory_shape)}"
            )

    def _validate_call(self, query, memory, memory_mask, keys):
        self._validate_shapes(_shape(query), _shape(memory))
        self._validate_mask(memory_mask, _shape(memory))
        self._validate_keys(keys, _shape(memory))

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
        self._validate_call(query, memory, memory_mask, keys)
        query = ops.cast(query, self.compute_dtype)
        memory = ops.cast(memory, self.compute_dtype)
        single_step = len(query.shape) == 2
        if single_step:
            query = ops.expand_dims(query, 1)  # (B, 1, Dq)
        if keys is None:
            keys = self.precompute(memory)
        scores = self._score(query, keys)  # (B, T, S)
        if memory_mask is not None:
            memory_mask = ops.expand_dims(memory_mask, 1)  # (B, 1, S)
        # Masked positions get exactly 0, a fully masked row zeros (float32
        # inside whatever the compute dtype).
        weights = PROBABILITY_FNS[self.probability_fn](
            scores, memory_mask
        )  # (B, T, S)
        weights = ops.cast(weights, memory.dtype)
        context = ops.einsum("bts,bsd->btd", weights, memory)  # (B, T, Dm)
        if single_step:
            context = ops.squeeze(context, 1)  # (B, Dm)
            weights = ops.squeeze(weights, 1)  # (B, S)
        if return_attention_scores:
            return context, weights
        return context

    def compute_output_shape(
        self,
        query_shape,
        memory_shape,
        memory_mask_shape=None,
        keys_shape=None,
    ):
        return tuple(query_shape[:-1]) + (memory_shape[-1],)

    def _output_spec(self, query, memory, return_attention_scores):
        # Context `(..., Dm)` and weights `(..., S)` for a query `(..., Dq)`.
        out_shape = _shape(query)[:-1] + (_shape(memory)[-1],)
        context = keras.KerasTensor(out_shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return context
        weights_shape = _shape(query)[:-1] + (_shape(memory)[1],)
        weights = keras.KerasTensor(weights_shape, dtype=self.compute_dtype)
        return context, weights

    def compute_output_spec(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        return_attention_scores=False,
    ):
        self._validate_call(query, memory, memory_mask, keys)
        return self._output_spec(query, memory, return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "kernel_regularizer": keras.regularizers.serialize(
                    self.kernel_regularizer
                ),
                "probability_fn": self.probability_fn,
            }
        )
        return config
