"""examples/translate_numbers.py: the pipeline runs, learns, and the saved
model answers the same when --predict loads it."""

import importlib.util
import json
import pathlib

import pytest

from tests.examples._run import EXAMPLES
from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _load():
    path = EXAMPLES / "translate_numbers.py"
    spec = importlib.util.spec_from_file_location("translate_numbers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tagged(output, tag):
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    raise AssertionError(f"no {tag} line in:\n{output[-3000:]}")


def test_held_out_numbers_never_reach_training():
    module = _load()
    train, test = module.make_splits(0, 3000, 300)
    held_out = module.held_out_mask(0)
    assert not held_out[train].any()
    assert held_out[test].all() and len(set(test)) == len(test)
    # As many numbers of each length (1 to 6 digits) in training.
    digits = [len(str(n)) for n in train]
    counts = [digits.count(d) for d in range(1, 7)]
    assert max(counts) - min(counts) <= 6, counts


def test_glossary_baseline_on_hand_made_pairs():
    module = _load()
    translate = module.glossary_baseline(
        ["one", "two", "two hundred", "three hundred", "three"],
        ["un", "deux", "deux cents", "trois cents", "trois"],
        threshold=0.5,
    )
    # Dice(two, deux) = 2*2/(2+2) = 1, Dice(hundred, cents) = 2*2/(2+2) = 1,
    # Dice(hundred, deux) = 2*1/(2+2) = 0.5: "hundred" -> "cents".
    assert translate("two hundred") == "deux cents"
    # Words never seen are dropped.
    assert translate("three one four") == "trois un"


def test_glossary_links_each_word_once():
    module = _load()
    translate = module.glossary_baseline(
        ["two hundred and", "hundred and", "hundred"],
        ["deux cent", "cent", "cent"],
        threshold=0.3,
    )
    # Dice(hundred, cent) = 2*3/(3+3) = 1 and Dice(two, deux) = 1 link
    # first; "and" (Dice 0.8 with "cent", 0.67 with "deux") finds both
    # taken and stays unlinked, so it is dropped, not made a second "cent".
    assert translate("hundred and") == "cent"
    assert translate("two hundred") == "deux cent"


@pytest.mark.large
def test_quick_run_learns_and_predict_matches(tmp_path):
    output = run_example("translate_numbers", "--quick", "--out", tmp_path)
    result = _tagged(output, "RESULT")
    assert result["loss"][-1] < result["loss"][0]
    assert pathlib.Path(tmp_path, "translate_numbers.keras").exists()
    samples = result["samples"]
    output = run_example_here(
        "translate_numbers", "--out", tmp_path, "--predict", *samples
    )
    assert _tagged(output, "PREDICT") == samples
