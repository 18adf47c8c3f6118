"""Failures the property tests (`tests/fuzz/`) found, kept as plain tests.

Each test names the property that found it and what was wrong.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn import _compat
from keras_attn.layers import MultiHeadAttention
from keras_attn.layers import RotaryEmbedding
from keras_attn.models import RNNSeq2Seq
from keras_attn.models import Transformer
from keras_attn.models import TransformerLM

BACKEND = keras.backend.backend()


def _models():
    lm = TransformerLM(
        vocabulary_size=10, max_sequence_length=6, num_layers=1, hidden_dim=8
    )
    transformer = Transformer(
        vocabulary_size=10, max_sequence_length=6, num_layers=1, hidden_dim=8
    )
    rnn = RNNSeq2Seq(vocabulary_size=10, embedding_dim=4, hidden_dim=4)
    return {
        "lm": lambda s, t: lm(t),
        "transformer": lambda s, t: transformer(
            {"encoder_token_ids": s, "token_ids": t}
        ),
        "rnn": lambda s, t: rnn((s, t)),
    }


@pytest.mark.parametrize("value", [10, 99, -1])
def test_out_of_vocabulary_ids_are_a_value_error_in_eager_calls(value):
    # test_bad_token_ids_name_the_argument: an id >= vocabulary_size was an
    # IndexError inside PyTorch's embedding, an InvalidArgumentError on
    # TensorFlow and silently clamped on JAX; a negative id was accepted.
    ok = np.array([[1, 2, 3]], "int32")
    bad = np.array([[1, value, 3]], "int32")
    for name, call in _models().items():
        with pytest.raises(ValueError, match=r"`token_ids` must hold ids"):
            call(ok, bad)
        if name != "lm":
            with pytest.raises(ValueError, match="`encoder_token_ids`"):
                call(bad, ok)


def test_float_token_ids_are_rejected():
    # Found by the same property: float ids went into the embedding.
    ok = np.array([[1, 2]], "int32")
    for call in _models().values():
        with pytest.raises(ValueError, match="`token_ids` must be an integer"):
            call(ok, ok.astype("float32"))


def test_source_and_target_batch_sizes_must_agree():
    # The mismatch was reported deep inside MultiHeadAttention or
    # AttentionRNN, naming their arguments (`value`, `memory`).
    models = _models()
    source = np.ones((2, 3), "int32")
    target = np.ones((1, 3), "int32")
    for name in ("transformer", "rnn"):
        with pytest.raises(ValueError, match="`encoder_token_ids` and"):
            models[name](source, target)


def test_known_min_max_in_eager_calls_and_none_when_traced():
    x = np.array([[3, -2], [7, 0]], "int32")
    assert _compat.known_min_max(x) == (-2, 7)
    assert _compat.known_min_max(ops.convert_to_tensor(x)) == (-2, 7)
    assert _compat.known_min_max(keras.KerasTensor((None, 2))) is None
    seen = []
    if BACKEND == "jax":
        import jax

        jax.jit(lambda t: seen.append(_compat.known_min_max(t)) or t)(x)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        tf.function(lambda t: seen.append(_compat.known_min_max(t)) or t)(x)
    else:
        pytest.skip("PyTorch runs eagerly here (no torch.compile in tests)")
    assert seen == [None]


def test_rotary_attention_keeps_the_compute_dtype_under_mixed_precision():
    # test_attention_invalid_input_names_the_argument (mixed dtypes are now a
    # TypeError) showed that MultiHeadAttention under mixed_float16 with a
    # user's RotaryEmbedding (float32 policy) fed float32 queries and keys
    # with float16 values to the attention.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 16)).astype("float32")
    layers = {}
    for policy in ("float32", "mixed_float16"):
        layers[policy] = MultiHeadAttention(
            num_heads=2,
            key_dim=8,
            rotary_embedding=RotaryEmbedding(),
            dtype=policy,
        )
        layers[policy](x, x)
    layers["mixed_float16"].set_weights(layers["float32"].get_weights())
    mixed = layers["mixed_float16"](x, x, use_causal_mask=True)
    assert keras.backend.standardize_dtype(mixed.dtype) == "float16"
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(mixed, "float32")),
        ops.convert_to_numpy(layers["float32"](x, x, use_causal_mask=True)),
        atol=2e-2,
    )
