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


def attention_mask_from(
    query_length,
    key_length,
    query_mask=None,
    value_mask=None,
    key_mask=None,
    attention_mask=None,
    use_causal_mask=False,
    sliding_window=None,
    offset=0,
):
    """The attention mask of a multi-head attention call, from its parts.

    The rule of `keras.layers.MultiHeadAttention`: a query attends a key
    when the query is valid, the value and key at that position are valid,
    `attention_mask` allows it, and (when asked) the key is not in the
    future and lies within the sliding window.

    Args:
        query_length: int or scalar tensor, the number of queries `T`.
        key_length: int or scalar tensor, the number of keys `S`.
        query_mask: optional mask `(B, T)` of valid queries.
        value_mask: optional mask `(B, S)` of valid values.
        key_mask: optional mask `(B, S)` of valid keys.
        attention_mask: optional mask broadcastable to `(B, T, S)`.
        use_causal_mask: bool, add `causal_mask(T, S, offset)`.
        sliding_window: positive int or None, add
            `sliding_window_mask(T, S, sliding_window, offset)`.
        offset: int or scalar tensor, the key position of query 0 for the
            causal and window masks (0: start-aligned, as Keras).

    Returns:
        A boolean mask broadcastable to `(B, T, S)` (True = may attend), or
        None when nothing is masked.

    Example:

    ```python
    import numpy as np
    from keras_attn.ops import attention_mask_from

    padding = np.array([[True, True, False]])  # (B=1, S=3)
    mask = attention_mask_from(3, 3, value_mask=padding, use_causal_mask=True)
    # [[[True, False, False],
    #   [True, True,  False],
    #   [True, True,  False]]]
    ```
    """
    masks = []
    if query_mask is not None:
        # (B, T, 1)
        masks.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
    for mask in (value_mask, key_mask):
        if mask is not None:
            # (B, 1, S)
            masks.append(ops.expand_dims(ops.cast(mask, "bool"), -2))
    masks.append(attention_mask)
    if use_causal_mask:
        # (1, T, S)
        masks.append(causal_mask(query_length, key_length, offset=offset)[None])
    if sliding_window is not None:
        # (1, T, S)
        window = sliding_window_mask(
            query_length, key_length, window=sliding_window, offset=offset
        )
        masks.append(window[None])
    return combine_masks(*masks)


def cache_mask_from_step(step_mask, cache_length, start_index):
    """A key mask over a whole cache, from the mask of the keys written now.

    A decoding step writes `T` new keys at positions `[start_index,
    start_index + T)` of a cache of `S_max` positions; its mask describes
    those keys only. The positions written by earlier steps count as valid
    here (whether they should be attended is decided by the causal mask
    and by the masks of the calls that wrote them).

    Args:
        step_mask: mask `(B, T)` of the keys written at this step.
        cache_length: int, the number of cache positions `S_max`.
        start_index: int or scalar int tensor, where the step's keys go.

    Returns:
        A boolean mask `(B, S_max)`.
    """
    step_mask = ops.cast(step_mask, "int32")
    # (B, S_max), ones, then the step's mask at its positions.
    full = ops.ones((ops.shape(step_mask)[0], cache_length), "int32")
    start = [0, ops.cast(start_index, "int32")]
    return ops.cast(ops.slice_update(full, start, step_mask), "bool")
