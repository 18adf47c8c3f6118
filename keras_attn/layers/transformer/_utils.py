"""Helpers shared by the transformer blocks (private)."""

import keras
from keras import ops

NORMS = ("layer_norm", "rms_norm")
POSITIONS = (None, "rotary", "alibi", "relative")


def check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )


def check_dropout(name, value, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not (
        isinstance(value, (int, float)) and 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {choices}. Received: {name}={value!r}"
        )


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


def keras_mask(x):
    return getattr(x, "_keras_mask", None)


def check_sequence(name, x, features):
    shape = tuple(x.shape)
    if len(shape) != 3 or (features is not None and shape[-1] != features):
        raise ValueError(
            f"`{name}` must have shape (batch, length, {features}). "
            f"Received: {name}.shape={shape}"
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
        dtype = keras.backend.standardize_dtype(mask.dtype)
        if dtype != "bool" and "int" not in dtype and "float" not in dtype:
            raise ValueError(
                f"`{name}` must be a boolean (or 0/1 numeric) tensor. "
                f"Received: {name}.dtype={dtype}"
            )
        shape = tuple(mask.shape)
        if len(shape) != len(expected) or any(
            a is not None and b is not None and a != b
            for a, b in zip(shape, expected)
        ):
            raise ValueError(
                f"`{name}` must have shape {expected} to match "
                f"`{sequence_name}`. Received: {name}.shape={shape}"
            )


def merge_masks(sequence, padding_mask, attention_mask):
    """keras-hub's merge: padding `(B, S)` -> `(B, 1, S)`, AND attention.

    The Keras mask of `sequence` stands in for a missing `padding_mask`.
    """
    if padding_mask is None:
        padding_mask = keras_mask(sequence)
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
