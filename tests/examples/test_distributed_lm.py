"""examples/distributed_lm.py: on JAX, the --quick run on 8 virtual devices
(data- and model-parallel training agree with one device) and --predict on
the saved model; on TensorFlow and PyTorch, the clear JAX-only message and
a clean exit."""

import json

import keras
import pytest

from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _result(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, stdout[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.large
def test_distributed_lm_quick(tmp_path):
    out = tmp_path / "out"
    stdout = run_example(
        "distributed_lm", "--devices", "8", "--quick", "--out", out
    )
    result = _result(stdout)
    if keras.backend.backend() != "jax":
        assert "runs on the JAX backend only" in stdout
        assert result == {"skipped": keras.backend.backend()}
        return
    assert result["devices"] == 8 and result["mesh"] == [2, 4]
    runs = result["runs"]
    single = runs["single device"]
    data, model = runs["DataParallel (8)"], runs["ModelParallel (2x4)"]
    for run in (data, model):
        # Same batches, same initial weights: the same training, up to
        # float rounding in the order of the reductions.
        assert run["max_weight_diff"] < 1e-4
        assert abs(run["bits_per_char"] - single["bits_per_char"]) < 1e-3
    # Data parallel replicates the weights; model parallel holds about a
    # quarter of the split ones (norms and output biases replicated).
    assert data["weight_bytes_per_device"] == single["weight_bytes_per_device"]
    assert (
        model["weight_bytes_per_device"] < 0.4 * data["weight_bytes_per_device"]
    )
    assert result["same_generation"] is True

    predicted = _result(
        run_example_here("distributed_lm", "--out", out, "--predict", *PROMPTS)
    )
    assert predicted["completions"] == result["completions"]


PROMPTS = ["def ", "for ", "if n", "    "]
