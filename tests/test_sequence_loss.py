"""`keras_attn.losses.sequence_loss` against NumPy loops and tfa's formula."""

import numpy as np
import pytest
from keras import ops

from keras_attn.losses import sequence_loss


def _data(seed=0, batch=3, steps=4, vocab=5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (batch, steps, vocab)).astype("float32")
    targets = rng.integers(0, vocab, (batch, steps)).astype("int32")
    weights = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0.5, 2, 1, 1]], "float32")[
        :batch, :steps
    ]
    return logits, targets, weights


def _numpy_ce(logits, targets):
    """(B, T) cross-entropy, one position at a time."""
    out = np.zeros(targets.shape)
    for b in range(targets.shape[0]):
        for t in range(targets.shape[1]):
            z = logits[b, t].astype("float64")
            out[b, t] = np.log(np.sum(np.exp(z - z.max()))) + z.max()
            out[b, t] -= z[targets[b, t]]
    return out


def _numpy_reduce(ce, w, avg_t, avg_b, sum_t, sum_b):
    loss = ce * w
    axes = tuple(
        a for a, on in ((0, avg_b or sum_b), (1, avg_t or sum_t)) if on
    )
    if not axes:
        return loss
    size = w if (avg_t or avg_b) else (w != 0).astype("float64")
    total, count = loss.sum(axis=axes), size.sum(axis=axes)
    return np.where(count > 0, total / np.where(count > 0, count, 1), 0.0)


@pytest.mark.parametrize(
    "flags",
    [
        (True, True, False, False),
        (False, False, True, True),
        (True, False, False, False),
        (False, True, False, False),
        (False, False, True, False),
        (False, False, False, True),
        (False, False, False, False),
    ],
)
def test_matches_numpy(flags):
    logits, targets, weights = _data()
    avg_t, avg_b, sum_t, sum_b = flags
    got = sequence_loss(
        logits,
        targets,
        weights,
        average_across_timesteps=avg_t,
        average_across_batch=avg_b,
        sum_over_timesteps=sum_t,
        sum_over_batch=sum_b,
    )
    expected = _numpy_reduce(_numpy_ce(logits, targets), weights, *flags)
    np.testing.assert_allclose(ops.convert_to_numpy(got), expected, rtol=1e-5)


def test_default_is_tfa_documented_log_perplexity():
    # tfa: by default "the weighted average cross-entropy (log-perplexity)
    # per symbol": sum(w * ce) / sum(w).
    logits, targets, weights = _data(seed=1)
    ce = _numpy_ce(logits, targets)
    expected = np.sum(ce * weights) / np.sum(weights)
    got = ops.convert_to_numpy(sequence_loss(logits, targets, weights))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # No weights: the plain mean; a fully masked row averages to 0.
    np.testing.assert_allclose(
        ops.convert_to_numpy(sequence_loss(logits, targets)),
        ce.mean(),
        rtol=1e-5,
    )
    zero = np.zeros_like(weights)
    zero[0] = 1
    per_row = sequence_loss(logits, targets, zero, average_across_batch=False)
    np.testing.assert_allclose(
        ops.convert_to_numpy(per_row), [ce[0].mean(), 0.0, 0.0], rtol=1e-5
    )


def test_boolean_mask_as_weights():
    logits, targets, _ = _data(seed=2)
    mask = targets != 0
    got = sequence_loss(logits, targets, mask)
    ce = _numpy_ce(logits, targets)
    np.testing.assert_allclose(
        ops.convert_to_numpy(got), ce[mask].mean(), rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sum_over_timesteps": True}, "average_across_timesteps"),
        (
            {"average_across_batch": False, "sum_over_batch": True},
            "sum_over_batch",
        ),
        ({"average_across_batch": 1}, "average_across_batch=1"),
    ],
)
def test_bad_flags(kwargs, match):
    logits, targets, weights = _data()
    with pytest.raises(ValueError, match=match):
        sequence_loss(logits, targets, weights, **kwargs)


def test_bad_shapes():
    logits, targets, weights = _data()
    with pytest.raises(ValueError, match="targets.shape"):
        sequence_loss(logits, targets[:, :2], weights)
    with pytest.raises(ValueError, match="weights.shape"):
        sequence_loss(logits, targets, weights[:, :2])
