"""Luong (multiplicative) attention."""

import keras
from keras import ops

from keras_attn._validation import check_choice
from keras_attn._validation import check_positive_int
from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase

SCORE_MODES = ("dot", "general", "concat")


@keras.saving.register_keras_serializable(package="keras_attn")
class LuongAttention(RNNAttentionBase):
    """Multiplicative (global) attention of Luong et al.

    Scores each memory position `m_s` (an encoder state) against a query `q`
    (the decoder state of the current step), normalises the scores over the
    memory with a softmax and returns the weighted sum of the memory (the
    context vector). The score functions of the paper:

    - `"dot"`: `q . m_s` (needs `Dq == Dm`);
    - `"general"`: `q . (W m_s)` with `W` mapping `Dm` to `Dq`;
    - `"concat"`: `v^T tanh(W [q; m_s])`, computed as
      `v^T tanh(W_q q + W_m m_s)` with `units` hidden units.

    The memory-side part (`W m_s`, `W_m m_s`, or the memory itself) does not
    depend on the query: `precompute` returns it once per sequence and `call`
    accepts it as `keys`. With `scale=True` the scores are multiplied by a
    learned scalar `g` initialised to 1 (`scale=True` of
    `tensorflow_addons.seq2seq.LuongAttention`).

    From `tensorflow_addons.seq2seq.LuongAttention(units, memory, scale)`:
    tfa always projects the memory with a `units`-wide kernel and needs
    `units` equal to the query size, which is `score_mode="general"` here
    (`units` may be left out: it is the query size). `score_mode="dot"`
    (this layer's default) has no projection, so a `units` given with it
    is an error rather than silently ignored.

    Args:
        score_mode: `"dot"`, `"general"` or `"concat"`.
        units: positive int, hidden size of the `"concat"` score (required
            there); for `"general"`, optional, and if given it must equal
            `Dq`; `"dot"` has no weights and rejects it (ValueError).
        scale: bool, learn a scalar that multiplies the scores.
        kernel_initializer: initializer of the projections and `v` (each
            gets its own copy).
        kernel_regularizer: regularizer of the projections and `v`.
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
    from keras_attn.layers import LuongAttention

    attention = LuongAttention(score_mode="general")
    query = np.random.rand(2, 3, 8).astype("float32")  # three decoder steps
    memory = np.random.rand(2, 5, 12).astype("float32")
    context, weights = attention(query, memory, return_attention_scores=True)
    # context: (2, 3, 12); weights: (2, 3, 5), rows summing to 1.
    ```

    References:
        - [Luong et al., 2015. Effective Approaches to Attention-based Neural
          Machine Translation](https://arxiv.org/abs/1508.04025)
    """

    def __init__(
        self,
        score_mode="dot",
        units=None,
        scale=False,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        probability_fn="softmax",
        **kwargs,
    ):
        check_choice("score_mode", score_mode, SCORE_MODES)
        units = check_positive_int(
            "units", units, allow_none=score_mode != "concat"
        )
        if score_mode == "dot" and units is not None:
            raise ValueError(
                'score_mode="dot" has no weights and cannot use `units`; '
                "tfa's `LuongAttention(units)` projects the memory, which "
                'is score_mode="general" here. Received: '
                f"units={units}, score_mode={score_mode!r}"
            )
        super().__init__(
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            probability_fn=probability_fn,
            **kwargs,
        )
        self.score_mode = score_mode
        self.units = units
        self.scale = bool(scale)

    def _validate_shapes(self, query_shape, memory_shape):
        super()._validate_shapes(query_shape, memory_shape)
        dq, dm = query_shape[-1], memory_shape[-1]
        if self.score_mode == "dot" and dq != dm:
            raise ValueError(
                'score_mode="dot" needs `query` and `memory` of the same last '
                f"dimension. Received: query.shape={tuple(query_shape)}, "
                f"memory.shape={tuple(memory_shape)}"
            )
        if (
            self.score_mode == "general"
            and self.units is not None
            and self.units != dq
        ):
            raise ValueError(
                'With score_mode="general", `units` must equal the last '
                f"dimension of `query` ({dq}). Received: units={self.units}"
            )

    def _build_scoring(self, query_dim, memory_dim):
        if self.score_mode == "general":
            self.memory_dense = self._projection(
                query_dim, "memory_dense", memory_dim
            )
        elif self.score_mode == "concat":
            self._build_additive(self.units, query_dim, memory_dim)
        if self.scale:
            self.attention_g = self.add_weight(
                name="attention_g", shape=(), initializer="ones"
            )

    def precompute(self, memory):
        """Computes the memory-side part of the score once per sequence.

        Args:
            memory: `(B, S, Dm)`.

        Returns:
            The keys to pass as `keys`: the memory itself for `"dot"`,
            `W memory` `(B, S, Dq)` for `"general"`, `W_m memory`
            `(B, S, units)` for `"concat"`.
        """
        if self.score_mode == "dot":
            return ops.cast(memory, self.compute_dtype)
        return self.memory_dense(memory)

    def _score(self, query, keys):
        if self.score_mode == "concat":
            v = ops.cast(self.attention_v, self.compute_dtype)
            scores = self._additive_score(query, keys, v)  # (B, T, S)
        else:
            scores = ops.einsum("btd,bsd->bts", query, keys)  # (B, T, S)
        if self.scale:
            scores = scores * ops.cast(self.attention_g, scores.dtype)
        return scores

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "score_mode": self.score_mode,
                "units": self.units,
                "scale": self.scale,
            }
        )
        return config
