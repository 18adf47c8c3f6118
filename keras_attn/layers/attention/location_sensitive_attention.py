"""Location-sensitive attention (Chorowski et al. 2015; Tacotron 2)."""

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn.layers.attention._rnn_attention_base import PROBABILITY_FNS
from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase
from keras_attn.layers.attention._rnn_attention_base import _shape
from keras_attn.layers.attention._rnn_attention_base import (
    check_per_memory_position,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class LocationSensitiveAttention(RNNAttentionBase):
    """Additive attention that also sees where it attended before.

    The attention of Tacotron 2: Bahdanau's additive score with a third
    term from the previous alignments,

    `e_s = v^T tanh(W_q q + W_m m_s + U f_s + b)`, `f = F * alpha'`,

    where `F * alpha'` is a 1-D convolution (`filters` filters of width
    `kernel_size`, "same" padding, no bias) over the memory axis of the
    carried alignments `alpha'`: their running sum over the previous decoder
    steps (`cumulative=True`, Tacotron 2) or the last step's alignments
    (`cumulative=False`, Chorowski et al.). The location features push the
    attention forward along the memory, which keeps long speech alignments
    from skipping or repeating. The scores are normalised with
    `probability_fn` (softmax by default) over the unmasked memory.

    The layer runs one decoder step at a time (a `(B, Dq)` query): pass
    the carried alignments as `previous_alignments` (zeros at the first
    step, `initial_alignments`) and update them with
    `next_alignment_state(previous_alignments, alignments)`.
    `AttentionRNN` and `AttentionRNNCell` do both in their loop.

    Args:
        units: positive int, hidden size of the score network.
        filters: positive int, number of location filters (32 in
            Tacotron 2).
        kernel_size: positive int, width of the location filters (31 in
            Tacotron 2).
        cumulative: bool, convolve the running sum of the previous
            alignments (True) or the last ones (False).
        probability_fn: `"softmax"`, `"hardmax"` or `"sparsemax"`.
        kernel_initializer: initializer of the projections, the filters
            and `v` (each gets its own copy).
        kernel_regularizer: regularizer of the same weights.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        query: `(B, Dq)`, the decoder state of this step.
        memory: `(B, S, Dm)`, the encoder states.
        memory_mask: optional `(B, S)` boolean (or 0/1 numeric) mask,
            True (1) where the memory may be attended.
        keys: optional `precompute(memory)`, to skip recomputing it.
        previous_alignments: optional `(B, S)` float carried alignments;
            None is zeros (`initial_alignments`).
        return_attention_scores: bool, also return the alignments.
        training: unused, accepted for the decoder loops.

    Returns:
        The context `(B, Dm)`; with `return_attention_scores=True`,
        `(context, alignments)` with alignments `(B, S)` summing to 1 over
        the unmasked memory.

    Example:

    ```python
    import numpy as np
    from keras_attn.layers import LocationSensitiveAttention

    attention = LocationSensitiveAttention(16, filters=8, kernel_size=5)
    memory = np.random.rand(2, 7, 12).astype("float32")
    carried = attention.initial_alignments(2, 7)  # zeros
    for _ in range(3):  # three decoder steps
        query = np.random.rand(2, 10).astype("float32")
        context, alignments = attention(
            query,
            memory,
            previous_alignments=carried,
            return_attention_scores=True,
        )
        carried = attention.next_alignment_state(carried, alignments)
    # context: (2, 12); carried: (2, 7), summing to 3 (three steps).
    ```

    References:
        - [Chorowski et al., 2015. Attention-Based Models for Speech
          Recognition](https://arxiv.org/abs/1506.07503)
        - [Shen et al., 2018. Natural TTS Synthesis by Conditioning WaveNet
          on Mel Spectrogram Predictions](https://arxiv.org/abs/1712.05884)
    """

    needs_previous_alignments = True

    def __init__(
        self,
        units,
        filters=32,
        kernel_size=31,
        cumulative=True,
        probability_fn="softmax",
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        units = check_positive_int("units", units)
        filters = check_positive_int("filters", filters)
        kernel_size = check_positive_int("kernel_size", kernel_size)
        super().__init__(
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            probability_fn=probability_fn,
            **kwargs,
        )
        self.units = units
        self.filters = filters
        self.kernel_size = kernel_size
        self.cumulative = bool(cumulative)

    def _build_scoring(self, query_dim, memory_dim):
        self._build_additive(self.units, query_dim, memory_dim)
        self.location_conv = keras.layers.Conv1D(
            self.filters,
            self.kernel_size,
            padding="same",
            use_bias=False,
            kernel_initializer=self._kernel_initializer(),
            kernel_regularizer=self.kernel_regularizer,
            dtype=self.dtype_policy,
            name="location_conv",
        )
        self.location_conv.build((None, None, 1))
        self.location_dense = self._projection(
            self.units, "location_dense", self.filters
        )
        self.attention_b = self.add_weight(
            name="attention_b", shape=(self.units,), initializer="zeros"
        )

    # -- hooks of the decoder loop ----------------------------------------

    def initial_alignments(self, batch_size, memory_length):
        """The carried alignments before the first step: zeros `(B, S)`."""
        return ops.zeros((batch_size, memory_length), self.compute_dtype)

    def next_alignment_state(self, previous_state, alignments):
        """The running sum (`cumulative=True`) or the new alignments."""
        if self.cumulative:
            return previous_state + alignments
        return alignments

    def precompute(self, memory):
        """Projects the memory once per sequence: `W_m memory` `(B, S, U)`."""
        return self.memory_dense(memory)

    # -- validation -------------------------------------------------------

    def _validate_location_call(self, query, memory, memory_mask, keys, prev):
        self._validate_call(query, memory, memory_mask, keys)
        if len(_shape(query)) != 2:
            raise ValueError(
                "`query` must have rank 2 (batch, query_dim): location "
                "features need the previous step's alignments, so the layer "
                "runs one decoder step at a time (use `AttentionRNN` for "
                f"whole sequences). Received: query.shape={_shape(query)}"
            )
        check_per_memory_position(
            "previous_alignments", prev, _shape(memory), kind="float"
        )

    # -- Keras layer API ---------------------------------------------------

    def call(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        previous_alignments=None,
        return_attention_scores=False,
        training=None,
    ):
        self._validate_location_call(
            query, memory, memory_mask, keys, previous_alignments
        )
        query = ops.cast(query, self.compute_dtype)
        memory = ops.cast(memory, self.compute_dtype)
        if keys is None:
            keys = self.precompute(memory)
        if previous_alignments is None:
            previous_alignments = self.initial_alignments(
                ops.shape(memory)[0], memory.shape[1] or ops.shape(memory)[1]
            )
        previous = ops.cast(previous_alignments, self.compute_dtype)
        features = self.location_conv(previous[:, :, None])  # (B, S, F)
        location = self.location_dense(features)  # (B, S, U)
        bias = location + ops.cast(self.attention_b, self.compute_dtype)
        v = ops.cast(self.attention_v, self.compute_dtype)
        # (B, 1, Dq) query against (B, S, U) keys, (B, 1, S, U) bias.
        scores = self._additive_score(
            query[:, None, :], keys, v, bias[:, None]
        )[:, 0]  # (B, S)
        weights = PROBABILITY_FNS[self.probability_fn](scores, memory_mask)
        weights = ops.cast(weights, memory.dtype)
        context = ops.einsum("bs,bsd->bd", weights, memory)  # (B, Dm)
        if return_attention_scores:
            return context, weights
        return context

    def compute_output_spec(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        previous_alignments=None,
        return_attention_scores=False,
        training=None,
    ):
        self._validate_location_call(
            query, memory, memory_mask, keys, previous_alignments
        )
        return self._output_spec(query, memory, return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "cumulative": self.cumulative,
            }
        )
        return config
