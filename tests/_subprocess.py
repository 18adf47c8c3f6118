"""The environment of the subprocesses that the tests start.

A subprocess runs as in an install with only its own backend: the two
other backends cannot be imported there (for each, a package of that name
under `tests/_hidden_backends/<name>/`, put first on `PYTHONPATH`, raises
`ImportError`). With every backend installed, as it is for the suite,
Keras and keras-hub import the others whenever they can: TensorFlow in
Keras' `set_random_seed` and in keras-hub, whatever the backend (~5 s of
CPU per process here), and JAX in Keras' Orbax checkpoint callback on
PyTorch (~0.7 s). Hiding them checks what a user with one backend relies
on (that the examples and benchmarks need no other backend) and saves
those imports in every child.
"""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
HIDDEN_BACKENDS = pathlib.Path(__file__).resolve().parent / "_hidden_backends"
BACKENDS = ("jax", "tensorflow", "torch")
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
    others = [name for name in BACKENDS if name != backend]
    paths = [*(str(HIDDEN_BACKENDS / name) for name in others), str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.update(variables)
    return env
