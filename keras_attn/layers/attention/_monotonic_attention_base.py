"""Shared machinery of the monotonic RNN attentions.

Private: the public classes are `BahdanauMonotonicAttention` and
`LuongMonotonicAttention`. They reuse the energy of their non-monotonic
parents and replace the softmax by the monotonic alignment of Raffel et al.
(2017), which depends on the previous decoder step's alignment.
"""

import inspect

import keras
from keras import ops

from keras_attn._validation import check_choice
from keras_attn._validation import check_non_negative_int
from keras_attn._validation import check_number
from keras_attn.layers.attention._rnn_attention_base import _shape
from keras_attn.layers.attention._rnn_attention_base import (
    check_per_memory_position,
)

MODES = ("parallel", "recursive", "hard")

# Smallest normal float32: the floor of `1 - p` before its log, so that the
# log stays finite when a sigmoid saturates to exactly 1.
_FLOAT32_TINY = 1.1754944e-38
# Floor of the exclusive cumulative product that divides the previous
# alignment in parallel mode (the value of Raffel et al. and tfa).
_CUMPROD_FLOOR = 1e-10


def _exclusive_cumsum(x):
    # (B, S): [0, x_0, x_0 + x_1, ...]. A shifted cumsum rather than
    # `cumsum(x) - x`, which is not exactly 0 at position 0 in float32.
    total = ops.cumsum(x, axis=1)
    return ops.concatenate([ops.zeros_like(total[:, :1]), total[:, :-1]], 1)


def _safe_exclusive_cumprod(x):
    """Exclusive cumulative product of `x` in (0, 1] along axis 1.

    In log space: the gradient of a plain `cumprod` divides by `x` and is
    not finite where a sigmoid saturated to `1 - p == 0`.
    """
    log_x = ops.log(ops.clip(x, _FLOAT32_TINY, 1.0))
    return ops.exp(_exclusive_cumsum(log_x))


def monotonic_alignments(p_choose, previous_alignments, mode):
    """The expected (parallel) or hard monotonic alignment, `(B, S)`.

    Args:
        p_choose: `(B, S)` float32 probability of stopping at each memory
            position (0 or 1 in hard mode).
        previous_alignments: `(B, S)` float32 alignment of the previous
            step.
        mode: `"parallel"`, `"recursive"` or `"hard"`.
    """
    if mode == "hard":
        # Positions before the previously attended one cannot be chosen;
        # the first remaining position with p = 1 is attended. p is 0/1, so
        # a plain cumprod is exact here (no gradient flows in hard mode).
        p_choose = p_choose * ops.cumsum(previous_alignments, axis=1)
        not_chosen = ops.concatenate(
            [ops.ones_like(p_choose[:, :1]), 1.0 - p_choose[:, :-1]], 1
        )
        return p_choose * ops.cumprod(not_chosen, axis=1)
    if mode == "recursive":
        # a_i = p_i q_i with q_i = (1 - p_{i-1}) q_{i-1} + a_prev_i, a scan
        # over the memory: no division, so no floor on a vanishing product,
        # at the cost of S sequential steps.
        decay = ops.concatenate(
            [ops.ones_like(p_choose[:, :1]), 1.0 - p_choose[:, :-1]], 1
        )  # (B, S): 1 - p_{i-1}

        def advance(q, step):
            decay_i, previous_i = step  # (B,), (B,)
            q = decay_i * q + previous_i
            return q, q

        _, q = ops.scan(
            advance,
            ops.zeros_like(p_choose[:, 0]),  # (B,)
            (ops.transpose(decay), ops.transpose(previous_alignments)),
        )  # q: (S, B)
        return p_choose * ops.transpose(q)
    # a_i = p_i * prod_{j<i} (1 - p_j)
    #       * sum_{k<=i} a_prev_k / prod_{j<k} (1 - p_j)
    cumprod = _safe_exclusive_cumprod(1.0 - p_choose)  # (B, S)
    carried = ops.cumsum(
        previous_alignments / ops.clip(cumprod, _CUMPROD_FLOOR, 1.0), axis=1
    )
    return p_choose * cumprod * carried


class MonotonicAttentionMixin:
    """Turns an `RNNAttentionBase` subclass into its monotonic form.

    Put first in the bases, before the parent attention: it adds the learned
    `score_bias`, the noise and the monotonic alignment, and keeps the
    parent's energy (`_score`), keys (`precompute`) and validation.
    """

    # `AttentionRNN` carries the alignments in its loop state.
    needs_previous_alignments = True

    def __init__(
        self,
        sigmoid_noise=0.0,
        score_bias_init=0.0,
        mode="parallel",
        seed=None,
        **kwargs,
    ):
        sigmoid_noise = check_number("sigmoid_noise", sigmoid_noise, 0.0)
        score_bias_init = check_number("score_bias_init", score_bias_init)
        check_choice("mode", mode, MODES)
        probability_fn = kwargs.pop("probability_fn", "softmax")
        if probability_fn != "softmax":
            raise ValueError(
                "A monotonic attention normalises with its own monotonic "
                "alignment, not a `probability_fn`. Received: "
                f"probability_fn={probability_fn!r}"
            )
        if seed is not None:
            check_non_negative_int("seed", seed)
        super().__init__(**kwargs)
        self.sigmoid_noise = sigmoid_noise
        self.score_bias_init = score_bias_init
        self.mode = mode
        self.seed = seed

    def get_config(self):
        config = super().get_config()
        config.pop("probability_fn", None)
        config.update(
            {
                "sigmoid_noise": self.sigmoid_noise,
                "score_bias_init": self.score_bias_init,
                "mode": self.mode,
                "seed": self.seed,
            }
        )
        return config

    def _build_scoring(self, query_dim, memory_dim):
        super()._build_scoring(query_dim, memory_dim)
        self.score_bias = self.add_weight(
            name="attention_score_bias",
            shape=(),
            initializer=keras.initializers.Constant(self.score_bias_init),
        )
        self.seed_generator = None
        if self.sigmoid_noise > 0:
            # Its state is a variable: made here, not in `__init__`.
            self.seed_generator = keras.random.SeedGenerator(self.seed)

    # -- hooks of the decoder loop ----------------------------------------

    def draw_step_noise(self, steps, batch_size, memory_length, training):
        if not training or self.sigmoid_noise == 0:
            return None
        return keras.random.normal(
            (steps, batch_size, memory_length), seed=self.seed_generator
        )  # (T, B, S)

    def initial_alignments(self, batch_size, memory_length):
        """The alignment before the first step: one-hot on position 0.

        Args:
            batch_size: int or scalar tensor.
            memory_length: int or scalar tensor, `S`.

        Returns:
            `(batch_size, memory_length)` in the compute dtype.
        """
        first = ops.cast(
            ops.equal(ops.arange(memory_length), 0), self.compute_dtype
        )  # (S,)
        return ops.broadcast_to(first[None, :], (batch_size, memory_length))

    # -- validation -------------------------------------------------------

    def _validate_shapes(self, query_shape, memory_shape):
        super()._validate_shapes(query_shape, memory_shape)
        if len(tuple(query_shape)) == 3:
            raise ValueError(
                "`query` must have rank 2 (batch, query_dim): monotonic "
                "attention needs the previous step's alignment, so it runs "
                "one decoder step at a time (use `AttentionRNN` for whole "
                f"sequences). Received: query.shape={tuple(query_shape)}"
            )

    def _validate_monotonic_call(
        self, query, memory, memory_mask, keys, previous_alignments, noise
    ):
        self._validate_call(query, memory, memory_mask, keys)
        for name, x in (
            ("previous_alignments", previous_alignments),
            ("energy_noise", noise),
        ):
            check_per_memory_position(name, x, _shape(memory), kind="float")

    # -- Keras layer API ---------------------------------------------------

    def call(
        self,
        query,
        memory,
        memory_mask=None,
        keys=None,
        previous_alignments=None,
        energy_noise=None,
        return_attention_scores=False,
        training=None,
    ):
        self._validate_monotonic_call(
            query, memory, memory_mask, keys, previous_alignments, energy_noise
        )
        query = ops.cast(query, self.compute_dtype)
        memory = ops.cast(memory, self.compute_dtype)
        if keys is None:
            keys = self.precompute(memory)
        if previous_alignments is None:
            previous_alignments = self.initial_alignments(
                ops.shape(memory)[0], memory.shape[1] or ops.shape(memory)[1]
            )
        energy = self._score(ops.expand_dims(query, 1), keys)[:, 0]  # (B, S)
        # The recursion in float32 whatever the compute dtype: its products
        # and quotients leave the float16 range.
        energy = ops.cast(energy, "float32") + ops.cast(
            self.score_bias, "float32"
        )
        if training and self.sigmoid_noise > 0:
            # Pushes the pre-sigmoid energies away from 0 during training, so
            # that p is near 0 or 1 and test-time hard attention matches.
            if energy_noise is None:
                energy_noise = keras.random.normal(
                    ops.shape(energy), seed=self.seed_generator
                )
            energy = energy + self.sigmoid_noise * ops.cast(
                energy_noise, "float32"
            )
        if self.mode == "hard":
            p_choose = ops.cast(ops.greater(energy, 0.0), "float32")
        else:
            p_choose = ops.sigmoid(energy)
        if memory_mask is not None:
            # p = 0: a masked position is never attended, and the mass that
            # reaches it passes on (1 - p = 1).
            p_choose = p_choose * ops.cast(memory_mask, "float32")
        weights = monotonic_alignments(
            p_choose, ops.cast(previous_alignments, "float32"), self.mode
        )  # (B, S)
        weights = ops.cast(weights, memory.dtype)
        context = ops.einsum("bs,bsd->bd", weights, memory)  # (B, Dm)
        if return_attention_scores:
            return context, weights
        return context

    def compute_output_spec(self, *args, **kwargs):
        # The arguments of `call`, however they were passed.
        bound = inspect.signature(self.call).bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        self._validate_monotonic_call(
            a["query"],
            a["memory"],
            a["memory_mask"],
            a["keys"],
            a["previous_alignments"],
            a["energy_noise"],
        )
        return self._output_spec(
            a["query"], a["memory"], a["return_attention_scores"]
        )
