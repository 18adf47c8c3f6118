import numpy as np
import pytest
from keras import ops

from keras_attn.layers import RelativePositionBias
from tests.conformance import BadInput
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def test_conformance(rng):
    run_layer_test(
        RelativePositionBias,
        init_kwargs={"num_heads": 3, "num_buckets": 8, "max_distance": 16},
        # Batch 1: the bias (1, N, T, S) has no batch axis of its own.
        input_data=rng.normal(size=(1, 5, 4)).astype("float32"),
        expected_output_shape=(1, 3, 5, 5),
        bad_inputs=[
            BadInput("num_heads=0", init_kwargs={"num_heads": 0}),
            BadInput("num_buckets=2", init_kwargs={"num_buckets": 2}),
            BadInput("max_distance=-1", init_kwargs={"max_distance": -1}),
            BadInput("query.shape", input_data=np.zeros((5,), "float32")),
        ],
    )


def _reference_bucket(relative, bidirectional, num_buckets, max_distance):
    # T5's bucketing written out for one Python int (float64 logs).
    n = -relative
    bucket = 0
    if bidirectional:
        num_buckets //= 2
        bucket += num_buckets if n < 0 else 0
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return bucket + n
    large = max_exact + int(
        np.log(n / max_exact)
        / np.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    )
    return bucket + min(large, num_buckets - 1)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_bias_looks_up_table(bidirectional):
    layer = RelativePositionBias(
        num_heads=2, num_buckets=8, max_distance=12, bidirectional=bidirectional
    )
    bias = _np(layer(np.zeros((1, 7, 4), "float32")))
    table = _np(layer.relative_attention_bias)  # (num_buckets, num_heads)
    assert bias.shape == (1, 2, 7, 7)
    for i in range(7):
        for j in range(7):
            b = _reference_bucket(j - i, bidirectional, 8, 12)
            np.testing.assert_allclose(bias[0, :, i, j], table[b], atol=0)


def test_key_length_and_decoding_offset(rng):
    layer = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=12)
    full = _np(layer(np.zeros((1, 9, 4), "float32")))
    # Cross-length: 3 queries at 0..2 against 9 keys.
    cross = _np(
        layer(np.zeros((1, 3, 4), "float32"), np.zeros((1, 9, 4), "float32"))
    )
    np.testing.assert_allclose(cross, full[:, :, :3], atol=0)
    # One decoding step at position i against the cache of 9 keys.
    for i in (0, 4, 8):
        step = _np(layer.compute_bias(1, 9, start_index=i))
        np.testing.assert_allclose(step, full[:, :, i : i + 1], atol=0)


def test_weights_under_mixed_precision():
    layer = RelativePositionBias(num_heads=2, dtype="mixed_float16")
    bias = layer(np.zeros((1, 3, 4), "float32"))
    assert "float16" in str(bias.dtype)
    assert "float32" in str(layer.relative_attention_bias.dtype)
