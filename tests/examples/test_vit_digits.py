"""examples/vit_digits.py: trains, learns, and its saved ViT answers alike."""

import json

import pytest

from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _tagged(output, tag):
    lines = [line for line in output.splitlines() if line.startswith(tag)]
    assert lines, f"no {tag} line in the output:\n{output[-2000:]}"
    return json.loads(lines[-1][len(tag) :])


@pytest.mark.large
def test_quick_run_learns_and_predict_repeats_the_answers(tmp_path):
    result = _tagged(
        run_example("vit_digits", "--quick", "--out", tmp_path), "RESULT "
    )
    # Both models are trained, the same size (within 5%), and learn.
    ratio = result["cnn_parameters"] / result["vit_parameters"]
    assert 0.95 < ratio < 1.05
    for run in result["runs"]:
        assert run["last_loss"] < run["first_loss"] - 0.05, run
    # Chance is 0.1; a few dozen updates are already well above it.
    assert result["vit_accuracy"] > 0.2
    assert result["cnn_accuracy"] > 0.2

    # --predict (run in this process, which never built the model) loads
    # the saved ViT and answers the same test digits with the same labels
    # as the model right after training.
    indices = [str(i) for i in result["predict_indices"]]
    answer = _tagged(
        run_example_here(
            "vit_digits", "--out", tmp_path, "--predict", *indices
        ),
        "PREDICT ",
    )
    assert answer["indices"] == result["predict_indices"]
    assert answer["labels"] == result["predict_labels"]
