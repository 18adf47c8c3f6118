"""`masked_softmax` against a softmax written out in NumPy."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.ops import masked_softmax


def _numpy_masked_softmax(logits, mask, axis):
    """float64 oracle: excluded positions and fully masked rows give 0."""
    logits = np.asarray(logits, np.float64)
    keep = np.broadcast_to(np.asarray(mask, bool), logits.shape)
    shifted = np.where(keep, logits, -np.inf)
    row_max = shifted.max(axis=axis, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(keep, np.exp(logits - row_max), 0.0)
    total = e.sum(axis=axis, keepdims=True)
    return e / np.where(total > 0, total, 1.0)


def _np(x):
    return np.asarray(ops.convert_to_numpy(ops.cast(x, "float32")), "float64")


@pytest.mark.parametrize(
    "dtype, atol",
    [("float32", 1e-6), ("float16", 2e-3), ("bfloat16", 1e-2)],
)
@pytest.mark.parametrize("axis", [-1, 1])
def test_matches_numpy_with_fully_masked_rows(rng, dtype, atol, axis):
    logits = rng.normal(scale=4.0, size=(2, 5, 7)).astype("float32")
    mask = rng.random((2, 5, 7)) > 0.4
    # Fully masked rows along the softmax axis, and one fully kept.
    if axis == -1:
        mask[0, 1, :] = False
        mask[1, 4, :] = False
        mask[1, 0, :] = True
    else:
        mask[0, :, 2] = False
        mask[1, :, 6] = True
    out = masked_softmax(ops.cast(logits, dtype), mask, axis=axis)
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    out = _np(out)
    assert np.all(np.isfinite(out))
    # The oracle sees the logits as rounded to `dtype`.
    rounded = _np(ops.cast(logits, dtype))
    expected = _numpy_masked_softmax(rounded, mask, axis)
    np.testing.assert_allclose(out, expected, atol=atol)
    fully_masked = ~mask.any(axis=axis)
    assert fully_masked.any()
    np.testing.assert_array_equal(np.take(out, 0, axis=axis)[fully_masked], 0.0)
    assert np.all(out[~mask] == 0.0)


def test_large_logits_in_float16_do_not_overflow(rng):
    # exp(60000) overflows float16 and float32; the softmax must not.
    logits = np.array([[60000.0, 59990.0, -60000.0]], "float16")
    mask = np.array([[True, True, False]])
    out = _np(masked_softmax(logits, mask))
    expected = _numpy_masked_softmax(logits.astype("float64"), mask, -1)
    np.testing.assert_allclose(out, expected, atol=1e-3)


def test_broadcast_and_numeric_masks(rng):
    logits = rng.normal(size=(2, 3, 4, 6)).astype("float32")
    # (B, 1, 1, S) padding mask as 0/1 integers.
    mask = (rng.random((2, 1, 1, 6)) > 0.5).astype("int32")
    mask[1, 0, 0] = 0  # every query of batch 1 sees nothing
    out = _np(masked_softmax(logits, mask))
    np.testing.assert_allclose(
        out, _numpy_masked_softmax(logits, mask != 0, -1), atol=1e-6
    )
    np.testing.assert_array_equal(out[1], 0.0)


def test_no_mask_is_softmax(rng):
    logits = rng.normal(size=(3, 5)).astype("float32")
    out = _np(masked_softmax(logits))
    expected = _numpy_masked_softmax(logits, np.ones((3, 5), bool), -1)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_inside_a_compiled_model(rng):
    # Symbolic call and jit-compiled predict, mask as a second input.
    logits_in = keras.Input((4, 5))
    mask_in = keras.Input((4, 5), dtype="bool")
    model = keras.Model(
        [logits_in, mask_in],
        keras.layers.Lambda(lambda xs: masked_softmax(xs[0], xs[1]))(
            [logits_in, mask_in]
        ),
    )
    logits = rng.normal(size=(3, 4, 5)).astype("float32")
    mask = rng.random((3, 4, 5)) > 0.5
    mask[0, 0] = False
    out = model.predict([logits, mask], verbose=0)
    np.testing.assert_allclose(
        out, _numpy_masked_softmax(logits, mask, -1), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask": np.ones((3, 4), bool)}, "mask"),
        ({"mask": np.ones((2, 5), bool), "axis": 2}, "axis"),
        ({"mask": np.ones((2, 5), "complex64")}, "mask"),
        ({"axis": 1.0}, "axis"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    logits = np.zeros((2, 5), "float32")
    with pytest.raises(ValueError, match=match):
        masked_softmax(logits, **kwargs)
