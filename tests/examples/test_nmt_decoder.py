"""The port of tfa's NMT tutorial (examples/nmt_decoder.py) runs."""

import importlib.util
import pathlib

import numpy as np
import pytest

SCRIPT = (
    pathlib.Path(__file__).resolve().parents[2] / "examples" / "nmt_decoder.py"
)


def _load():
    spec = importlib.util.spec_from_file_location("nmt_decoder", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_round_trips():
    nmt = _load()
    sources, targets = nmt.make_data(0, 50)
    ids = nmt.encode(targets, nmt.TARGET_LENGTH + 1)
    assert [nmt.decode_text(row) for row in ids] == targets
    # "Tuesday, March 4, 1997" and the other formats name the same day.
    assert nmt.write_date(__import__("datetime").date(1997, 3, 4), 0) == (
        "Tuesday, March 4, 1997"
    )


# 15 s on TensorFlow, 50-60 s on JAX / PyTorch (2-core CPU, load ~16).
@pytest.mark.large
def test_trains_and_decodes_greedy_and_beam():
    nmt = _load()
    results = nmt.main(num_train=128, num_test=16, epochs=2, verbose=0)
    loss = results["loss"]
    assert np.all(np.isfinite(loss)) and loss[1] < loss[0]
    assert 0.0 <= results["greedy"] <= 1.0 and 0.0 <= results["beam"] <= 1.0
