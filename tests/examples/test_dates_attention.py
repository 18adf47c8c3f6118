"""examples/dates_attention.py: the pipeline runs, learns, and the saved
model answers the same when --predict loads it."""

import importlib.util
import json
import pathlib

import pytest

from tests.examples._run import EXAMPLES
from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _load():
    path = EXAMPLES / "dates_attention.py"
    spec = importlib.util.spec_from_file_location("dates_attention", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tagged(output, tag):
    for line in output.splitlines():
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1 :])
    raise AssertionError(f"no {tag} line in:\n{output[-3000:]}")


def test_locale_patterns_and_held_out_days():
    module = _load()
    import datetime

    day = datetime.date(2026, 11, 25)
    # Hand-written expectations of the CLDR patterns the data uses.
    assert module.write_date(day, "en_US", "short") == "11/25/26"
    assert module.write_date(day, "fr_FR", "full") == (
        "mercredi 25 novembre 2026"
    )
    assert module.write_date(day, "de_DE", "short") == "25.11.26"
    assert ("es_ES", "short") not in module.FORMATS
    assert len(module.FORMATS) == 30
    (train_texts, train_isos, _), (_, test_isos, _) = module.make_data(
        0, 2000, 300
    )
    assert not set(train_isos) & set(test_isos)
    assert all("1950-01-01" <= iso <= "2049-12-31" for iso in test_isos)


@pytest.mark.large
def test_quick_run_learns_and_predict_matches(tmp_path):
    output = run_example("dates_attention", "--quick", "--out", tmp_path)
    result = _tagged(output, "RESULT")
    for name, model in result["models"].items():
        assert model["loss"][-1] < model["loss"][0], name
    assert pathlib.Path(tmp_path, "dates_attention.keras").exists()
    samples = result["samples"]
    output = run_example_here(
        "dates_attention", "--out", tmp_path, "--predict", *samples
    )
    assert _tagged(output, "PREDICT") == samples
