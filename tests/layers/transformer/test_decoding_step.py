"""The plain cached step of `TransformerDecoder` against its generic path.

A cached call without masks, scores or cross-attention runs the block's
sublayers by their `call` (`_decoding_step.py`); with a Python index on
PyTorch it attends the cache prefix, otherwise it masks the whole cache.
An all-True padding mask sends the same call down the generic path, which
is checked against keras-hub elsewhere (`test_transformer_decoder.py`);
here the two paths must give the same outputs and caches.
"""

import numpy as np
import pytest
from keras import ops

from keras_attn.layers import TransformerDecoder

ATOL = 1e-5
BATCH, LENGTH, WIDTH = 2, 6, 8


def _np(x):
    return ops.convert_to_numpy(x)


def _block(rng, **kwargs):
    layer = TransformerDecoder(16, 4, **kwargs)
    layer.build((None, None, WIDTH))
    layer.set_weights(
        [
            rng.standard_normal(w.shape).astype("float32") * 0.5
            for w in layer.weights
        ]
    )
    return layer


def _steps(layer, x, tensor_index, generic):
    """Outputs of a 3-token prefill and three one-token steps, and cache."""
    num_kv = layer.num_key_value_heads or layer.num_heads
    cache = np.zeros((BATCH, 2, LENGTH, num_kv, WIDTH // 4), "float32")
    outputs = []
    for start, stop in ((0, 3), (3, 4), (4, 5), (5, 6)):
        index = start
        if tensor_index:
            index = ops.convert_to_tensor(start, "int32")
        kwargs = {}
        if generic:
            # A mask that masks nothing: the plain step takes no mask.
            kwargs["decoder_padding_mask"] = np.ones((BATCH, LENGTH), bool)
        output, cache = layer(
            x[:, start:stop],
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            **kwargs,
        )
        outputs.append(_np(output))
    return np.concatenate(outputs, axis=1), _np(cache)


@pytest.mark.parametrize(
    "options",
    [
        {"normalize_first": True},
        {"normalize_first": False, "gated": True, "num_key_value_heads": 2},
        {"normalize_first": True, "norm": "rms_norm", "activation": "gelu"},
    ],
)
@pytest.mark.parametrize("tensor_index", [False, True])
def test_plain_step_equals_generic_path(rng, options, tensor_index):
    layer = _block(rng, **options)
    assert layer._plain_step_sizes is not None  # the plain step applies
    x = rng.standard_normal((BATCH, LENGTH, WIDTH)).astype("float32")
    plain = _steps(layer, x, tensor_index, generic=False)
    generic = _steps(layer, x, tensor_index, generic=True)
    np.testing.assert_allclose(plain[0], generic[0], atol=ATOL)
    np.testing.assert_allclose(plain[1], generic[1], atol=ATOL)
    # Causal: the steps equal the uncached call on the whole sequence.
    np.testing.assert_allclose(plain[0], _np(layer(x)), atol=1e-4)


def test_plain_step_with_lora_equals_generic_path(rng):
    layer = _block(rng, normalize_first=True)
    layer.enable_lora(2)
    # LoRA starts as a no-op (B = 0): make it change the outputs.
    for weight in layer.weights:
        if "lora" in weight.path:
            weight.assign(
                rng.standard_normal(weight.shape).astype("float32") * 0.3
            )
    x = rng.standard_normal((BATCH, LENGTH, WIDTH)).astype("float32")
    plain = _steps(layer, x, False, generic=False)
    generic = _steps(layer, x, False, generic=True)
    np.testing.assert_allclose(plain[0], generic[0], atol=ATOL)
    np.testing.assert_allclose(plain[1], generic[1], atol=ATOL)
    np.testing.assert_allclose(plain[0], _np(layer(x)), atol=1e-4)


def test_blocks_the_plain_step_does_not_cover():
    # Positions inside attention, a sliding window, cross-attention and
    # query/key options take the generic path (their own tests).
    for kwargs, shapes in (
        ({"position": "rotary"}, ((None, None, WIDTH),)),
        ({"sliding_window": 3}, ((None, None, WIDTH),)),
        ({}, ((None, None, WIDTH), (None, None, WIDTH))),
    ):
        layer = TransformerDecoder(16, 4, **kwargs)
        layer.build(*shapes)
        assert layer._plain_step_sizes is None


def test_plain_step_rejects_a_bad_cache(rng):
    layer = _block(rng)
    x = np.zeros((BATCH, 1, WIDTH), "float32")
    with pytest.raises(ValueError, match="cache"):
        layer(
            x,
            self_attention_cache=np.zeros((BATCH, 2, 4, 3, 2), "float32"),
            self_attention_cache_update_index=0,
        )
    with pytest.raises(ValueError, match="index"):
        layer(
            x,
            self_attention_cache=np.zeros((BATCH, 2, 4, 4, 2), "float32"),
            self_attention_cache_update_index=4,
        )


def test_plain_step_under_mixed_precision(rng):
    # The block's autocast scope covers the sublayers' `call`.
    layer = _block(rng, normalize_first=True, dtype="mixed_float16")
    x = rng.standard_normal((BATCH, LENGTH, WIDTH)).astype("float16")
    plain = _steps(layer, x, False, generic=False)
    generic = _steps(layer, x, False, generic=True)
    assert plain[0].dtype == np.float16
    np.testing.assert_allclose(plain[0], generic[0], atol=2e-2)
