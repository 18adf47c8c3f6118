"""`quantize("int8")` (and `"float8"`) on the attention layer, the
feed-forward, the blocks and the models: outputs within the documented
tolerance of the float model, every projection kernel stored in int8,
`.keras` save and load, cached generation, and the weight memory."""

import warnings

import keras
import numpy as np
import pytest

from keras_attn import models
from tests.adapters._cases import CASES
from tests.adapters._cases import IDS
from tests.adapters._cases import SOURCE
from tests.adapters._cases import predict

# The tolerances documented on the docs page: the largest output error
# relative to the largest float output. int8 (per-channel absmax weights
# and inputs) measured <= 0.035 on these models on all three backends;
# float8 (e4m3, 3 mantissa bits) <= 0.13.
TOLERANCE = {"int8": 0.05, "float8": 0.2}


def _quantize(owner, mode):
    # keras.Model.quantize warns about each sublayer it cannot quantize
    # (normalizations, dropout, position tables): Keras' behaviour, not
    # checked here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        owner.quantize(mode)


def _kernels(model):
    """Paths of the projection kernels and embedding tables, by dtype."""
    found = {}
    for w in model.weights:
        leaf = w.path.rsplit("/", 1)[-1]
        if leaf in ("kernel", "embeddings") and "patch_embedding" not in w.path:
            if "position_embedding" in w.path:
                continue  # position tables stay float (not quantizable)
            found[w.path.rsplit("/", 1)[0]] = str(w.dtype)
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_int8_is_close_to_float_and_saves(name, tmp_path):
    keras.utils.set_random_seed(0)
    owner, model, inputs, _, _ = CASES[name]()
    reference = predict(model, inputs)
    float_kernels = _kernels(model)
    assert float_kernels and set(float_kernels.values()) == {"float32"}
    _quantize(owner, "int8")

    # Every projection (and token table) is now int8, none missed.
    assert _kernels(model) == {p: "int8" for p in float_kernels}
    quantized = predict(model, inputs)
    error = np.max(np.abs(quantized - reference))
    assert error <= TOLERANCE["int8"] * np.max(np.abs(reference)), error
    assert error > 0  # it did change the arithmetic

    path = tmp_path / "int8.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert _kernels(loaded) == {p: "int8" for p in float_kernels}
    np.testing.assert_allclose(predict(loaded, inputs), quantized, atol=1e-6)


@pytest.mark.parametrize(
    "name", ["FeedForward", "TransformerEncoder", "TransformerLM"]
)
def test_float8_is_close_to_float(name):
    keras.utils.set_random_seed(0)
    owner, model, inputs, _, _ = CASES[name]()
    reference = predict(model, inputs)
    _quantize(owner, "float8")
    quantized = predict(model, inputs)
    error = np.max(np.abs(quantized - reference))
    assert 0 < error <= TOLERANCE["float8"] * np.max(np.abs(reference))


@pytest.mark.parametrize("name", ["TransformerLM", "Transformer"])
def test_int8_generation_runs_with_the_cache(name):
    keras.utils.set_random_seed(0)
    model = CASES[name]()[0]
    _quantize(model, "int8")
    if name == "TransformerLM":
        prompt, kwargs = IDS[:, :3], {"max_length": 8}
    else:
        prompt, kwargs = SOURCE, {"max_length": 6, "start_token": 1}
    cached = keras.ops.convert_to_numpy(model.generate(prompt, **kwargs))
    full = keras.ops.convert_to_numpy(
        model.generate(prompt, use_cache=False, **kwargs)
    )
    assert cached.shape == (2, kwargs["max_length"])
    np.testing.assert_array_equal(cached, full)


def _nbytes(variables):
    return sum(
        int(np.prod(v.shape)) * np.dtype(str(v.dtype)).itemsize
        for v in variables
    )


def test_int8_weight_memory_is_about_four_times_smaller():
    keras.utils.set_random_seed(0)
    model = models.TransformerLM(
        vocabulary_size=256,
        max_sequence_length=32,
        num_layers=2,
        num_heads=4,
        hidden_dim=64,
        intermediate_dim=256,
    )
    model.build((None, None))
    total_before = _nbytes(model.weights)

    def quantized_part(m):
        # The kernels and token tables with their scales; biases, norms
        # and position tables are not quantized.
        return [
            w
            for w in m.weights
            if w.path.rsplit("/", 1)[-1]
            in ("kernel", "kernel_scale", "embeddings", "embeddings_scale")
            and "position_embedding" not in w.path
        ]

    before = _nbytes(quantized_part(model))
    _quantize(model, "int8")
    after = _nbytes(quantized_part(model))
    total_after = _nbytes(model.weights)
    print(
        f"int8 weight memory: quantized kernels {before} -> {after} bytes "
        f"({before / after:.2f}x), whole model {total_before} -> "
        f"{total_after} bytes ({total_before / total_after:.2f}x)"
    )
    # int8 values plus one float32 scale per output channel:
    # 4 * 64 / (64 + 4) = 3.76 for these 64-wide reductions.
    assert 3.5 < before / after <= 4.0
    assert total_before / total_after > 3.0
