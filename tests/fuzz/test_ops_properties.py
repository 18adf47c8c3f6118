"""Property-based tests of `keras_attn.ops` (hypothesis).

Random valid shapes (batch 1.., length 1.., T != S, grouped and
multi-query heads, Hv != H), random masks (all-True, all-False rows,
broadcast shapes), random biases, three dtypes and four logit scales:
every implementation gives finite outputs equal to attention written out
in NumPy (float64, `tests/ops/numpy_reference.py`) within a tolerance for
the dtype, and a query with no key gets exactly zeros. Random invalid
inputs raise a `ValueError` or `TypeError` that names the argument.

Budget: the `ci` hypothesis profile (`tests/conftest.py`) runs a few
derandomized examples per test, drawn from small sets of sizes so that
JAX compiles a bounded number of shapes; `make fuzz` runs the `fuzz`
profile (many more, random) on the three backends.
"""

import warnings

import keras
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keras import ops

from keras_attn.ops import masked_softmax
from keras_attn.ops import scaled_dot_product_attention
from tests.ops import numpy_reference as ref

# Worst-case relative error of the inputs' rounding (softmax in float32).
TOLERANCE = {"float32": 2e-5, "float16": 4e-3, "bfloat16": 3e-2}
DTYPES = tuple(TOLERANCE)
IMPLEMENTATIONS = ("reference", "fused", "chunked")


def _np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), "float64")


def _rounded(x, dtype):
    """`x` rounded to `dtype` (what the op really sees), as float64."""
    return _np(ops.convert_to_tensor(np.asarray(x, "float32"), dtype=dtype))


@st.composite
def attention_case(draw):
    batch = draw(st.sampled_from((1, 2)))
    q_len = draw(st.sampled_from((1, 3, 5)))
    k_len = draw(st.sampled_from((1, 4, 5)))
    kv_heads = draw(st.sampled_from((1, 2)))
    heads = kv_heads * draw(st.sampled_from((1, 2)))
    head_dim = draw(st.sampled_from((4, 8)))
    value_dim = draw(st.sampled_from((head_dim, 6)))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    # Logits up to ~1e3 x the unit scale and down to ~1e-3 of it.
    scale = draw(st.sampled_from((1.0, 1e-3, 30.0)))
    q = rng.normal(size=(batch, q_len, heads, head_dim)) * scale
    k = rng.normal(size=(batch, k_len, kv_heads, head_dim))
    v = rng.normal(size=(batch, k_len, kv_heads, value_dim))
    mask_kind = draw(st.sampled_from(("none", "full", "key", "all_true")))
    mask = None
    if mask_kind == "full":
        mask = rng.random((batch, heads, q_len, k_len)) > 0.4
        # An all-False row: that query may attend no key.
        mask[0, 0, draw(st.integers(0, q_len - 1))] = False
    elif mask_kind == "key":  # a padding mask (B, 1, 1, S)
        mask = rng.random((batch, 1, 1, k_len)) > 0.3
    elif mask_kind == "all_true":
        mask = np.ones((q_len, k_len), bool)
    bias = None
    if draw(st.booleans()):
        bias = rng.normal(size=(1, heads, q_len, k_len)) * 2.0
    return dict(
        q=q.astype("float32"),
        k=k.astype("float32"),
        v=v.astype("float32"),
        mask=mask,
        bias=None if bias is None else bias.astype("float32"),
        is_causal=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        chunk_size=draw(st.sampled_from((2, 3))),
    )


@given(case=attention_case())
def test_attention_paths_match_numpy(case):
    dtype = case["dtype"]
    q, k, v = (
        ops.convert_to_tensor(case[n], dtype=dtype) for n in ("q", "k", "v")
    )
    bias = case["bias"]
    if bias is not None:
        bias = ops.convert_to_tensor(bias, dtype=dtype)
    expected, _ = ref.attention(
        *(_rounded(case[n], dtype) for n in ("q", "k", "v")),
        mask=case["mask"],
        bias=None if bias is None else _np(bias),
        is_causal=case["is_causal"],
    )
    allowed = ref.allowed(
        *expected.shape[:1],
        expected.shape[2],
        expected.shape[1],
        case["k"].shape[1],
        case["mask"],
        case["is_causal"],
    )
    empty_rows = ~allowed.any(-1)  # (B, N, T)
    tol = TOLERANCE[dtype]
    for implementation in IMPLEMENTATIONS:
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            mask=case["mask"],
            bias=bias,
            is_causal=case["is_causal"],
            implementation=implementation,
            chunk_size=case["chunk_size"],
        )
        assert keras.backend.standardize_dtype(out.dtype) == dtype
        out = _np(out)
        assert np.all(np.isfinite(out)), implementation
        # Absolute error relative to the values' size: the output is a
        # convex combination of the values.
        np.testing.assert_allclose(
            out,
            expected,
            atol=tol * max(1.0, np.abs(expected).max()),
            rtol=tol,
            err_msg=f"{implementation}, {dtype}",
        )
        # A query with no key at all: exactly zeros.
        b, n, t = np.nonzero(empty_rows)
        np.testing.assert_array_equal(out[b, t, n], 0.0)


@st.composite
def softmax_case(draw):
    shape = draw(st.sampled_from(((1, 1), (3, 5), (2, 1, 4))))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from((1.0, 1e3, 1e-4)))
    logits = (rng.normal(size=shape) * scale).astype("float32")
    mask = rng.random(shape) > 0.4
    if draw(st.booleans()):
        mask[(0,) * (len(shape) - 1)] = False  # a fully masked row
    return logits, mask, draw(st.sampled_from(DTYPES))


@given(case=softmax_case())
def test_masked_softmax_matches_numpy(case):
    logits, mask, dtype = case
    x = _rounded(logits, dtype)
    e = np.where(
        mask, np.exp(x - np.where(mask, x, -np.inf).max(-1, keepdims=True)), 0.0
    )
    total = e.sum(-1, keepdims=True)
    expected = np.where(total > 0, e / np.where(total > 0, total, 1.0), 0.0)
    out = masked_softmax(ops.convert_to_tensor(logits, dtype=dtype), mask)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    out = _np(out)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, expected, atol=TOLERANCE[dtype], rtol=0)
    np.testing.assert_array_equal(out[~mask.any(-1)], 0.0)


# Invalid inputs: each case breaks one thing and names the argument.
def _valid():
    rng = np.random.default_rng(0)
    return dict(
        query=rng.normal(size=(2, 3, 4, 8)).astype("float32"),
        key=rng.normal(size=(2, 5, 2, 8)).astype("float32"),
        value=rng.normal(size=(2, 5, 2, 8)).astype("float32"),
    )


def _break(kind, which, rng):
    args = _valid()
    if kind == "rank":
        args[which] = args[which][..., 0]
    elif kind == "batch":
        args[which] = args[which][:1]
    elif kind == "heads":
        args[which] = np.concatenate([args[which]] * 3, axis=2)[:, :, :3]
    elif kind == "head_size":
        args[which] = args[which][..., :5]
    elif kind == "mask_shape":
        args["mask"] = rng.random((2, 4, 3, 4)) > 0.5
        which = "mask"
    elif kind == "mask_dtype":
        args["mask"] = rng.random((3, 5)).astype("float32")
        which = "mask"
    elif kind == "bias_shape":
        args["bias"] = rng.normal(size=(2, 3, 3, 5)).astype("float32")
        which = "bias"
    elif kind == "dtype":
        args[which] = args[which].astype("float16")
    return args, which


@pytest.mark.parametrize(
    "kind, which",
    [
        ("rank", "query"),
        ("rank", "key"),
        ("rank", "value"),
        ("batch", "key"),
        ("batch", "value"),
        ("heads", "query"),
        ("heads", "value"),
        ("head_size", "key"),
        ("mask_shape", None),
        ("mask_dtype", None),
        ("bias_shape", None),
        ("dtype", "key"),
        ("dtype", "value"),
    ],
)
def test_attention_invalid_input_names_the_argument(kind, which):
    args, name = _break(kind, which, np.random.default_rng(1))
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        scaled_dot_product_attention(**args)


@given(
    name=st.sampled_from(("chunk_size", "dropout_rate", "implementation")),
    value=st.one_of(
        st.integers(-3, 0), st.floats(1.0, 5.0), st.text(max_size=3)
    ),
)
def test_attention_invalid_option_names_the_argument(name, value):
    with pytest.raises((ValueError, TypeError), match=f"`?{name}`?"):
        scaled_dot_product_attention(**_valid(), **{name: value})


# Failures the properties found, kept as regular tests.
def test_one_key_gives_weight_one_without_a_warning():
    # Found by test_attention_paths_match_numpy (S == 1, no mask): the
    # unmasked softmax went through `keras.ops.softmax`, which warns that
    # an axis of size 1 "always returns 1" -- a valid attention to one key.
    logits = np.array([[[0.3]], [[-2.0]]], "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = masked_softmax(logits)
    np.testing.assert_array_equal(_np(out), 1.0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mixed_dtypes_are_a_type_error(implementation):
    # Found by test_attention_invalid_input_names_the_argument: a float16
    # `key` with a float32 `query` was a RuntimeError inside PyTorch's
    # einsum on the reference path, and elsewhere gave an output dtype that
    # depended on the implementation.
    args = _valid()
    args["key"] = args["key"].astype("float16")
    with pytest.raises(TypeError, match=r"`key` must have the dtype"):
        scaled_dot_product_attention(**args, implementation=implementation)
