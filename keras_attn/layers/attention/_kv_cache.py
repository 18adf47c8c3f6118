"""The key/value cache of `MultiHeadAttention`: one tensor, one write."""

from keras import ops

from keras_attn import _compat


def write_kv_cache(cache, key, value, index):
    """Writes new keys and values into a cache at a position.

    Args:
        cache: `(B, 2, S_max, K, H)`, keys at `[:, 0]` and values at
            `[:, 1]` (the layout of keras-hub's `CachedMultiHeadAttention`).
        key: the new projected keys `(B, T, K, H)`.
        value: the new projected values `(B, T, K, H)`.
        index: int or scalar int tensor, the cache position of `key[:, 0]`.

    Returns:
        The updated cache `(B, 2, S_max, K, H)`.
    """
    # (B, 2, T, K, H): keys and values written with one update, so that
    # a step copies the cache once (an update of each half and a stack
    # would copy it three times where the backend does not update in place),
    # or not at all in a decoding loop that owns it (`_compat` says when).
    update = ops.stack(
        (ops.cast(key, cache.dtype), ops.cast(value, cache.dtype)), axis=1
    )
    return _compat.slice_update_owned(cache, [0, 0, index, 0, 0], update)
