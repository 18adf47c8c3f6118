"""The `"auto"` policy of `scaled_dot_product_attention` picks the kernel.

Which implementation runs is not visible in the output (they agree within
float tolerance, as tests/ops/test_attention.py checks), so these tests ask
the policy itself; the choice is a speed decision measured by
`benchmarks/training.py`.
"""

import keras
import numpy as np
import pytest

from keras_attn.ops import attention as attention_module
from keras_attn.ops import scaled_dot_product_attention
from tests.ops import numpy_reference as ref

BACKEND = keras.backend.backend()


def _tensor(shape, dtype="float32"):
    rng = np.random.default_rng(0)
    return keras.ops.convert_to_tensor(
        rng.normal(size=shape).astype("float32"), dtype
    )


def _choice(query, key, mask=None, bias=None, is_causal=True):
    return attention_module._choose_implementation(
        query, key, mask, bias, is_causal, needs_reference=False
    )


@pytest.mark.parametrize("is_causal", [True, False])
def test_plain_float32_call_takes_the_backend_kernel(is_causal):
    # (B, T, N, H) = (2, 16, 4, 8): small, under every chunking threshold.
    q = _tensor((2, 16, 4, 8))
    assert _choice(q, q, is_causal=is_causal) == "fused"


def test_masked_or_half_precision_call_keeps_the_reference_under_xla():
    q = _tensor((2, 16, 4, 8))
    mask = np.ones((2, 16, 16), bool)
    expected = "fused" if BACKEND == "torch" else "reference"
    assert _choice(q, q, mask=mask) == expected
    half = _tensor((2, 16, 4, 8), "float16")
    assert _choice(half, half) == expected


def test_auto_matches_attention_written_out_in_numpy():
    # The values of the plain causal call that now takes the kernel.
    q, k, v = (_tensor((2, 16, 4, 8)) for _ in range(3))
    out = scaled_dot_product_attention(q, k, v, is_causal=True)
    expected, _ = ref.attention(
        *(keras.ops.convert_to_numpy(x) for x in (q, k, v)), is_causal=True
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(out), expected, atol=1e-5
    )
