"""Test configuration shared by every backend's run.

`make test` runs this suite once per backend (`KERAS_BACKEND=jax|tensorflow|
torch`), each in its own pytest process.
"""

import gc
import os

from tests._subprocess import single_thread_xla_flags  # imports no backend
from tests._subprocess import suite_xla_flags

# Quieter TensorFlow; set before any backend import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX compiles every new shape of every op it runs eagerly (~30 ms of CPU
# each here), and most of a JAX run's time is these compilations. One
# persistent compilation cache for the whole run, every small program
# included, lets the xdist workers and the subprocesses the tests start
# (examples, portability) reuse what another process already compiled. The
# first process to import this file (the xdist controller, or pytest itself
# without xdist) makes the directory and removes it at exit; workers and
# subprocesses inherit it through the environment. A directory set by the
# caller is kept as it is. Set before any backend import: JAX reads these
# at import time.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _jax_cache = tempfile.mkdtemp(prefix="keras_attn_jax_cache_")
    atexit.register(shutil.rmtree, _jax_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _jax_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA (JAX, and TensorFlow's jit_compile) compiles with its LLVM backend at
# optimization level 0, and on JAX with XLA CPU's older elemental kernel
# emitters rather than its MLIR fusion emitters (where the installed jaxlib
# still has them): the suite's programs are tiny and most run once or a
# few times, so code generation costs more than it saves. Level 0: a JAX
# test of cached generation spent 20 of its 27 s compiling at the default
# level, 10 of 17 s at 0. The elemental emitters then halve the compile
# time of a small eager op (a 200-op script: 19 -> 10 s;
# tests/layers/transformer/test_transformer_decoder.py: 101 -> 59 s). Both
# change how kernels are generated, not what they compute: XLA's HLO
# passes (fusion, buffer assignment: what the memory tests read) are the
# same. The first process (the xdist controller) sets them; workers and
# subprocesses inherit them; flags set by the caller are kept. Under
# pytest-xdist each worker also gets one CPU thread: `make test` runs one
# worker per core, and several multi-threaded workers on the same cores
# slow each other down many times over. Set before any backend import.
if "XLA_FLAGS" not in os.environ:
    os.environ["XLA_FLAGS"] = suite_xla_flags(os.environ.get("KERAS_BACKEND"))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["XLA_FLAGS"] = single_thread_xla_flags()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import settings  # noqa: E402

# Hypothesis budgets. `ci` (the default, `make test`): a few examples per
# property, derandomized (the same examples every run, so a failure
# reproduces), no example database, no deadline (JAX compiles each new
# shape). `fuzz` (`make fuzz`): many random examples, for local runs.
settings.register_profile(
    "ci",
    max_examples=6,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _disable_tf32(backend):
    # TF32 matmuls would loosen the 1e-5 equality tests on GPUs that have it.
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_tensor_float_32_execution(False)
    elif backend == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif backend == "jax":
        import jax

        jax.config.update("jax_default_matmul_precision", "highest")


def _one_thread_per_xdist_worker(backend):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _is_xdist_controller(config):
    """Whether this process hands the tests to xdist workers (`-n N`)."""
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and not hasattr(config, "workerinput")


def pytest_configure(config):
    # Keras and the backend are set up where tests run: in each xdist
    # worker, or in pytest's own process without xdist. The controller of
    # `-n 2` runs no test, and importing Keras there (5-7 s on TensorFlow
    # and PyTorch) would delay the start of every worker.
    if not _is_xdist_controller(config):
        import keras

        backend = keras.backend.backend()
        _disable_tf32(backend)
        _one_thread_per_xdist_worker(backend)
    config.addinivalue_line(
        "markers",
        "large: slow or memory-heavy; still runs in `make test` and CI, "
        'deselect locally with -m "not large"',
    )
    config.addinivalue_line(
        "markers",
        "requires_trainable_backend: needs gradients (every backend here has "
        "them; kept for parity with keras-hub's suites)",
    )


def pytest_collection_modifyitems(config, items):
    """Runs the files with `large` tests first, the most of them first.

    `make test` hands whole files to its two xdist workers (`--dist
    loadfile --no-loadscope-reorder`), in this order. A slow file handed
    out last keeps one worker busy while the other has nothing left; so
    the files with slow tests go first, then the others, those with the
    most tests first (xdist's own order). Within a file the order is kept.
    """
    by_file = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)

    def cost(name):
        tests = by_file[name]
        large = sum(1 for t in tests if t.get_closest_marker("large"))
        return (-large, -len(tests))

    items[:] = [t for name in sorted(by_file, key=cost) for t in by_file[name]]


def pytest_report_header(config):
    from importlib.metadata import version

    # Read without importing Keras (see pytest_configure).
    backend = os.environ.get("KERAS_BACKEND", "from keras.json")
    return f"keras {version('keras')}, backend {backend}"


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with the float32 policy and a fixed seed."""
    import keras

    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module", autouse=True)
def _freeze_what_came_before():
    """Leaves the objects made before each test file out of its collections.

    Keras, a backend and the test modules make millions of long-lived
    objects, and JAX's and Keras' caches grow with every file a worker
    runs; each full collection walks all of them. Keras calls
    `gc.collect()` for every variable a layer deletes (each quantized
    projection: ~0.15-0.25 s a call late in a worker's run), and Python's
    own full collections come often in tracing-heavy tests (a worker
    running tests/models and tests/adapters spent 27 of its ~190 s in 111
    full collections). So at the start of each file one collection frees
    what earlier files left, and `gc.freeze()` moves every object still
    alive out of the collector's sight; the file's own objects are still
    collected. Frozen objects are still freed by reference counting; only
    a reference cycle among them that dies later is never reclaimed
    (caches and session fixtures, alive for the whole run anyway).
    """
    gc.collect()
    gc.freeze()
