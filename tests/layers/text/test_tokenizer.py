import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import Tokenizer
from tests.conformance import BadInput
from tests.conformance import run_layer_test

TEXTS = ["one two three", "two three", "three"]


def _word_tokenizer(**kwargs):
    tokenizer = Tokenizer(unit="word", **kwargs)
    tokenizer.adapt(TEXTS)
    return tokenizer


def test_adapt_orders_by_frequency_then_token():
    # Counts: three 3, two 2, one 1 -> ids 4, 5, 6 after the reserved 0..3.
    tokenizer = _word_tokenizer()
    assert tokenizer.get_vocabulary() == [
        "<pad>", "<start>", "<end>", "<unk>", "three", "two", "one",
    ]  # fmt: skip
    assert tokenizer.vocabulary_size == 7
    assert (tokenizer.pad_id, tokenizer.start_id) == (0, 1)
    assert (tokenizer.end_id, tokenizer.unknown_id) == (2, 3)
    # Characters: ties ("a" 2, "b" 2) in sorted order after the most common.
    chars = Tokenizer()
    chars.adapt(["abc c", "bac"])
    # c 3, a 2, b 2, " " 1
    assert chars.get_vocabulary(include_special_tokens=False) == [
        "c", "a", "b", " ",
    ]  # fmt: skip


def test_word_encode_decode_hand_written():
    tokenizer = _word_tokenizer()
    ids = tokenizer.encode(["three two", "one four one"], add_end=True)
    assert ids.dtype == np.int32
    np.testing.assert_array_equal(ids, [[4, 5, 2, 0], [6, 3, 6, 2]])
    assert tokenizer.decode(ids) == ["three two", "one <unk> one"]
    ids = tokenizer.encode("two  one ", add_start=True, add_end=True)
    np.testing.assert_array_equal(ids, [[1, 5, 6, 2]])
    assert tokenizer.decode(ids[0]) == ["two one"]


def test_character_round_trip_and_unknown():
    tokenizer = Tokenizer(vocabulary=list("abc "))  # ids 4, 5, 6, 7
    ids = tokenizer.encode(["ab c", "cz"], sequence_length=6, add_start=True)
    np.testing.assert_array_equal(ids, [[1, 4, 5, 7, 6, 0], [1, 6, 3, 0, 0, 0]])
    assert tokenizer.decode(ids) == ["ab c", "c<unk>"]
    assert tokenizer.decode(ids, skip_special=False) == [
        "<start>ab c<pad>",
        "<start>c<unk><pad><pad><pad>",
    ]


def test_decode_stops_at_first_end_token():
    tokenizer = Tokenizer(vocabulary=list("xy"))  # x 4, y 5
    ids = np.array([[1, 4, 2, 5, 5], [5, 0, 4, 0, 0]])
    assert tokenizer.decode(ids) == ["x", "yx"]
    assert tokenizer.decode(ids, skip_special=False) == [
        "<start>x<end>yy",
        "y<pad>x<pad><pad>",
    ]


def test_padding_and_truncation_keep_start_and_end():
    tokenizer = Tokenizer(vocabulary=list("abcdef"))  # a 4 ... f 9
    ids = tokenizer.encode(
        ["abcdef", "ab"], sequence_length=5, add_start=True, add_end=True
    )
    np.testing.assert_array_equal(ids, [[1, 4, 5, 6, 2], [1, 4, 5, 2, 0]])
    ids = tokenizer.encode(["abcdef", ""], sequence_length=3)
    np.testing.assert_array_equal(ids, [[4, 5, 6], [0, 0, 0]])
    # Without a length: padded to the longest row.
    assert tokenizer.encode(["a", "abc", ""]).shape == (3, 3)


def test_lowercase_and_max_vocabulary_size():
    tokenizer = Tokenizer(unit="word", lowercase=True, max_vocabulary_size=6)
    tokenizer.adapt(["Un DEUX trois", "deux Trois", "TROIS"])
    assert tokenizer.get_vocabulary(include_special_tokens=False) == [
        "trois",
        "deux",
    ]
    np.testing.assert_array_equal(
        tokenizer.encode(["TROIS Deux UN"]), [[4, 5, 3]]
    )


def test_config_round_trip_carries_vocabulary():
    tokenizer = _word_tokenizer(lowercase=True, mask_zero=True, name="tok")
    config = tokenizer.get_config()
    assert config["vocabulary"] == ["three", "two", "one"]
    restored = Tokenizer.from_config(config)
    assert restored.get_vocabulary() == tokenizer.get_vocabulary()
    assert (restored.unit, restored.lowercase) == ("word", True)
    assert restored.mask_zero and restored.name == "tok"


def test_keras_file_carries_vocabulary(rng):
    tokenizer = Tokenizer(name="tokenizer")
    tokenizer.adapt(["hello world", "mercredi 25 novembre"])
    inputs = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(tokenizer.vocabulary_size, 4)(tokenizer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    ids = tokenizer.encode(["hello", "novembre 25"], add_end=True)
    expected = ops.convert_to_numpy(model(ids))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
    same = loaded.get_layer("tokenizer")
    assert same.get_vocabulary() == tokenizer.get_vocabulary()
    new_ids = same.encode(["hello", "novembre 25"], add_end=True)
    np.testing.assert_array_equal(new_ids, ids)
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(new_ids)), expected, atol=1e-6
    )
    assert same.decode(new_ids) == ["hello", "novembre 25"]


def test_call_is_identity_on_ids():
    ids = np.array([[5, 4, 0], [6, 0, 0]], "int64")
    out = Tokenizer(vocabulary=list("abc"))(ids)
    assert keras.backend.standardize_dtype(out.dtype) == "int32"
    np.testing.assert_array_equal(ops.convert_to_numpy(out), ids)


class _ToFeatures(keras.layers.Layer):
    """(B, T) ids -> (B, T, 1) floats, passing the Keras mask through."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, token_ids):
        return ops.expand_dims(ops.cast(token_ids, "float32"), -1)


def test_mask_zero_masks_padding():
    ids = np.array([[5, 4, 0], [6, 0, 0]], "int32")
    tokenizer = Tokenizer(vocabulary=list("abc"), mask_zero=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(tokenizer.compute_mask(ids)), ids != 0
    )
    # Downstream: a masked mean over the ids themselves only sees real ones.
    inputs = keras.Input((None,), dtype="int32")
    x = _ToFeatures()(tokenizer(inputs))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling1D()(x))
    np.testing.assert_allclose(
        ops.convert_to_numpy(model(ids))[:, 0], [4.5, 6.0], atol=1e-6
    )
    assert Tokenizer(vocabulary=list("abc")).compute_mask(ids) is None


def test_conformance():
    ids = np.array([[4, 5, 6, 2], [6, 3, 0, 0]], "int32")
    run_layer_test(
        Tokenizer,
        init_kwargs={"vocabulary": ["three", "two", "one"], "unit": "word"},
        input_data=ids,
        expected_output_shape=(2, 4),
        bad_inputs=[
            BadInput("unit='sentence'", init_kwargs={"unit": "sentence"}),
            BadInput(
                "max_vocabulary_size=4",
                init_kwargs={"max_vocabulary_size": 4},
            ),
            BadInput("vocabulary", init_kwargs={"vocabulary": "abc"}),
            BadInput(
                "token_ids.dtype=float32",
                input_data=ids.astype("float32"),
            ),
        ],
    )


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"vocabulary": ["a", "a"]}, ValueError, "'a' \\(repeated\\)"),
        ({"vocabulary": ["ab"]}, ValueError, "one character.*'ab'"),
        ({"vocabulary": ["<unk>"], "unit": "word"}, ValueError, "reserved"),
        ({"vocabulary": [""], "unit": "word"}, ValueError, "non-empty"),
        ({"vocabulary": ["a b"], "unit": "word"}, ValueError, "whitespace"),
        ({"vocabulary": [1, 2]}, TypeError, "vocabulary"),
        ({"max_vocabulary_size": 0}, ValueError, "max_vocabulary_size=0"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Tokenizer(**kwargs)


def test_bad_encode_decode_arguments():
    tokenizer = Tokenizer(vocabulary=list("ab"))
    with pytest.raises(TypeError, match="texts=5"):
        tokenizer.encode(5)
    with pytest.raises(TypeError, match="`texts`.*int"):
        tokenizer.encode(["a", 3])
    with pytest.raises(ValueError, match="sequence_length=0"):
        tokenizer.encode(["a"], sequence_length=0)
    with pytest.raises(ValueError, match="sequence_length=1"):
        tokenizer.encode(["a"], sequence_length=1, add_start=True, add_end=True)
    with pytest.raises(ValueError, match="adapt"):
        Tokenizer().encode(["a"])
    with pytest.raises(TypeError, match="texts"):
        tokenizer.adapt(None)
    with pytest.raises(ValueError, match="token_ids.*\\[0, 6\\).*6"):
        tokenizer.decode(np.array([[4, 6]]))
    with pytest.raises(ValueError, match="token_ids.*-1"):
        tokenizer.decode(np.array([-1, 4]))
    with pytest.raises(ValueError, match="token_ids.shape"):
        tokenizer.decode(np.zeros((1, 2, 3), "int32"))
    with pytest.raises(ValueError, match="token_ids.dtype"):
        tokenizer.decode(np.array([[4.0, 5.0]]))
