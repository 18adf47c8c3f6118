"""`.keras` files move between backends, and old files keep loading.

- Committed files: `tests/fixtures/keras/` holds each model saved on each
  backend, with the inputs and the saving backend's outputs in an `.npz`
  beside it. Each backend loads all of them and must give the stored
  outputs, so a change that breaks loading files saved by an earlier
  version fails. Regenerate them only on purpose (a format
  change that is announced), once per backend:
  `KERAS_BACKEND=<backend> PYTHONPATH=. python -m tests._portability save
  tests/fixtures/keras`, and `git add -f` them (`.gitignore` ignores
  `*.keras`).
- Fresh files: each backend saves the four models and each backend loads
  all of them (the 3 x 3 pairs).

`test_nine_backend_pairs` does both: JAX in the test's own process, the two
other backends in subprocesses (three in all: TensorFlow saves and loads in
one). It spawns the other backends itself, so it runs in the JAX run of
`make test` only (once per `make test`) and is skipped in the two others.
To check one file in process: `tests._portability.check_file(path)`.
"""

import glob
import os
import subprocess
import sys

import keras
import pytest

from tests import _portability
from tests._subprocess import FAST_COMPILE
from tests._subprocess import backend_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "keras")
BACKENDS = ("jax", "tensorflow", "torch")
FILES = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(FIXTURES, "*.keras"))
)


def test_every_model_has_a_fixture_per_backend():
    models = (
        "rnn_seq2seq",
        "transformer",
        "transformer_lm",
        "vision_transformer",
    )
    expected = sorted(f"{b}_{m}.keras" for b in BACKENDS for m in models)
    assert FILES == expected


def _run_backend(backend, *args):
    env = backend_env(backend, OMP_NUM_THREADS="1")
    # Multi-threaded, LLVM at optimization level 0 (see tests/conftest.py).
    env["XLA_FLAGS"] = FAST_COMPILE
    result = subprocess.run(
        [sys.executable, "-m", "tests._portability", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (
        f"{backend} {args[0]} failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    )
    return result.stdout


@pytest.mark.large
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="spawns all three backends; runs once, in the JAX run",
)
def test_nine_backend_pairs(tmp_path, capsys):
    dirs = {b: str(tmp_path / b) for b in BACKENDS}
    # Each backend saves before any backend loads, and each process start
    # costs an import of Keras and a backend: JAX (this process's backend)
    # saves and loads here, and in this order three subprocesses do the
    # rest instead of six. Every backend loads every backend's fresh files
    # and the committed ones.
    everything = [dirs["tensorflow"], dirs["jax"], dirs["torch"], FIXTURES]
    _portability.save(dirs["jax"])
    _run_backend("torch", "save", dirs["torch"])
    outputs = {
        "tensorflow": _run_backend("tensorflow", "save-load", *everything)
    }
    outputs["torch"] = _run_backend("torch", "load", *everything)
    capsys.readouterr()
    failed = _portability.load(everything)
    outputs["jax"] = capsys.readouterr().out
    assert failed == 0, outputs["jax"]
    for backend, out in outputs.items():
        # Four models saved on each of the three backends, fresh and
        # committed, loaded on this backend.
        lines = [x for x in out.splitlines() if x.startswith("ok ")]
        assert len(lines) == 24, (backend, out)
        assert all(line.split()[3] == backend + ":" for line in lines), out
