"""The demo of `make demo` trains on every backend (a smoke test)."""

import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.large
def test_quickstart_learns_the_marked_token():
    # Chance is 1/16; the full demo reaches 1.0. A third of its data and
    # epochs must already be far above chance.
    accuracy = _load("quickstart").main(num_train=1500, epochs=4)
    assert accuracy > 0.5
