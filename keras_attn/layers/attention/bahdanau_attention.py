"""Bahdanau (additive) attention."""

import math

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase


@keras.saving.register_keras_serializable(package="keras_attn")
class BahdanauAttention(RNNAttentionBase):
    """Additive attention of Bahdanau et al. for RNN encoder-decoders.

    Scores each memory position `s` (an encoder state `m_s`) against a query
    `q` (a decoder state) with a one-hidden-layer network,
    `score(q, m_s) = v^T tanh(W_q q + W_m m_s)`, normalises the scores over
    the memory with a softmax and returns the weighted sum of the memory (the
    context vector). `W_m m_s` does not depend on the query: `precompute`
    returns it once per sequence and `call` accepts it as `keys`, so an
    attentional decoder pays only for `W_q q` at each step.

    With `normalize=True` the vector `v` is weight-normalised as in
    `tensorflow_addons.seq2seq.BahdanauAttention`:
    `score = (g v / ||v||)^T tanh(W_q q + W_m m_s + b)`, with a learned scalar
    `g` (initialised to `sqrt(1 / units)`) and bias `b` (initialised to 0).

    Args:
        units: positive int, size of the hidden layer of the score network.
        normalize: bool, weight-normalise `v` (see above).
        kernel_initializer: initializer of `W_q`, `W_m` and `v` (each gets
            its own copy, so they start from different values).
        kernel_regularizer: regularizer of `W_q`, `W_m` and `v`.
        probability_fn: `"softmax"` (default), `"hardmax"` (one-hot on the
            best score, tfa's option) or `"sparsemax"` (sparse weights,
            Martins and Astudillo, 2016): how the scores become weights.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        query: `(B, Dq)` for one decoder step or `(B, T, Dq)` for `T` steps.
        memory: `(B, S, Dm)`, the encoder states.
        memory_mask: optional `(B, S)` boolean (or 0/1 numeric) mask,
            True (1) where the memory may be attended. Masked positions get
            exactly 0 weight; a row with no position left gives a zero
            context.
        keys: optional `precompute(memory)`, to skip recomputing it.
        return_attention_scores: bool, also return the alignment weights.

    Returns:
        The context `(B, Dm)` or `(B, T, Dm)`; with
        `return_attention_scores=True`, `(context, weights)` with weights
        `(B, S)` or `(B, T, S)` that sum to 1 over the unmasked memory.
        With `probability_fn="sparsemax"` or `"hardmax"`, some (all but
        one) of those weights are exactly 0.

    Example:

    ```python
    import numpy as np
    from keras_attn.layers import BahdanauAttention

    attention = BahdanauAttention(units=16)
    query = np.random.rand(2, 8).astype("float32")  # one decoder step
    memory = np.random.rand(2, 5, 12).astype("float32")
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    context, weights = attention(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    # context: (2, 12); weights: (2, 5), zero where mask is False.
    ```

    References:
        - [Bahdanau et al., 2015. Neural Machine Translation by Jointly
          Learning to Align and Translate](https://arxiv.org/abs/1409.0473)
        - [Salimans and Kingma, 2016. Weight Normalization: A Simple
          Reparameterization to Accelerate Training of Deep Neural
          Networks](https://arxiv.org/abs/1602.07868)
    """

    def __init__(
        self,
        units,
        normalize=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        probability_fn="softmax",
        **kwargs,
    ):
        units = check_positive_int("units", units)
        super().__init__(
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            probability_fn=probability_fn,
            **kwargs,
        )
        self.units = units
        self.normalize = bool(normalize)

    def _build_scoring(self, query_dim, memory_dim):
        self._build_additive(self.units, query_dim, memory_dim)
        if self.normalize:
            self.attention_g = self.add_weight(
                name="attention_g",
                shape=(),
                initializer=keras.initializers.Constant(
                    math.sqrt(1.0 / self.units)
                ),
            )
            self.attention_b = self.add_weight(
                name="attention_b", shape=(self.units,), initializer="zeros"
            )

    def precompute(self, memory):
        """Projects the memory once per sequence.

        Args:
            memory: `(B, S, Dm)`.

        Returns:
            The keys `W_m memory`, `(B, S, units)`, to pass as `keys`.
        """
        return self.memory_dense(memory)  # (B, S, U)

    def _score(self, query, keys):
        v = ops.cast(self.attention_v, self.compute_dtype)
        if not self.normalize:
            return self._additive_score(query, keys, v)  # (B, T, S)
        v32 = ops.cast(self.attention_v, "float32")
        v = ops.cast(
            self.attention_g * v32 / ops.sqrt(ops.sum(ops.square(v32))),
            self.compute_dtype,
        )
        bias = ops.cast(self.attention_b, self.compute_dtype)
        return self._additive_score(query, keys, v, bias)  # (B, T, S)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "normalize": self.normalize})
        return config
