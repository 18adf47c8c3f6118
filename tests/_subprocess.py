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
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
NO_TENSORFLOW = pathlib.Path(__file__).resolve().parent / "_no_tensorflow"
# XLA's LLVM backend at optimization level 0, the suite's compile setting
# on every backend (why: tests/conftest.py, which sets it before any
# backend import; hence no Keras import at this module's top).
FAST_COMPILE = "--xla_backend_optimization_level=0"
# XLA CPU's older elemental kernel emitters instead of its MLIR fusion
# emitters: half the compile time of a small program. Added on JAX where
# the installed jaxlib has the flag (XLA aborts on a flag it does not know,
# and jaxlib 0.11 removed this one); see `suite_xla_flags`.
ELEMENTAL_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
SINGLE_THREAD = "--xla_cpu_multi_thread_eigen=false"


def suite_xla_flags(backend):
    """The suite's `XLA_FLAGS` on `backend`: see `tests/conftest.py`."""
    if backend != "jax":
        return FAST_COMPILE
    flags = f"{FAST_COMPILE} {ELEMENTAL_EMITTERS}"
    probe = subprocess.run(
        [sys.executable, "-c", "import jax; jax.numpy.zeros(1).sum()"],
        env=dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu"),
        capture_output=True,
        timeout=300,
    )
    return flags if probe.returncode == 0 else FAST_COMPILE


def single_thread_xla_flags():
    """This process's `XLA_FLAGS` with XLA CPU's matmuls on one thread."""
    flags = os.environ.get("XLA_FLAGS", "")
    if SINGLE_THREAD.split("=")[0] not in flags:
        flags = f"{flags} {SINGLE_THREAD}".strip()
    return flags


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
