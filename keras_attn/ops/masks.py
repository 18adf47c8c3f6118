"""Boolean attention masks: True means "may attend".

Every mask here has shape `(T, S)` (query positions by key positions) and
broadcasts against the `(B, N, T, S)` layout of
`keras_attn.ops.scaled_dot_product_attention`.

Positions are aligned to the END of the keys by default: query `i` sits at
key position `i + offset` with `offset = S - T`. This is what a decoding step
needs: one new query against a cache of `S` keys is the last position. Pass
`offset=0` for the start-aligned convention of `keras.layers.MultiHeadAttention`
and `torch.nn.functional.scaled_dot_product_attention`; they agree when
`T == S`.
"""

from keras import ops


def _check_length(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"`{name}` must be a non-negative integer. Received: "
            f"{name}={value!r}"
        )


def _positions(query_length, key_length, offset):
    """Query positions `(T, 1)` and key positions `(1, S)` as int32."""
    if key_length is None:
        key_length = query_length
    for name, value in (
        ("query_length", query_length),
        ("key_length", key_length),
    ):
        if isinstance(value, int):
            _check_length(name, value)
    if offset is None:
        offset = key_length - query_length
    # (T, 1): the key position each query sits at.
    query_pos = ops.expand_dims(ops.arange(query_length, dtype="int32"), 1)
    query_pos = query_pos + ops.cast(offset, "int32")
    # (1, S)
    key_pos = ops.expand_dims(ops.arange(key_length, dtype="int32"), 0)
    return query_pos, key_pos


def causal_mask(query_length, key_length=None, offset=None):
    """Causal mask: query `i` may attend key `j` when `j <= i + offset`.

    Args:
        query_length: int, the number of queries `T`.
        key_length: int, the number of keys `S`. Defaults to `query_length`.
        offset: int or scalar tensor, the key position of query 0. Defaults
            to `S - T` (aligned to the end of the keys).

    Returns:
        A boolean tensor of shape `(T, S)`.

    Example:

    ```python
    from keras_attn.ops import causal_mask

    mask = causal_mask(2, 4)  # two queries, the last two of four positions
    # [[True, True, True, False],
    #  [True, True, True, True]]
    causal_mask(2, 4, offset=0)  # start-aligned, as keras.layers does
    # [[True, False, False, False],
    #  [True, True, False, False]]
    ```
    """
    query_pos, key_pos = _positions(query_length, key_length, offset)
    return ops.less_equal(key_pos, query_pos)


def sliding_window_mask(
    query_length, key_length=None, window=None, offset=None
):
    """Band mask: query `i` may attend key `j` when `|i + offset - j| < window`.

    The band is symmetric, as in `keras.layers.MultiHeadAttention`'s
    `sliding_window`; combine it with `causal_mask` for the causal sliding
    window of Mistral-style models (each query sees itself and the
    `window - 1` keys before it).

    Args:
        query_length: int, the number of queries `T`.
        key_length: int, the number of keys `S`. Defaults to `query_length`.
        window: positive int, the width of the band on each side.
        offset: int or scalar tensor, the key position of query 0. Defaults
            to `S - T`.

    Returns:
        A boolean tensor of shape `(T, S)`.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(
            f"`window` must be a positive integer. Received: window={window!r}"
        )
    query_pos, key_pos = _positions(query_length, key_length, offset)
    return ops.less(ops.abs(query_pos - key_pos), window)


def combine_masks(*masks):
    """Logical AND of boolean masks that broadcast together; `None` skipped.

    Returns `None` when every mask is `None`.
    """
    result = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        result = mask if result is None else ops.logical_and(result, mask)
    return result
