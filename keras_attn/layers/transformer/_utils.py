"""Helpers shared by the transformer blocks (private)."""

import keras
from keras import ops

from keras_attn._validation import check_mask_dtype
from keras_attn._validation import shapes_compatible
from keras_attn._validation import static_shape

NORMS = ("layer_norm", "rms_norm")
POSITIONS = (None, "rotary", "alibi", "relative")


def clone_initializer(initializer):
    # A fresh initializer per sublayer: a shared one would give every
    # kernel the same values.
    return initializer.__class__.from_config(initializer.get_config())


def make_norm(norm, epsilon, dtype, name):
    if norm == "rms_norm":
        return keras.layers.RMSNormalization(
            epsilon=epsilon, dtype=dtype, name=name
        )
    return keras.layers.LayerNormalization(
        epsilon=epsilon, dtype=dtype, name=name
    )


def check_sequence(name, x, features):
    shape = static_shape(x)
    if not shapes_compatible(shape, (None, None, features)):
        raise ValueError(
            f"`{name}` must have shape (batch, length, {features}). "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_masks(sequence_name, sequence, padding, attention, key_length=None):
    """Validates `(padding_name, mask)` and `(attention_name, mask)`.

    The padding mask covers the keys `(B, S)`, the attention mask the
    pairs `(B, T, S)`; `S` is `key_length`, by default the length of
    `sequence` (self-attention without a cache).
    """
    seq_shape = tuple(sequence.shape)
    key_length = seq_shape[1] if key_length is None else key_length
    for (name, mask), expected in (
        (padding, (seq_shape[0], key_length)),
        (attention, (seq_shape[0], seq_shape[1], key_length)),
    ):
        if mask is None:
            continue
        check_mask_dtype(name, mask)
        shape = static_shape(mask)
        if not shapes_compatible(shape, expected):
            raise ValueError(
                f"`{name}` must have shape {expected} to match "
                f"`{sequence_name}`. Received: {name}.shape={shape}"
            )


def merge_masks(padding_mask, attention_mask, keras_mask=None):
    """keras-hub's merge: padding `(B, S)` -> `(B, 1, S)`, AND attention.

    `keras_mask` (the Keras mask of the sequence, which Keras hands to the
    block's `call`) stands in for a missing `padding_mask`.
    """
    if padding_mask is None:
        padding_mask = keras_mask
    mask = None
    if padding_mask is not None:
        # (B, 1, S)
        mask = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
    if attention_mask is not None:
        attention_mask = ops.cast(attention_mask, "bool")
        mask = (
            attention_mask
            if mask is None
            else ops.logical_and(mask, attention_mask)
        )
    return mask


def check_scores_flag(value):
    """Whether `return_attention_scores` asks for all the scores."""
    if not (isinstance(value, str) and value == "all") and value not in (
        None,
        True,
        False,
    ):
        raise ValueError(
            "`return_attention_scores` must be a bool or 'all'. Received: "
            f"return_attention_scores={value!r}"
        )
    return value == "all"


def unpack_attention(outputs, with_scores, with_cache):
    """`(output, scores or None, cache or None)` of an attention call."""
    if not with_scores and not with_cache:
        return outputs, None, None
    outputs = tuple(outputs)
    return (
        outputs[0],
        outputs[1] if with_scores else None,
        outputs[-1] if with_cache else None,
    )


def static_length(x, axis):
    # Static when known: the position biases validate Python ints.
    return x.shape[axis] if x.shape[axis] is not None else ops.shape(x)[axis]
