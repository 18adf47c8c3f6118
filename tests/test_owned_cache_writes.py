"""`_compat.slice_update_owned`: the cache write of decoding loops.

Inside `decoding_owns_caches()` (what `generate()` runs under) an eager
PyTorch write with Python int starts updates the cache in place; anywhere
else it is `ops.slice_update`, which leaves its input alone. Either way
the values are those of a NumPy slice assignment.
"""

import contextlib

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn._compat import decoding_owns_caches
from keras_attn._compat import inference_mode
from keras_attn._compat import slice_update_owned

TORCH = keras.backend.backend() == "torch"


def _write(index_kind, owned, no_grad):
    """`(result, the given cache after the write, original, expected)`."""
    rng = np.random.default_rng(0)
    original = rng.standard_normal((2, 2, 6, 3, 4)).astype("float32")
    update = rng.standard_normal((2, 2, 1, 3, 4)).astype("float32")
    expected = original.copy()
    expected[:, :, 4:5] = update
    index = 4 if index_kind == "int" else ops.convert_to_tensor(4, "int32")
    # A copy: the tensor may share the NumPy array's memory.
    cache = ops.convert_to_tensor(original.copy())
    owner = decoding_owns_caches() if owned else contextlib.nullcontext()
    gradients = inference_mode() if no_grad else contextlib.nullcontext()
    with gradients, owner:
        result = slice_update_owned(
            cache, [0, 0, index, 0, 0], ops.convert_to_tensor(update)
        )
    result, given = ops.convert_to_numpy(result), ops.convert_to_numpy(cache)
    return result, given, original, expected


@pytest.mark.parametrize("index_kind", ["int", "tensor"])
def test_owned_write_in_a_decoding_loop(index_kind):
    result, given, original, expected = _write(index_kind, True, True)
    np.testing.assert_array_equal(result, expected)
    # In place exactly where it pays and is safe: eager PyTorch, int index.
    in_place = TORCH and index_kind == "int"
    np.testing.assert_array_equal(given, expected if in_place else original)


def test_write_outside_a_decoding_loop_is_functional():
    result, given, original, expected = _write("int", False, True)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(given, original)


def test_no_write_in_place_while_gradients_are_recorded():
    # On PyTorch an in-place write would break the autograd graph.
    result, given, original, expected = _write("int", True, False)
    np.testing.assert_array_equal(result, expected)
    np.testing.assert_array_equal(given, original)
