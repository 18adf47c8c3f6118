"""`_compat.dot_product_attention` against `keras.ops.dot_product_attention`.

On PyTorch the compatibility helper calls the kernel on strided views
(keys and values sliced from a cache, heads moved by a transpose) with
grouped heads left to the kernel; Keras' op copies them first. Both must
give the same values for each way of masking the fused path uses.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn import _compat

B, T, S, N, H = 2, 3, 7, 4, 8

# Elsewhere the helper is the Keras op itself: nothing to compare.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "torch",
    reason="the helper is keras.ops.dot_product_attention off PyTorch",
)


def _cache_slices(rng, num_kv_heads):
    # (B, 2, 10, K, H) cache; keys and values are strided views into it.
    cache = ops.convert_to_tensor(
        rng.standard_normal((B, 2, 10, num_kv_heads, H)).astype("float32")
    )
    return cache[:, 0, :S], cache[:, 1, :S]


@pytest.mark.parametrize("num_kv_heads", [4, 2, 1])
@pytest.mark.parametrize("masking", ["none", "mask", "bias", "causal"])
def test_same_as_the_keras_op(rng, num_kv_heads, masking):
    query = ops.convert_to_tensor(
        rng.standard_normal((B, T, N, H)).astype("float32")
    )
    key, value = _cache_slices(rng, num_kv_heads)
    mask = bias = None
    is_causal = False
    if masking == "mask":
        mask = ops.convert_to_tensor(rng.random((B, 1, T, S)) < 0.7)
        # Every row keeps a key (rows with none are the caller's).
        mask = ops.logical_or(
            mask, ops.convert_to_tensor(np.eye(T, S, 4, bool))
        )
    elif masking == "bias":
        bias = ops.convert_to_tensor(
            rng.standard_normal((1, N, T, S)).astype("float32")
        )
    elif masking == "causal":
        # Equal lengths: the backends' causal flag is ours there.
        key, value = key[:, :T], value[:, :T]
        is_causal = True
    # The reference gets every head spelled out (grouped heads repeated):
    # Keras' ops differ per backend in which groupings they take.
    expected_key = ops.repeat(key, N // num_kv_heads, axis=2)
    expected_value = ops.repeat(value, N // num_kv_heads, axis=2)
    expected = ops.dot_product_attention(
        query,
        expected_key,
        expected_value,
        bias=bias,
        mask=mask,
        scale=0.3,
        is_causal=is_causal,
    )
    got = _compat.dot_product_attention(
        query, key, value, bias, mask, 0.3, is_causal
    )
    np.testing.assert_allclose(
        ops.convert_to_numpy(got),
        ops.convert_to_numpy(expected),
        atol=1e-5,
    )
