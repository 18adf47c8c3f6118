"""examples/char_lm.py: the --quick pipeline, and --predict on the saved
model answering as the model did right after training."""

import json
import math

import pytest

from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _result(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.large
def test_char_lm_quick_trains_and_predicts_the_same(tmp_path):
    out = tmp_path / "out"
    result = _result(run_example("char_lm", "--quick", "--out", out))

    # Untrained, both models are near uniform over the vocabulary; a few
    # dozen steps must already bring them well below that.
    for name in ("transformer", "lstm"):
        r = result[name]
        assert r["initial_bpc"] > 5.0
        assert r["bpc"] < r["initial_bpc"] - 1.0
    # Same parameter budget (within 5%).
    ratio = result["lstm"]["parameters"] / result["transformer"]["parameters"]
    assert 0.95 <= ratio <= 1.0
    # The bigram baseline, recomputed here from its definition, must lie
    # between a certain next character (0 bits) and a uniform guess.
    assert 0.0 < result["bigram_bpc"] < math.log2(100)
    # Cached and uncached decoding draw the same sample with the same seed.
    assert result["same_sample"] is True
    assert result["cached_seconds"] > 0 and result["uncached_seconds"] > 0

    prompts = ["def ", "for ", "if n", "    "]
    assert [c[: len(p)] for c, p in zip(result["completions"], prompts)] == (
        prompts
    )
    predicted = _result(
        run_example_here("char_lm", "--out", out, "--predict", *prompts)
    )
    assert predicted["completions"] == result["completions"]
