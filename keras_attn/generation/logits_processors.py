"""Logits processors and stop-sequence matching: pure functions on `(B, V)`.

Each processor takes the logits `(B, V)` of position `index` and the token
buffer `(B, L)` whose positions `< index` hold the sequence so far (prompt
included), and returns new logits; none carries state, so they run inside a
compiled `keras.ops.while_loop`. The samplers apply them, in the order of
Hugging Face's `generate`: repetition penalty, no-repeat n-grams, then the
sampler's own temperature and filters.
"""

import math
import numbers

from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number

# The logit of an excluded token: finite, so softmax and sums stay NaN-free.
EXCLUDED = -1e9


def _seen(tokens, index, vocabulary_size):
    """`(B, V)` float32: 1 where a token occurs at a position `< index`."""
    batch_size, length = ops.shape(tokens)[0], tokens.shape[1]
    before = ops.cast(ops.arange(length) < index, "float32")  # (L,)
    rows = ops.repeat(ops.arange(batch_size, dtype="int32"), length)
    indices = ops.stack(
        [rows, ops.reshape(ops.cast(tokens, "int32"), (-1,))], axis=1
    )  # (B * L, 2)
    values = ops.reshape(
        ops.broadcast_to(before[None, :], (batch_size, length)), (-1,)
    )
    counts = ops.scatter(indices, values, (batch_size, vocabulary_size))
    return ops.cast(counts > 0, "float32")


def repetition_penalty(logits, tokens, index, penalty):
    """Penalizes the tokens that already occur in the sequence.

    The CTRL rule (Keskar et al.), as Hugging Face's
    `repetition_penalty`: the logit of every token found at a position
    `< index` of its row (prompt included) is divided by `penalty` where
    positive and multiplied by it where negative, so `penalty > 1` makes
    repeats less likely, and `1` changes nothing.

    Args:
        logits: `(B, V)` float logits of position `index`.
        tokens: `(B, L)` integer buffer; positions `< index` are the
            sequence so far.
        index: int or scalar int tensor.
        penalty: positive float.

    Returns:
        `(B, V)` float32 logits.

    Example:

    ```python
    import numpy as np
    from keras_attn.generation import repetition_penalty

    logits = np.array([[2.0, -1.0, 3.0]], "float32")
    tokens = np.array([[0, 1, 2]], "int32")
    repetition_penalty(logits, tokens, 2, 2.0)  # [[1.0, -2.0, 3.0]]
    ```

    References:
        - Keskar et al., "CTRL: A Conditional Transformer Language Model
          for Controllable Generation", 2019.
    """
    check_positive_number("penalty", penalty)
    logits = ops.cast(logits, "float32")
    seen = _seen(tokens, index, logits.shape[-1]) > 0
    penalized = ops.where(logits > 0, logits / penalty, logits * penalty)
    return ops.where(seen, penalized, logits)


def no_repeat_ngram(logits, tokens, index, ngram_size):
    """Excludes every token that would repeat an n-gram of the sequence.

    As Hugging Face's `no_repeat_ngram_size`: with `n = ngram_size`, a
    token `t` is excluded at position `index` if the `n - 1` tokens before
    `index` followed by `t` already occur as an n-gram at positions
    `< index` (prompt included). With `n = 1` every token seen is excluded.

    Args:
        logits: `(B, V)` float logits of position `index`.
        tokens: `(B, L)` integer buffer; positions `< index` are the
            sequence so far.
        index: int or scalar int tensor.
        ngram_size: positive int `n`.

    Returns:
        `(B, V)` float32 logits, `-1e9` where excluded.

    Example:

    ```python
    import numpy as np
    from keras_attn.generation import no_repeat_ngram

    # "1 2" was followed by 3: after "... 1 2", 3 is excluded.
    tokens = np.array([[1, 2, 3, 1, 2, 0]], "int32")
    logits = np.zeros((1, 5), "float32")
    no_repeat_ngram(logits, tokens, 5, 3)  # [[0, 0, 0, -1e9, 0]]
    ```
    """
    check_positive_int("ngram_size", ngram_size)
    logits = ops.cast(logits, "float32")
    n, length = ngram_size, tokens.shape[1]
    if n > length:
        return logits
    batch_size = ops.shape(tokens)[0]
    tokens = ops.cast(tokens, "int32")
    starts = length - n + 1  # J: n-grams tokens[:, j : j + n]
    # An n-gram is complete before `index` when j + n - 1 < index.
    match = ops.arange(starts) + n - 1 < index  # (J,)
    match = ops.broadcast_to(match[None, :], (batch_size, starts))
    for offset in range(n - 1):
        # The token `n - 1 - offset` before `index` (clipped at 0; the
        # validity mask above excludes the rows it would affect).
        position = ops.maximum(index - (n - 1) + offset, 0)
        previous = ops.take(tokens, position, axis=1)  # (B,)
        window = tokens[:, offset : offset + starts]  # (B, J)
        match = ops.logical_and(match, window == previous[:, None])
    following = tokens[:, n - 1 : n - 1 + starts]  # (B, J) the n-th token
    rows = ops.repeat(ops.arange(batch_size, dtype="int32"), starts)
    indices = ops.stack([rows, ops.reshape(following, (-1,))], axis=1)
    banned = ops.scatter(
        indices,
        ops.reshape(ops.cast(match, "float32"), (-1,)),
        (batch_size, logits.shape[-1]),
    )
    return ops.where(banned > 0, EXCLUDED, logits)


def min_p_filter(logits, min_p):
    """Excludes the tokens less likely than `min_p` times the most likely.

    Min-p sampling (Nguyen et al.): the threshold scales with the model's
    confidence, so a sure model keeps few tokens and an unsure one many.
    Apply it after the temperature (as Hugging Face does); the kept set
    does not depend on renormalization, so its order with top-k is free.

    Args:
        logits: `(B, V)` float logits.
        min_p: float in `(0, 1]`.

    Returns:
        `(B, V)` float32 logits, `-1e9` where excluded.

    Example:

    ```python
    import numpy as np
    from keras_attn.generation import min_p_filter

    logits = np.log(np.array([[0.6, 0.3, 0.05, 0.05]], "float32"))
    min_p_filter(logits, 0.1)  # keeps 0.6 and 0.3 (>= 0.06)
    ```

    References:
        - Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative
          and Coherent LLM Outputs", 2024.
    """
    check_min_p(min_p)
    logits = ops.cast(logits, "float32")
    # p >= min_p * p_max  <=>  logit >= max logit + log(min_p).
    threshold = ops.max(logits, axis=-1, keepdims=True) + math.log(min_p)
    return ops.where(logits < threshold, EXCLUDED, logits)


def check_min_p(min_p, allow_none=False):
    check_positive_number("min_p", min_p, allow_none=allow_none)
    if min_p is not None and min_p > 1:
        raise ValueError(
            f"`min_p` must be in (0, 1] or None. Received: min_p={min_p!r}"
        )


def check_stop_sequences(stop_sequences):
    """Validates `stop_sequences`; returns them as a tuple of int tuples."""
    if stop_sequences is None:
        return ()
    message = (
        "`stop_sequences` must be a list of non-empty lists of token ids "
        f"(ints >= 0). Received: stop_sequences={stop_sequences!r}"
    )
    if isinstance(stop_sequences, (str, bytes)) or not hasattr(
        stop_sequences, "__iter__"
    ):
        raise ValueError(message)
    checked = []
    for sequence in stop_sequences:
        if isinstance(sequence, (str, bytes)) or not hasattr(
            sequence, "__iter__"
        ):
            raise ValueError(message)
        sequence = tuple(sequence)
        if not sequence or any(
            isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 0
            for t in sequence
        ):
            raise ValueError(message)
        checked.append(tuple(int(t) for t in sequence))
    return tuple(checked)


def ends_with_stop_sequence(tokens, index, stop_sequences):
    """`(B,)` bool: True where the tokens up to `index` end a stop sequence.

    Row `b` matches a sequence `s` of length `m` when `tokens[b, index - m +
    1 : index + 1] == s` (the token at `index` is the one just generated;
    the earlier ones may be prompt tokens).

    Args:
        tokens: `(B, L)` integer buffer, filled up to `index`.
        index: int or scalar int tensor.
        stop_sequences: tuple of int tuples (`check_stop_sequences`).
    """
    batch_size = ops.shape(tokens)[0]
    found = ops.zeros((batch_size,), "bool")
    for sequence in stop_sequences:
        m = len(sequence)
        if m > tokens.shape[1]:
            continue
        positions = ops.maximum(index - m + 1 + ops.arange(m), 0)  # (m,)
        tail = ops.take(tokens, positions, axis=1)  # (B, m)
        target = ops.convert_to_tensor(sequence, dtype=tail.dtype)
        same = ops.all(tail == target[None, :], axis=-1)
        found = ops.logical_or(found, ops.logical_and(same, index - m + 1 >= 0))
    return found


__all__ = ["min_p_filter", "no_repeat_ngram", "repetition_penalty"]
