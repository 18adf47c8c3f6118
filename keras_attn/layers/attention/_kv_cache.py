"""The key/value cache of `MultiHeadAttention`: one tensor, one write."""

from keras import ops


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
    start = [0, index, 0, 0]
    # (B, S_max, K, H) each.
    key_cache = ops.slice_update(
        cache[:, 0, ...], start, ops.cast(key, cache.dtype)
    )
    value_cache = ops.slice_update(
        cache[:, 1, ...], start, ops.cast(value, cache.dtype)
    )
    # (B, 2, S_max, K, H)
    return ops.stack((key_cache, value_cache), axis=1)
