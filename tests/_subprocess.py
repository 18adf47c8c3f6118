"""The environment of the subprocesses that the tests start.

A subprocess on JAX or PyTorch runs as in an install with only that
backend: TensorFlow cannot be imported there (the `tensorflow` package of
`tests/_no_tensorflow/`, put first on `PYTHONPATH`, raises `ImportError`).
With TensorFlow installed, as it is for the suite's TensorFlow run, Keras'
`set_random_seed` and keras-hub import it in every process, whatever the
backend: ~5 s of CPU per process here, and nothing on the other backends
needs it. It also checks what a JAX- or PyTorch-only user relies on: that
the examples and benchmarks do not need TensorFlow.
"""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_TENSORFLOW = pathlib.Path(__file__).resolve().parent / "_no_tensorflow"
# XLA's LLVM backend at optimization level 0, the suite's compile setting
# (why: tests/conftest.py, which sets it before any backend import; hence
# no Keras import at this module's top).
FAST_COMPILE = "--xla_backend_optimization_level=0"


def backend_env(backend=None, **variables):
    """`os.environ` for a child on `backend` (default: this run's).

    Args:
        backend: `"jax"`, `"tensorflow"` or `"torch"`; sets `KERAS_BACKEND`.
        **variables: more environment variables, set last.
    """
    if backend is None:
        import keras

        backend = keras.backend.backend()
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    paths = [str(ROOT)]
    if backend != "tensorflow":
        paths.insert(0, str(NO_TENSORFLOW))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(variables)
    return env
