"""The wheel installs with one backend only and runs.

`test_wheel_metadata_needs_no_backend` builds the wheel (offline, with the
running interpreter's setuptools) and checks that its unconditional
requirements are Keras and NumPy only: TensorFlow, JAX and PyTorch are
extras.

`test_wheel_in_a_fresh_jax_only_venv` installs that wheel with Keras and
JAX (the versions of this interpreter) into a new virtual environment
without system packages (with uv where `make install` put it beside this
interpreter; with pip otherwise, or should uv fail), runs an attention op
there against NumPy, and checks that neither TensorFlow nor PyTorch is
installed or imported. It needs the package index (or the installers'
caches): when pip reports that it cannot reach the index, the test is
skipped, and CI, which reaches it, runs it.
Both run in the JAX run of `make test` only (once per `make test`).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import keras
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="packaging is checked once per `make test`, in the JAX run",
)
# pip's words when the index cannot be reached.
OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|"
    r"Temporary failure in name resolution|Network is unreachable|"
    r"No matching distribution found"
)


def _wheel(tmp_path):
    """Builds the wheel from a copy of the sources (the tree stays clean)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "keras_attn",
        source / "keras_attn",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(dist),
            str(source),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = dist.glob("keras_attn-*.whl")
    return wheel


def _requirements(wheel):
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/METADATA")]
        metadata = archive.read(name).decode()
    return [
        line.split(":", 1)[1].strip()
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:")
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return _wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_metadata_needs_no_backend(wheel):
    unconditional = [r for r in _requirements(wheel) if ";" not in r]
    names = sorted(
        re.split(r"[<>=!\[ ]", r, maxsplit=1)[0] for r in unconditional
    )
    assert names == ["keras", "numpy"], unconditional
    with zipfile.ZipFile(wheel) as archive:
        files = archive.namelist()
    assert "keras_attn/layers/attention/multi_head_attention.py" in files
    assert not [f for f in files if f.startswith("tests/")]


# Runs in the fresh environment: an attention op against NumPy, then no
# TensorFlow or PyTorch, neither imported nor installed.
SCRIPT = """
import importlib.util
import sys

import numpy as np
import keras_attn
from keras_attn.ops import scaled_dot_product_attention

rng = np.random.default_rng(0)
q, k, v = (rng.normal(size=(1, 3, 2, 4)).astype("float32") for _ in "qkv")
out = np.asarray(scaled_dot_product_attention(q, k, v))
logits = np.einsum("btnh,bsnh->bnts", q, k) / 2.0
w = np.exp(logits - logits.max(-1, keepdims=True))
w /= w.sum(-1, keepdims=True)
np.testing.assert_allclose(out, np.einsum("bnts,bsnh->btnh", w, v), atol=1e-5)
layer = keras_attn.layers.MultiHeadAttention(num_heads=2, key_dim=4)
assert layer(q[:, :, 0], q[:, :, 0]).shape == (1, 3, 4)
for name in ("tensorflow", "torch"):
    assert name not in sys.modules, name + " was imported"
    assert importlib.util.find_spec(name) is None, name + " is installed"
print("ok", keras_attn.__file__)
"""


@pytest.mark.large
def test_wheel_in_a_fresh_jax_only_venv(wheel, tmp_path):
    import jax

    venv = tmp_path / "venv"
    python = str(venv / "bin" / "python")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True
    )
    packages = [
        str(wheel),
        f"keras=={keras.__version__}",
        f"jax[cpu]=={jax.__version__}",
    ]
    # This interpreter's pip installs into the new environment, which needs
    # no pip of its own. uv, where `make install` put it beside this
    # interpreter, goes first: from its cache it installs in ~2 s where pip
    # takes ~40 s (unpacking and byte-compiling JAX). uv does not read
    # pip's configuration (package sources on disk, say), so when it fails
    # pip tries, and pip's failure decides.
    installers = [[sys.executable, "-m", "pip", "--python", python, "install"]]
    installers[0] += ["-q", "--disable-pip-version-check"]
    uv = shutil.which("uv", path=str(pathlib.Path(sys.executable).parent))
    if uv:
        installers.insert(0, [uv, "pip", "install", "-q", "--python", python])
    for installer in installers:
        install = subprocess.run(
            installer + packages,
            capture_output=True,
            text=True,
            check=False,
        )
        if install.returncode == 0:
            break
    if install.returncode and OFFLINE.search(install.stderr):
        pytest.skip(f"no package index: {install.stderr[-300:]}")
    assert install.returncode == 0, install.stderr[-3000:]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "XLA_FLAGS")
    }
    result = subprocess.run(
        [python, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env={**env, "KERAS_BACKEND": "jax"},
        cwd=tmp_path,  # not the repository: import the installed wheel
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("ok "), result.stdout
    assert str(venv) in result.stdout
