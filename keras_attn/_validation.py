"""Argument checks shared by every op, layer and model (private).

Each check runs on Python values, shapes and dtypes only, so it raises a
`ValueError` (or `TypeError`) naming the argument and what was received
before any backend op runs. Library code calls these instead of writing its
own: one message per rule, one place to change it. (The checks of token
ids, which read values in eager calls, are in `_validation_tokens.py`.)
"""

import numbers

import keras


def is_positive_int(value):
    return (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value > 0
    )


def check_positive_int(name, value, allow_none=False):
    """Returns `value` as a Python int, or raises naming the argument."""
    if value is None and allow_none:
        return None
    if not is_positive_int(value):
        raise ValueError(
            f"`{name}` must be a positive integer"
            f"{' or None' if allow_none else ''}. Received: {name}={value!r}"
        )
    return int(value)


def _check_scalar(name, value, allow_none, types, accept, description):
    """`value` is a number of `types` (never a bool) that `accept`s."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not (
        isinstance(value, types) and accept(value)
    ):
        raise ValueError(
            f"`{name}` must be {description}. Received: {name}={value!r}"
        )
    return value


def check_non_negative_int(name, value, allow_none=False):
    value = _check_scalar(
        name,
        value,
        allow_none,
        numbers.Integral,
        lambda v: v >= 0,
        "a non-negative integer",
    )
    return None if value is None else int(value)


def check_positive_number(name, value, allow_none=False):
    return _check_scalar(
        name,
        value,
        allow_none,
        numbers.Real,
        lambda v: v > 0,
        "a positive number",
    )


def check_rate(name, value, allow_none=False):
    """A dropout-style rate in `[0, 1)`."""
    return _check_scalar(
        name,
        value,
        allow_none,
        numbers.Real,
        lambda v: 0.0 <= v < 1.0,
        "a float in [0, 1)",
    )


def check_positive_ints(**values):
    """Each keyword argument is a positive int; the first bad one raises."""
    for name, value in values.items():
        check_positive_int(name, value)


def check_heads_divide(hidden_dim, num_heads):
    """`hidden_dim` splits evenly into `num_heads` heads."""
    if hidden_dim % num_heads:
        raise ValueError(
            "`hidden_dim` must be a multiple of `num_heads`. Received: "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}"
        )


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. Received: "
            f"{name}={value!r}"
        )
    return value


def check_pair(name, value):
    """A positive int or a pair of them, as a tuple of two ints."""
    pair = (value, value) if is_positive_int(value) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(is_positive_int(v) for v in pair)
    ):
        raise ValueError(
            f"`{name}` must be a positive integer or a pair of positive "
            f"integers. Received: {name}={value!r}"
        )
    return tuple(int(v) for v in pair)


def check_texts(name, value):
    """A string or a sequence of strings, as a list of strings.

    A single string is a batch of one. NumPy arrays of strings are accepted.
    """
    if isinstance(value, str):
        return [value]
    if isinstance(value, (bytes, dict, set)) or not hasattr(value, "__len__"):
        raise TypeError(
            f"`{name}` must be a string or a sequence of strings. Received: "
            f"{name}={value!r}"
        )
    items = list(value)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(
                f"`{name}` must be a string or a sequence of strings; found "
                f"an item of type {type(item).__name__}. Received: "
                f"{name}={value!r}"
            )
    return items


def static_shape(x):
    """`x.shape` with every dimension unknown at trace time as None.

    (JAX traces an unknown size as a symbolic dimension, not None.)
    """
    return tuple(d if isinstance(d, int) else None for d in x.shape)


def dtype_name(x):
    """The standard dtype name of a tensor ("int32", "bool", ...)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return type(x).__name__
    return keras.backend.standardize_dtype(dtype)


def dims_differ(a, b):
    """Whether two dimensions are both known and different."""
    return a is not None and b is not None and a != b


def shapes_compatible(shape, expected):
    """Same rank, and every dimension known on both sides equal."""
    return len(shape) == len(expected) and not any(
        dims_differ(a, b) for a, b in zip(shape, expected)
    )


def broadcastable(shape, target):
    """Whether `shape` broadcasts to `target` (None matches anything)."""
    if len(shape) > len(target):
        return False
    return all(
        dim in (1, None) or full is None or dim == full
        for dim, full in zip(reversed(shape), reversed(target))
    )


def check_rank(name, x, ranks, description=None):
    """`x` has one of `ranks` (an int or a tuple of ints)."""
    ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
    if len(x.shape) not in ranks:
        what = f" {description}" if description else ""
        raise ValueError(
            f"`{name}` must have rank {' or '.join(map(str, ranks))}{what}. "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_last_dim(name, x, expected, argument=None):
    """The feature axis of `x` equals the size the layer was built with."""
    got = static_shape(x)[-1]
    if dims_differ(got, expected):
        source = f" (`{argument}`)" if argument else ""
        raise ValueError(
            f"`{name}` must have {expected} features on its last axis"
            f"{source}, as when the layer was built. Received: "
            f"{name}.shape={tuple(x.shape)}"
        )


def check_mask_dtype(name, mask, allow_numeric=True):
    """A mask is boolean (or 0/1 numeric where `allow_numeric`)."""
    dtype = dtype_name(mask)
    numeric = "int" in dtype or "float" in dtype
    if dtype != "bool" and not (allow_numeric and numeric):
        kind = "a boolean (or 0/1 numeric)" if allow_numeric else "a boolean"
        raise ValueError(
            f"`{name}` must be {kind} tensor. Received: {name}.dtype={dtype}"
        )


def check_integer_dtype(name, x):
    dtype = dtype_name(x)
    if "int" not in dtype:
        raise ValueError(
            f"`{name}` must be an integer tensor. Received: "
            f"{name}.dtype={dtype}"
        )


def check_axis(name, axis, rank):
    """`axis` is an int in `[-rank, rank)`; returns it non-negative."""
    if (
        isinstance(axis, bool)
        or not isinstance(axis, numbers.Integral)
        or not -rank <= axis < rank
    ):
        raise ValueError(
            f"`{name}` must be an integer in [{-rank}, {rank}) for a tensor "
            f"of rank {rank}. Received: {name}={axis!r}"
        )
    return int(axis) % rank


def check_broadcastable(name, x, target, description=None):
    """The static shape of `x` broadcasts to `target` (None matches)."""
    shape = static_shape(x)
    if not broadcastable(shape, tuple(target)):
        what = f" {description}" if description else ""
        raise ValueError(
            f"`{name}` must broadcast to{what} {tuple(target)}. Received: "
            f"{name}.shape={tuple(x.shape)}"
        )


def check_attention_inputs(query, key, value, mask=None, bias=None):
    """The inputs of `scaled_dot_product_attention`, on static shapes.

    query `(B, T, N, H)`, key `(B, S, K, H)`, value `(B, S, K, Hv)` with
    `N % K == 0`; `mask` (boolean) and `bias` broadcast to `(B, N, T, S)`.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_rank(name, x, 4, "(batch, length, heads, head_dim)")
    dtype = dtype_name(query)
    if "float" not in dtype:
        raise TypeError(
            f"`query` must be a floating-point tensor. Received: "
            f"query.dtype={dtype}"
        )
    for name, x in (("key", key), ("value", value)):
        # Mixed dtypes would be promoted differently by each implementation
        # (and rejected by PyTorch's einsum): one dtype for the three.
        if dtype_name(x) != dtype:
            raise TypeError(
                f"`{name}` must have the dtype of `query`. Received: "
                f"query.dtype={dtype}, {name}.dtype={dtype_name(x)}"
            )
    qs, ks, vs = (static_shape(x) for x in (query, key, value))
    shapes = f"query.shape={qs}, key.shape={ks}"
    if None not in (qs[0], ks[0], vs[0]) and not qs[0] == ks[0] == vs[0]:
        raise ValueError(
            "`query`, `key` and `value` must have the same batch size. "
            f"Received: {shapes}, value.shape={vs}"
        )
    if qs[3] != ks[3]:
        raise ValueError(
            "`query` and `key` must have the same head size (last axis). "
            f"Received: {shapes}"
        )
    for axis, what in ((1, "length"), (2, "number of heads")):
        if dims_differ(ks[axis], vs[axis]) or (axis == 2 and ks[2] != vs[2]):
            raise ValueError(
                f"`key` and `value` must have the same {what} (axis {axis})."
                f" Received: key.shape={ks}, value.shape={vs}"
            )
    if ks[2] is None or qs[2] is None or ks[2] == 0 or qs[2] % ks[2]:
        raise ValueError(
            "The number of `query` heads must be a multiple of the number of "
            f"`key`/`value` heads. Received: {shapes}"
        )
    target = (qs[0], qs[2], qs[1], ks[1])
    for name, x in (("mask", mask), ("bias", bias)):
        if x is not None:
            check_broadcastable(
                name,
                x,
                target,
                "(batch, num_heads, query_length, key_length) =",
            )
    if mask is not None and dtype_name(mask) != "bool":
        raise ValueError(
            "`mask` must be a boolean tensor (True = may attend). Received: "
            f"mask.dtype={dtype_name(mask)}"
        )


def check_int_tuple(name, value, positive=False):
    """An int or a non-empty list/tuple of ints, as a tuple (None kept)."""
    if value is None:
        return None
    values = (value,) if isinstance(value, numbers.Integral) else value
    if (
        not isinstance(values, (list, tuple))
        or not values
        or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool)
            for v in values
        )
        or (positive and not all(v > 0 for v in values))
    ):
        kind = "positive int" if positive else "int"
        raise ValueError(
            f"`{name}` must be a {kind}, or a non-empty list or tuple of "
            f"{kind}s. Received: {name}={value!r}"
        )
    return tuple(int(v) for v in values)


def check_attention_kernel(flash_attention, implementation, dropout):
    """The one kernel choice of an attention layer.

    `flash_attention` (Keras' argument) maps onto `implementation`: True
    means `"fused"`, so it contradicts `"reference"` and `"chunked"`; False
    and None leave the choice to `implementation`. The fused kernel applies
    no dropout. Returns the implementation to run.
    """
    check_choice(
        "implementation",
        implementation,
        ("auto", "reference", "fused", "chunked"),
    )
    if flash_attention and implementation not in ("auto", "fused"):
        raise ValueError(
            "`flash_attention=True` selects the fused kernel, which "
            "contradicts `implementation`. Pass one of the two. Received: "
            f"flash_attention={flash_attention}, "
            f"implementation={implementation!r}"
        )
    if flash_attention and dropout > 0:
        raise ValueError(
            "Dropout is not supported with flash attention. Received: "
            f"flash_attention={flash_attention}, dropout={dropout}"
        )
    return "fused" if flash_attention else implementation


def check_attention_axes(attention_axes, query_rank):
    """The attention axes of projected tensors (rank `query_rank + 1`)."""
    rank = query_rank + 1
    if attention_axes is None:
        return tuple(range(1, rank - 2))
    axes = tuple(a if a >= 0 else (rank - 1) + a for a in attention_axes)
    if any(not 1 <= a <= rank - 3 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(
            "`attention_axes` must be distinct axes of `query` other than "
            f"the batch and feature axes (1 to {query_rank - 2} for a query "
            f"of rank {query_rank}). Received: attention_axes={attention_axes}"
        )
    return tuple(sorted(axes))


def check_query_value_key(query_shape, value_shape, key_shape):
    """Ranks and known feature sizes of an attention layer's inputs."""
    rank = len(query_shape)
    if rank < 3:
        raise ValueError(
            "`query` must have rank 3 or more (batch, ..., features). "
            f"Received: query.shape={query_shape}"
        )
    for name, shape in (
        ("query", query_shape),
        ("value", value_shape),
        ("key", key_shape),
    ):
        if len(shape) != rank:
            raise ValueError(
                f"`{name}` must have the rank of `query` ({rank}). Received: "
                f"{name}.shape={shape}, query.shape={query_shape}"
            )
        if shape[-1] is None:
            raise ValueError(
                f"The last axis of `{name}` must be known. Received: "
                f"{name}.shape={shape}"
            )
    if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
        raise ValueError(
            "All axes of `value` and `key` but the last must be equal. "
            f"Received: value.shape={value_shape}, key.shape={key_shape}"
        )


def check_mask(name, mask, shape, where=""):
    """A boolean (or 0/1 numeric) mask of a given shape (None matches)."""
    if mask is None:
        return
    check_mask_dtype(name, mask)
    if not shapes_compatible(static_shape(mask), tuple(shape)):
        raise ValueError(
            f"`{name}` must have shape {tuple(shape)}{where}. Received: "
            f"{name}.shape={tuple(mask.shape)}"
        )


def check_cache_index(index, update_length, cache_length):
    """A cache write position: a non-negative int or a scalar int tensor."""
    if isinstance(index, bool) or (
        isinstance(index, numbers.Integral) and index < 0
    ):
        raise ValueError(
            "`cache_update_index` must be a non-negative integer. Received: "
            f"cache_update_index={index!r}"
        )
    if not isinstance(index, numbers.Integral):
        if len(index.shape) != 0:
            raise ValueError(
                "`cache_update_index` must be an int or a scalar tensor. "
                f"Received: cache_update_index.shape={tuple(index.shape)}"
            )
        return
    if None not in (update_length, cache_length) and (
        index + update_length > cache_length
    ):
        raise ValueError(
            "`cache_update_index` plus the length of `key`/`value` must fit "
            f"in the cache ({cache_length}). Received: "
            f"cache_update_index={index}, update length={update_length}"
        )


def check_shape(name, x, expected, description):
    """`x` has the shape `expected` (None on either side matches any size).

    `description` names the axes, e.g. "(batch, steps)".
    """
    if not shapes_compatible(static_shape(x), tuple(expected)):
        raise ValueError(
            f"`{name}` must have shape {description} = {tuple(expected)}. "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def check_float_dtype(name, x):
    dtype = dtype_name(x)
    if not keras.backend.is_float_dtype(dtype):
        raise ValueError(
            f"`{name}` must be a float tensor. Received: {name}.dtype={dtype}"
        )


def check_number(name, value, minimum=None):
    """A real number (not a bool), `>= minimum` if given; as a float."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or (minimum is not None and value < minimum)
    ):
        bound = "" if minimum is None else f" >= {minimum}"
        raise ValueError(
            f"`{name}` must be a number{bound}. Received: {name}={value!r}"
        )
    return float(value)
