"""Runs an example script in a subprocess on the current Keras backend."""

import pathlib
import subprocess
import sys

from tests._subprocess import backend_env
from tests._subprocess import single_thread_xla_flags

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def run_example(name, *args, timeout=600):
    """Runs `examples/<name>.py *args`; returns its stdout.

    The example runs in its own process (as a user runs it), on the backend
    of the test process, with one CPU thread so parallel test workers do not
    slow each other down, the suite's XLA compile flags (a quick run mostly
    compiles; see `tests/conftest.py`), and without
    TensorFlow on JAX and PyTorch (see `tests/_subprocess.py`). A non-zero
    exit fails with the output attached.
    """
    env = backend_env(
        OMP_NUM_THREADS="1",
        TF_NUM_INTRAOP_THREADS="1",
        TF_NUM_INTEROP_THREADS="1",
        XLA_FLAGS=single_thread_xla_flags(),
    )
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"examples/{name}.py {' '.join(map(str, args))} exited "
            f"{result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n"
            f"--- stderr\n{result.stderr[-4000:]}"
        )
    return result.stdout
