"""Mask building and multi-axis folding against NumPy written out here."""

import numpy as np
import pytest
from keras import ops

from keras_attn.ops import attention_mask_from
from keras_attn.ops import cache_mask_from_step
from keras_attn.ops import fold_attention_axes
from keras_attn.ops import unfold_attention_axes


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _oracle(
    t, s, q=None, v=None, k=None, a=None, causal=False, window=None, offset=0
):
    ok = np.ones((1, t, s), bool)
    if q is not None:
        ok = ok & q[:, :, None]
    for m in (v, k):
        if m is not None:
            ok = ok & m[:, None, :]
    if a is not None:
        ok = ok & a
    i = np.arange(t)[:, None] + offset
    j = np.arange(s)[None, :]
    if causal:
        ok = ok & (j <= i)
    if window is not None:
        ok = ok & (np.abs(i - j) < window)
    return ok


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [None, 2])
@pytest.mark.parametrize("offset", [0, 3])
def test_attention_mask_from_matches_numpy(rng, causal, window, offset):
    t, s = 4, 7
    q = rng.random((2, t)) > 0.2
    v = rng.random((2, s)) > 0.3
    k = rng.random((2, s)) > 0.3
    a = rng.random((2, t, s)) > 0.2
    out = attention_mask_from(
        t,
        s,
        q,
        v,
        k,
        a,
        use_causal_mask=causal,
        sliding_window=window,
        offset=offset,
    )
    expected = _oracle(t, s, q, v, k, a, causal, window, offset)
    np.testing.assert_array_equal(
        np.broadcast_to(_np(out), expected.shape), expected
    )


def test_attention_mask_from_nothing_is_none():
    assert attention_mask_from(3, 3) is None


def test_attention_mask_from_numeric_masks(rng):
    v = (rng.random((2, 5)) > 0.5).astype("int32")
    out = attention_mask_from(3, 5, value_mask=v, use_causal_mask=True)
    expected = _oracle(3, 5, v=v.astype(bool), causal=True)
    np.testing.assert_array_equal(
        np.broadcast_to(_np(out), (2, 3, 5)), expected
    )


@pytest.mark.parametrize("start", [0, 2, 5])
def test_cache_mask_from_step(rng, start):
    step = rng.random((3, 2)) > 0.5
    out = _np(cache_mask_from_step(step, 7, start))
    expected = np.ones((3, 7), bool)
    expected[:, start : start + 2] = step
    np.testing.assert_array_equal(out, expected)
    # A traced-style index (a scalar tensor) gives the same.
    out = _np(cache_mask_from_step(step, 7, ops.convert_to_tensor(start)))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("axes", [(1,), (2,), (1, 2), (2, 3), (1, 3)])
def test_fold_attention_axes_layout(rng, axes):
    # (B, A1, A2, A3, heads, dim)
    x = rng.normal(size=(2, 3, 4, 5, 2, 6)).astype("float32")
    folded = _np(fold_attention_axes(x, axes))
    inner = (1, 2, 3)
    other = [a for a in inner if a not in axes]
    sizes = x.shape
    n_other = int(np.prod([sizes[a] for a in other]))
    length = int(np.prod([sizes[a] for a in axes]))
    assert folded.shape == (2 * n_other, length, 2, 6)
    # Element by element: batch index = (b, other indices) row-major,
    # position = attention indices row-major.
    for idx in np.ndindex(*sizes[:4]):
        b = idx[0]
        o = (
            np.ravel_multi_index(
                [idx[a] for a in other], [sizes[a] for a in other]
            )
            if other
            else 0
        )
        p = np.ravel_multi_index(
            [idx[a] for a in axes], [sizes[a] for a in axes]
        )
        np.testing.assert_array_equal(folded[b * n_other + o, p], x[idx])
    # And back: a value of another width unfolds into the query's layout.
    out = rng.normal(size=(2 * n_other, length, 2, 3)).astype("float32")
    unfolded = _np(unfold_attention_axes(out, x, axes))
    assert unfolded.shape == (2, 3, 4, 5, 2, 3)
    for idx in np.ndindex(*sizes[:4]):
        b = idx[0]
        o = (
            np.ravel_multi_index(
                [idx[a] for a in other], [sizes[a] for a in other]
            )
            if other
            else 0
        )
        p = np.ravel_multi_index(
            [idx[a] for a in axes], [sizes[a] for a in axes]
        )
        np.testing.assert_array_equal(unfolded[idx], out[b * n_other + o, p])
