"""Argument checks shared by every op, layer and model (private).

Each check runs on Python values, shapes and dtypes only, so it raises a
`ValueError` (or `TypeError`) naming the argument and what was received
before any backend op runs. Library code calls these instead of writing its
own: one message per rule, one place to change it.
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


def check_non_negative_int(name, value):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 0
    ):
        raise ValueError(
            f"`{name}` must be a non-negative integer. Received: "
            f"{name}={value!r}"
        )
    return int(value)


def check_positive_number(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value > 0
    ):
        raise ValueError(
            f"`{name}` must be a positive number. Received: {name}={value!r}"
        )
    return value


def check_rate(name, value, allow_none=False):
    """A dropout-style rate in `[0, 1)`."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not (
        isinstance(value, numbers.Real) and 0.0 <= value < 1.0
    ):
        raise ValueError(
            f"`{name}` must be a float in [0, 1). Received: {name}={value!r}"
        )
    return value


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
