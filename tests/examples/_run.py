"""Runs an example script on the current Keras backend.

`run_example` runs it in its own process, as a user runs it: the training
runs. `run_example_here` runs it as `__main__` in the test's process: the
`--predict` runs, which load what a training run in another process saved
(this process never built that model) and need no fresh interpreter of
their own.
"""

import contextlib
import io
import pathlib
import runpy
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


def run_example_here(name, *args):
    """Runs `examples/<name>.py *args` in this process; returns its stdout.

    As `python examples/<name>.py *args` would, but without starting an
    interpreter: the script runs as `__main__`, with its arguments in
    `sys.argv` and its directory first on `sys.path` (for the examples'
    shared modules), both restored afterwards. A second process per
    example would import Keras and the backend again: 4-9 s here for a
    `--predict` run that itself takes about a second. What a subprocess
    would check and this does not: that the run needs no other backend
    (see `tests/_subprocess.py`), and the backend's own settings (this
    process has the suite's, `tests/conftest.py`). A non-zero exit fails,
    and an exception propagates, with the output attached.
    """
    script = EXAMPLES / f"{name}.py"
    argv, path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *map(str, args)]
    sys.path.insert(0, str(EXAMPLES))
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (None, 0):
            raise AssertionError(
                f"examples/{name}.py {' '.join(map(str, args))} exited "
                f"{exit.code}\n--- stdout\n{stdout.getvalue()[-4000:]}"
            ) from exit
    except Exception as error:
        error.add_note(f"--- stdout\n{stdout.getvalue()[-4000:]}")
        raise
    finally:
        sys.argv, sys.path[:] = argv, path
    return stdout.getvalue()
