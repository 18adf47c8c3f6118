"""Helpers shared by the decoding loops (private)."""

from keras import ops


def check_tokens(tokens, start_index):
    shape = tuple(tokens.shape)
    if len(shape) != 2:
        raise ValueError(
            "`tokens` must have rank 2 (batch, max_length). Received: "
            f"tokens.shape={shape}"
        )
    if not isinstance(start_index, int) or isinstance(start_index, bool):
        raise ValueError(
            "`start_index` must be an int. Received: "
            f"start_index={start_index!r}"
        )
    if shape[1] is not None and not 1 <= start_index <= shape[1]:
        raise ValueError(
            "`start_index` must be in [1, max_length] (position 0 holds at "
            f"least a start token). Received: start_index={start_index}, "
            f"tokens.shape={shape}"
        )


def as_cache(cache):
    # None is not a loop variable on every backend; an empty tuple is.
    return () if cache is None else cache


def from_cache(cache):
    # The inverse of `as_cache`. Not `cache == ()`: a bare tensor cache
    # would compare elementwise (or raise TypeError on JAX).
    return None if isinstance(cache, tuple) and not cache else cache


def index_tensor(index):
    return ops.convert_to_tensor(index, dtype="int32")
