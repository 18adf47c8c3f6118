"""examples/multimodal_contrastive.py runs, learns, and its saved model
retrieves alike when --predict loads it."""

import json

import numpy as np
import pytest

from tests.examples._espeak import espeak  # noqa: F401
from tests.examples._run import run_example
from tests.examples._run import run_example_here

# An example process trains, then --predict runs here: over 20 s.
# Without espeak-ng: skipped, or failed where CI is set (tests/examples/
# _espeak.py).
pytestmark = [pytest.mark.large, pytest.mark.usefixtures("espeak")]


def parse(stdout, tag):
    line = next(x for x in stdout.splitlines() if x.startswith(tag + " "))
    return json.loads(line[len(tag) + 1 :])


def test_quick_run_and_predict(tmp_path):
    out = tmp_path / "out"
    stdout = run_example("multimodal_contrastive", "--quick", "--out", out)
    result = parse(stdout, "RESULT")
    assert result["loss"][-1] < result["loss"][0]
    for value in result["recall_at_1"].values():
        assert 0.0 <= value <= 1.0
    assert (out / "multimodal_contrastive.keras").exists()

    # --predict (run in this process, which never built the model) loads
    # the saved model (spectrogram and tokenizer inside) and retrieves the
    # same words for the same spoken numbers.
    stdout = run_example_here(
        "multimodal_contrastive",
        "--predict",
        *result["demo_numbers"],
        "--voice",
        result["demo_voice"],
        "--out",
        out,
    )
    predicted = parse(stdout, "PREDICT")
    np.testing.assert_allclose(
        predicted["similarity"],
        result["demo_similarity"],
        rtol=1e-4,
        atol=1e-4,
    )
    assert predicted["answers"] == result["demo_answers"]
