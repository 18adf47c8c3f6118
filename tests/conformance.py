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
   finite outputs (a compiled `predict`);
8. bad input raising `ValueError` (or `TypeError`) whose message matches;
9. an unknown sequence length: a functional model on `keras.Input`s whose
   sequence axes are None, `predict` at two lengths (three on TensorFlow,
   which retraces with a relaxed None length at the second one and runs
   that graph at the third), and on TensorFlow a jit-compiled (XLA)
   `predict` at two lengths, each equal to the eager call at that length
   (JAX's `predict` is XLA-compiled already).

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


def _make_inputs(input_data, free_axes=None):
    """`keras.Input`s shaped like the data (batch dimension free).

    `free_axes` (as `sequence_axes` of `run_layer_test`) names the axes
    made None as well.
    """

    def make(x, axes, name=None):
        x = np.asarray(x)
        shape = [None if axis in axes else d for axis, d in enumerate(x.shape)]
        return keras.Input(shape=shape[1:], dtype=str(x.dtype), name=name)

    if isinstance(input_data, dict):
        # Named after their keys, so that `predict`/`fit` on the data dict
        # find them.
        free_axes = free_axes or {}
        return {
            k: make(v, free_axes.get(k, ()), name=k)
            for k, v in input_data.items()
        }
    return make(input_data, free_axes or ())


def _functional_model(layer, input_data, call_kwargs, free_axes=None):
    inputs = _make_inputs(input_data, free_axes)
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


def _sequence_axes(input_data, sequence_axes):
    """Resolves `sequence_axes="auto"`: axis 1 of a lone (B, T[, D]) array."""
    if sequence_axes != "auto":
        return sequence_axes or None
    if isinstance(input_data, dict) or np.ndim(input_data) not in (2, 3):
        return None
    return (1,)


def _at_length(input_data, sequence_axes, length):
    """The data cut to `length` along its sequence axes."""

    def cut(x, axes):
        index = tuple(
            slice(0, length) if axis in axes else slice(None)
            for axis in range(np.ndim(x))
        )
        return np.asarray(x)[index]

    if isinstance(input_data, dict):
        return {
            k: cut(v, sequence_axes.get(k, ())) for k, v in input_data.items()
        }
    return cut(input_data, sequence_axes)


def _default_lengths(input_data, sequence_axes):
    if isinstance(input_data, dict):
        sizes = [
            np.shape(input_data[k])[axis]
            for k, axes in sequence_axes.items()
            for axis in axes
        ]
    else:
        sizes = [np.shape(input_data)[axis] for axis in sequence_axes]
    size = min(sizes)
    if size < 3:
        raise ValueError(
            "The unknown-length check cuts the data to up to three lengths "
            "(T, T - 1, T - 2 on TensorFlow): give "
            "sequences of length >= 3 or `lengths`. Received: sequence "
            f"length {size}"
        )
    # TensorFlow traces `predict` anew at the second length with that axis
    # relaxed to None; the third length runs the relaxed graph. JAX
    # compiles each length on its own and PyTorch runs eagerly, so there a
    # third length checks nothing the second did not (and on JAX costs an
    # eager call and a compile of every op of the layer).
    if keras.backend.backend() == "tensorflow":
        return (size, size - 1, size - 2)
    return (size, size - 1)


def check_unknown_length(
    layer,
    input_data,
    call_kwargs=None,
    sequence_axes="auto",
    lengths=None,
    run_jit=True,
    atol=1e-5,
    rtol=1e-5,
):
    """Check 9 of `run_layer_test` on its own, for one (built) layer.

    A functional model on `keras.Input`s whose `sequence_axes` are None;
    its `predict` at each of `lengths` (and a jit-compiled `predict` at the
    first two on TensorFlow; on JAX `predict` is compiled with XLA anyway)
    equals the eager call at that length.
    Arguments as in `run_layer_test`.
    """
    call_kwargs = dict(call_kwargs or {})
    sequence_axes = _sequence_axes(input_data, sequence_axes)
    if sequence_axes is None:
        raise ValueError(
            "Give `sequence_axes` for this data. Received: sequence_axes=None"
        )
    lengths = lengths or _default_lengths(input_data, sequence_axes)
    data = [_at_length(input_data, sequence_axes, n) for n in lengths]
    eager = [_to_numpy(_call(layer, d, call_kwargs)) for d in data]
    model = _functional_model(layer, input_data, call_kwargs, sequence_axes)
    for n, d, expected in zip(lengths, data, eager):
        _assert_all_close(
            model.predict(d, verbose=0),
            expected,
            atol,
            rtol,
            f"functional model with a None length differs at length {n}",
        )
    # On JAX, `model.predict` above already was XLA-compiled (step 5 of
    # `run_layer_test`).
    if run_jit and keras.backend.backend() == "jax":
        assert model.jit_compile, "JAX's predict was not XLA-compiled"
    elif run_jit and keras.backend.backend() == "tensorflow":
        jit_model = _functional_model(
            layer, input_data, call_kwargs, sequence_axes
        )
        jit_model.compile(jit_compile=True)
        for n, d, expected in list(zip(lengths, data, eager))[:2]:
            _assert_all_close(
                jit_model.predict(d, verbose=0),
                expected,
                max(atol, 1e-4),
                max(rtol, 1e-4),
                f"jit-compiled call with a None length differs at length {n}",
            )


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
    sequence_axes="auto",
    lengths=None,
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
        sequence_axes: the axes of unknown length for check 9: a tuple of
            axes for array data, a dict `{input name: tuple of axes}` for
            dict data, or None to skip the check (say why in the test).
            `"auto"` (the default) is `(1,)` for a `(B, T)` or `(B, T, D)`
            array and skips the check otherwise.
        lengths: the lengths of check 9 (the data is cut to each along
            `sequence_axes`, so each is at most the data's; the jit check
            uses the first two). Defaults to the data's length `T` and
            `T - 1`, and `T - 2` on TensorFlow.
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
    # On JAX, Keras compiles `predict` with XLA by default: step 3 already
    # compared an XLA-compiled call with the eager one.
    if run_jit and keras.backend.backend() == "jax":
        assert model.jit_compile, "JAX's predict was not XLA-compiled"
    elif run_jit and keras.backend.backend() == "tensorflow":
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

    # 9. (before the fit step, for the same reason) Unknown length.
    if _sequence_axes(input_data, sequence_axes) is not None:
        check_unknown_length(
            layer,
            input_data,
            call_kwargs,
            sequence_axes,
            lengths,
            run_jit,
            atol,
            rtol,
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

    # 7. Mixed precision and bfloat16: finite outputs. Through a compiled
    # `predict` (the eager path is step 2's): on JAX an eager call compiles
    # each op of the layer anew for each policy, several times the cost.
    if run_mixed_precision:
        for policy in POLICIES:
            policy_layer = layer_cls(**{**init_kwargs, "dtype": policy})
            policy_model = _functional_model(
                policy_layer, input_data, call_kwargs
            )
            outputs = policy_model.predict(input_data, verbose=0)
            for x in keras.tree.flatten(outputs):
                # (str: NumPy does not count bfloat16 as a float type.)
                if x is None or not keras.backend.is_float_dtype(str(x.dtype)):
                    continue
                x = np.asarray(x, "float32")
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
