"""Monotonic Bahdanau (additive) attention."""

import keras

from keras_attn.layers.attention._monotonic_attention_base import (
    MonotonicAttentionMixin,
)
from keras_attn.layers.attention.bahdanau_attention import BahdanauAttention


@keras.saving.register_keras_serializable(package="keras_attn")
class BahdanauMonotonicAttention(MonotonicAttentionMixin, BahdanauAttention):
    """Additive attention that moves left to right over the memory.

    The monotonic attention of Raffel et al. with the energy of
    `BahdanauAttention`: at each decoder step the probability of stopping
    at memory position `i` is `p_i = sigmoid(e_i + r)` with
    `e_i = v^T tanh(W_q q + W_m m_i)` (weight-normalised `v` and a bias
    inside the `tanh` with `normalize=True`) and a learned scalar `r`
    initialised to `score_bias_init`. Attention starts on position 0 and
    can only stay or move forward, so a decoder reads its input in order
    (speech recognition, transliteration, online translation).

    `mode="parallel"` (for training) returns the expected alignment of
    the stochastic process, computed for all positions at once:
    `a_i = p_i * prod_{j<i}(1 - p_j) * sum_{k<=i} a'_k / prod_{j<k}(1 - p_j)`
    with `a'` the previous step's alignment. It sums to at most 1: the mass
    that runs past the end of the memory is dropped. `mode="recursive"`
    computes the same expected alignment with the recursion
    `a_i = p_i q_i`, `q_i = (1 - p_{i-1}) q_{i-1} + a'_i` (a scan over the
    memory): slower, but free of the division by a vanishing product that
    the parallel form floors at 1e-10. `mode="hard"` (for
    inference) thresholds `p_i = [e_i + r > 0]` and attends exactly one
    position, the first at or after the previous one with `p_i = 1`, or
    none once the memory is exhausted; it has no gradient. Masked memory
    positions get `p_i = 0`: never attended, and passed over.

    With `sigmoid_noise > 0`, Gaussian noise of that standard deviation is
    added to the energies in training (`training=True`) only, unlike tfa
    which adds it in every call: it pushes `p` towards 0 or 1 so that the
    hard mode at inference matches the trained soft one.

    The layer runs one decoder step at a time (a `(B, Dq)` query): pass the
    alignment it returned for the previous step as `previous_alignments`.
    `AttentionRNN` does so in its loop.

    Args:
        units: positive int, size of the hidden layer of the energy.
        normalize: bool, weight-normalise `v` as in `BahdanauAttention`.
        sigmoid_noise: float >= 0, standard deviation of the pre-sigmoid
            noise in training.
        score_bias_init: float, initial value of the learned energy bias
            `r`; a negative value (e.g. -4) makes the attention linger on
            early positions at the start of training.
        mode: `"parallel"`, `"recursive"` or `"hard"`.
        seed: optional int, seed of the noise.
        kernel_initializer: initializer of `W_q`, `W_m` and `v`.
        kernel_regularizer: regularizer of `W_q`, `W_m` and `v`.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        query: `(B, Dq)`, the decoder state of this step.
        memory: `(B, S, Dm)`, the encoder states.
        memory_mask: optional `(B, S)` boolean (or 0/1 numeric) mask,
            True (1) where the memory may be attended.
        keys: optional `precompute(memory)`, to skip recomputing it.
        previous_alignments: optional `(B, S)` float alignment of the
            previous step; None is `initial_alignments` (one-hot on 0).
        energy_noise: optional `(B, S)` standard-normal sample used, in
            training, instead of a fresh draw (`AttentionRNN` draws all its
            steps' noise before its loop).
        return_attention_scores: bool, also return the alignment.
        training: bool, adds the noise when True.

    Returns:
        The context `(B, Dm)`; with `return_attention_scores=True`,
        `(context, alignments)` with alignments `(B, S)`, non-negative,
        summing to at most 1, and 0 on masked positions.

    Example:

    ```python
    import numpy as np
    from keras_attn.layers import BahdanauMonotonicAttention

    attention = BahdanauMonotonicAttention(units=16, score_bias_init=-1.0)
    memory = np.random.rand(2, 5, 12).astype("float32")
    alignments = attention.initial_alignments(2, 5)  # one-hot on 0
    for _ in range(3):  # three decoder steps
        query = np.random.rand(2, 8).astype("float32")
        context, alignments = attention(
            query,
            memory,
            previous_alignments=alignments,
            return_attention_scores=True,
        )
    # context: (2, 12); alignments: (2, 5).
    ```

    References:
        - [Raffel et al., 2017. Online and Linear-Time Attention by
          Enforcing Monotonic Alignments](https://arxiv.org/abs/1704.00784)
        - [Bahdanau et al., 2015. Neural Machine Translation by Jointly
          Learning to Align and Translate](https://arxiv.org/abs/1409.0473)
    """

    def __init__(
        self,
        units,
        normalize=False,
        sigmoid_noise=0.0,
        score_bias_init=0.0,
        mode="parallel",
        seed=None,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        **kwargs,
    ):
        super().__init__(
            units=units,
            normalize=normalize,
            sigmoid_noise=sigmoid_noise,
            score_bias_init=score_bias_init,
            mode=mode,
            seed=seed,
            kernel_initializer=kernel_initializer,
            kernel_regularizer=kernel_regularizer,
            **kwargs,
        )
