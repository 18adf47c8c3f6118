"""The conformance check every public layer passes (DESIGN.md).

`run_layer_test` checks, on the backend of the current process:

1. config round trip (`get_config` -> `from_config` -> same config);
2. an eager call (output shapes);
3. a symbolic call: a functional model on `keras.Input`s, whose outputs equal
   the eager call's;
4. `.keras` save and load with identical outputs;
5. a jit-compiled call (XLA on JAX and TensorFlow) equal to the eager one;
6. one `fit` step with a finite loss that changes the trainable weights;
7. the dtype policies `mixed_float16`, `mixed_bfloat16` and `bfloat16` with
   finite outputs;
8. bad input raising `ValueError` (or `TypeError`) whose message matches.

Values are checked against independent references in each layer's own tests;
this helper checks that the layer behaves as a Keras layer everywhere.
"""

import dataclasses
import os
import tempfile

import keras
import numpy as np
import pytest
from keras import ops

POLICIES = ("mixed_float16", "mixed_bfloat16", "bfloat16")


@dataclasses.dataclass
class BadInput:
    """One bad-input case for `run_layer_test`.

    Attributes:
        match: regex the error message must match (name the argument!).
        init_kwargs: constructor arguments merged over the test's own.
        input_data: replaces the test's input data when given.
        call_kwargs: call arguments merged over the test's own.
        error: the exception type(s) expected.
    """

    match: str
    init_kwargs: dict = dataclasses.field(default_factory=dict)
    input_data: object = None
    call_kwargs: dict = dataclasses.field(default_factory=dict)
    error: object = (ValueError, TypeError)


def _to_numpy(outputs):
    return keras.tree.map_structure(
        lambda x: None if x is None else ops.convert_to_numpy(x), outputs
    )


def _call(layer, input_data, call_kwargs, **extra):
    if isinstance(input_data, dict):
        return layer(**input_data, **call_kwargs, **extra)
    return layer(input_data, **call_kwargs, **extra)


def _assert_all_close(actual, expected, atol, rtol, msg):
    actual = keras.tree.flatten(actual)
    expected = keras.tree.flatten(expected)
    assert len(actual) == len(expected), msg
    for a, e in zip(actual, expected):
        np.testing.assert_allclose(
            np.asarray(a, "float64"),
            np.asarray(e, "float64"),
            atol=atol,
            rtol=rtol,
            err_msg=msg,
        )


def _make_inputs(input_data):
    """`keras.Input`s shaped like the data (batch dimension free)."""

    def make(x, name=None):
        x = np.asarray(x)
        return keras.Input(shape=x.shape[1:], dtype=str(x.dtype), name=name)

    if isinstance(input_data, dict):
        # Named after their keys, so that `predict`/`fit` on the data dict
        # find them.
        return {k: make(v, name=k) for k, v in input_data.items()}
    return make(input_data)


def _functional_model(layer, input_data, call_kwargs):
    inputs = _make_inputs(input_data)
    outputs = _call(layer, inputs, call_kwargs)
    return keras.Model(inputs, outputs)


def _first(outputs):
    if isinstance(outputs, (tuple, list)):
        return outputs[0]
    if isinstance(outputs, dict):
        return next(iter(outputs.values()))
    return outputs


def _check_shapes(outputs, expected_output_shape):
    if expected_output_shape is None:
        return
    flat = keras.tree.flatten(outputs)
    shapes = (
        [expected_output_shape]
        if isinstance(expected_output_shape[0], (int, type(None)))
        else list(expected_output_shape)
    )
    assert len(flat) == len(shapes), (len(flat), shapes)
    for x, shape in zip(flat, shapes):
        assert tuple(x.shape) == tuple(shape), (tuple(x.shape), shape)


def run_layer_test(
    layer_cls,
    init_kwargs,
    input_data,
    call_kwargs=None,
    expected_output_shape=None,
    bad_inputs=(),
    run_saving=True,
    run_training=True,
    run_jit=True,
    run_mixed_precision=True,
    atol=1e-5,
    rtol=1e-5,
    custom_objects=None,
):
    """Runs the conformance checks of DESIGN.md on one layer configuration.

    Args:
        layer_cls: the layer class.
        init_kwargs: dict of constructor arguments.
        input_data: a NumPy array (the first positional call argument) or a
            dict of NumPy arrays passed to `call` by keyword.
        call_kwargs: dict of non-tensor call arguments.
        expected_output_shape: a shape, or a tuple of shapes for a tuple of
            outputs.
        bad_inputs: `BadInput` cases that must raise.
        run_saving, run_training, run_jit, run_mixed_precision: switch off a
            check that does not apply (say why in the test).
        atol, rtol: tolerances for "the same outputs" between eager,
            functional, reloaded and compiled calls.
        custom_objects: extra objects for `keras.saving.load_model`.
    """
    call_kwargs = dict(call_kwargs or {})

    # 1. Config round trip.
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    restored = layer_cls.from_config(config)
    assert restored.get_config() == config, "config round trip changed"

    # 2. Eager call.
    eager = _call(layer, input_data, call_kwargs)
    _check_shapes(eager, expected_output_shape)
    eager_np = _to_numpy(eager)
    for x in keras.tree.flatten(eager_np):
        assert np.all(np.isfinite(x)), "eager output is not finite"

    # 3. Symbolic call: a functional model around the same (built) layer.
    model = _functional_model(layer, input_data, call_kwargs)
    _assert_all_close(
        model.predict(input_data, verbose=0),
        eager_np,
        atol,
        rtol,
        "functional model differs from the eager call",
    )

    # 4. .keras save and load.
    if run_saving:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            loaded = keras.saving.load_model(
                path, custom_objects=custom_objects
            )
        _assert_all_close(
            loaded.predict(input_data, verbose=0),
            eager_np,
            atol,
            rtol,
            "reloaded .keras model differs",
        )

    # 5. jit-compiled call (XLA) on the backends that have it; before the
    # fit step, which changes the weights the eager outputs were made with.
    if run_jit and keras.backend.backend() in ("jax", "tensorflow"):
        jit_layer = layer_cls.from_config(layer.get_config())
        _call(jit_layer, input_data, call_kwargs)
        jit_layer.set_weights(layer.get_weights())
        jit_model = _functional_model(jit_layer, input_data, call_kwargs)
        jit_model.compile(jit_compile=True)
        _assert_all_close(
            jit_model.predict(input_data, verbose=0),
            eager_np,
            max(atol, 1e-4),
            max(rtol, 1e-4),
            "jit-compiled call differs from the eager call",
        )

    # 6. One fit step.
    if run_training and layer.trainable_weights:
        train_model = keras.Model(model.inputs, _first(model.outputs))
        train_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        before = [ops.convert_to_numpy(w) for w in layer.trainable_weights]
        target = np.ones_like(_first(eager_np))
        history = train_model.fit(
            input_data, target, batch_size=len(target), epochs=1, verbose=0
        )
        assert np.isfinite(history.history["loss"][0]), "fit loss not finite"
        after = [ops.convert_to_numpy(w) for w in layer.trainable_weights]
        assert any(not np.array_equal(b, a) for b, a in zip(before, after)), (
            "one fit step changed no trainable weight"
        )

    # 7. Mixed precision and bfloat16: finite outputs.
    if run_mixed_precision:
        for policy in POLICIES:
            policy_layer = layer_cls(**{**init_kwargs, "dtype": policy})
            outputs = _call(policy_layer, input_data, call_kwargs)
            for x in keras.tree.flatten(outputs):
                if x is None or not keras.backend.is_float_dtype(x.dtype):
                    continue
                x = ops.convert_to_numpy(ops.cast(x, "float32"))
                assert np.all(np.isfinite(x)), (
                    f"non-finite output under dtype policy {policy}"
                )

    # 8. Bad input.
    for case in bad_inputs:
        with pytest.raises(case.error, match=case.match):
            bad_layer = layer_cls(**{**init_kwargs, **case.init_kwargs})
            data = input_data if case.input_data is None else case.input_data
            _call(bad_layer, data, {**call_kwargs, **case.call_kwargs})
    return layer
