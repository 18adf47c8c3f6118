"""examples/spoken_digits.py runs, learns, and its saved model answers alike."""

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
    stdout = run_example("spoken_digits", "--quick", "--out", out)
    result = parse(stdout, "RESULT")
    assert result["loss"][-1] < result["loss"][0]
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (out / "spoken_digits.keras").exists()

    # --predict (run in this process, which never built the model) loads
    # the saved model (spectrogram included) and answers the same words in
    # the same voice with the same logits.
    stdout = run_example_here(
        "spoken_digits",
        "--predict",
        *result["demo_words"],
        "--voice",
        result["demo_voice"],
        "--out",
        out,
    )
    predicted = parse(stdout, "PREDICT")
    want = np.array(result["demo_logits"])
    np.testing.assert_allclose(predicted["logits"], want, rtol=1e-4, atol=1e-4)
    digits = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
    ]
    assert predicted["answers"] == [digits[i] for i in want.argmax(-1)]
