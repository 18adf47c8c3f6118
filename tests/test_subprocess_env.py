"""`tests/_subprocess.backend_env`: a child sees its own backend only.

The children the suite starts (examples, benchmarks, portability) run as
in a one-backend install: importing either other backend fails there as
it does where that backend is not installed. Each child here only looks
the packages up and imports the hidden ones (which raise at once), so the
test costs three Python start-ups, not three backend imports.
"""

import json
import pathlib
import subprocess
import sys

import pytest

from tests._subprocess import backend_env

ALL = ("jax", "tensorflow", "torch")
HIDDEN = pathlib.Path(__file__).resolve().parent / "_hidden_backends"

PROBE = """
import importlib.util, json, sys
own, others = sys.argv[1], sys.argv[2:]
report = {"origin": {}, "errors": {}}
for name in [own, *others]:
    report["origin"][name] = importlib.util.find_spec(name).origin
for name in others:
    try:
        __import__(name)
    except ImportError as error:
        report["errors"][name] = str(error)
print(json.dumps(report))
"""


@pytest.mark.parametrize("backend", ALL)
def test_a_child_imports_no_other_backend(backend):
    others = [name for name in ALL if name != backend]
    env = backend_env(backend)
    assert env["KERAS_BACKEND"] == backend
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, backend, *others],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # The child's own backend is the installed package.
    own = pathlib.Path(report["origin"][backend])
    assert HIDDEN not in own.parents and own.exists(), own
    # Each other backend resolves to its stand-in, whose import fails.
    for name in others:
        stand_in = HIDDEN / name / name / "__init__.py"
        assert pathlib.Path(report["origin"][name]) == stand_in
        assert "hidden" in report["errors"][name]
