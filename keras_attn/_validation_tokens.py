"""Checks of token ids (private): dtype, values in eager calls, batch.

Unlike `_validation.py`, `check_token_ids` reads values (their min and
max), which exist only in eager calls; see `_compat.known_min_max`.
"""

from keras_attn import _compat
from keras_attn._validation import check_integer_dtype
from keras_attn._validation import dims_differ
from keras_attn._validation import static_shape


def check_token_ids(name, x, vocabulary_size):
    """Integer ids in `[0, vocabulary_size)`.

    The dtype is checked always; the values only when they are known (eager
    calls). Under jit (XLA, `tf.function`) they are not: out-of-range ids
    then reach the embedding lookup, which clamps them on JAX, fails on
    TensorFlow's CPU kernel and is undefined on GPUs.
    """
    check_integer_dtype(name, x)
    bounds = _compat.known_min_max(x)
    if bounds is not None and (bounds[0] < 0 or bounds[1] >= vocabulary_size):
        raise ValueError(
            f"`{name}` must hold ids in [0, {vocabulary_size}) (the "
            f"vocabulary size). Received: {name} with values in "
            f"[{bounds[0]}, {bounds[1]}]"
        )


def check_same_batch(encoder_token_ids, token_ids):
    a, b = static_shape(encoder_token_ids)[0], static_shape(token_ids)[0]
    if dims_differ(a, b):
        raise ValueError(
            "`encoder_token_ids` and `token_ids` must have the same batch "
            f"size. Received: encoder_token_ids.shape="
            f"{tuple(encoder_token_ids.shape)}, token_ids.shape="
            f"{tuple(token_ids.shape)}"
        )
