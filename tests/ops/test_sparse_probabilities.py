"""Tests of ops.sparsemax and ops.hardmax against NumPy references."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.ops import hardmax
from keras_attn.ops import sparsemax


def np_sparsemax(z, mask=None):
    """Projection onto the simplex by bisection on the threshold `tau`.

    Independent of the sort-based closed form of the library: finds `tau`
    with `sum(max(z - tau, 0)) == 1` over the kept positions.
    """
    z = np.asarray(z, "float64")
    mask = np.ones(z.shape, bool) if mask is None else np.asarray(mask, bool)
    out = np.zeros_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row, keep = z[index], mask[index]
        if not keep.any():
            continue
        kept = row[keep]
        lo, hi = kept.max() - 1.0, kept.max()
        for _ in range(200):
            tau = (lo + hi) / 2
            if np.maximum(kept - tau, 0).sum() > 1:
                lo = tau
            else:
                hi = tau
        out[index] = np.where(keep, np.maximum(row - tau, 0), 0)
    return out


def np_sparsemax_jacobian(p):
    """`diag(s) - s s^T / |S|` of Martins and Astudillo, `s` the support."""
    s = (p > 0).astype("float64")
    return np.diag(s) - np.outer(s, s) / s.sum()


def _np(x):
    return ops.convert_to_numpy(x).astype("float64")


def test_sparsemax_matches_numpy(rng):
    z = rng.standard_normal((3, 4, 7)).astype("float32") * 2
    mask = rng.random((3, 4, 7)) > 0.3
    mask[0, 0] = False  # a fully masked row
    mask[1, 1] = [True] + [False] * 6  # one position left
    got = _np(sparsemax(z, mask=mask))
    np.testing.assert_allclose(got, np_sparsemax(z, mask), atol=1e-5)
    assert (got[0, 0] == 0).all()
    np.testing.assert_allclose(got[1, 1], [1, 0, 0, 0, 0, 0, 0], atol=1e-6)
    # Without a mask, on another axis.
    got = _np(sparsemax(z, axis=1))
    ref = np.moveaxis(np_sparsemax(np.moveaxis(z, 1, -1)), -1, 1)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # It is sparse: some weights are exactly 0 in this draw.
    assert (got == 0).any()


def test_sparsemax_float16_and_paper_example():
    z = np.array([[0.1, 1.2, 0.9, -1.0]], "float16")
    got = sparsemax(z)
    assert ops.convert_to_numpy(got).dtype == np.float16
    np.testing.assert_allclose(_np(got), [[0.0, 0.65, 0.35, 0.0]], atol=2e-3)


def test_sparsemax_gradient_matches_closed_form(rng):
    z = rng.standard_normal((5,)).astype("float32")
    weights = rng.standard_normal((5,)).astype("float32")
    p = np_sparsemax(z)
    expected = np_sparsemax_jacobian(p).T @ weights  # d(w . p) / dz
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad = jax.grad(lambda x: (sparsemax(x) * weights).sum())(z)
    elif backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(z)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(sparsemax(x) * weights)
        grad = tape.gradient(loss, x)
    else:
        import torch

        x = torch.tensor(z, requires_grad=True)
        (sparsemax(x) * torch.tensor(weights)).sum().backward()
        grad = x.grad
    np.testing.assert_allclose(_np(grad), expected, atol=1e-5)


def test_hardmax_matches_numpy(rng):
    z = rng.standard_normal((4, 6)).astype("float32")
    mask = rng.random((4, 6)) > 0.4
    mask[2] = False
    mask[3, 0] = True
    got = _np(hardmax(z, mask=mask))
    ref = np.zeros((4, 6))
    for i in range(4):
        if mask[i].any():
            ref[i, np.argmax(np.where(mask[i], z[i], -np.inf))] = 1
    np.testing.assert_array_equal(got, ref)
    got = _np(hardmax(z, axis=0))
    np.testing.assert_array_equal(got, np.eye(4)[np.argmax(z, 0)].T)


@pytest.mark.parametrize("fn", [sparsemax, hardmax])
def test_bad_mask_and_axis(fn):
    z = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match="mask"):
        fn(z, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="axis"):
        fn(z, axis=2)
