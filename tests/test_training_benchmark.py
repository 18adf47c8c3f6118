"""`benchmarks/training.py --quick` runs on this backend and prints its table.

A smoke test of the benchmark (timing is never asserted): one subprocess
with tiny models, on the backend of this pytest run.
"""

import json
import pathlib
import re
import subprocess
import sys

import keras
import pytest

from tests._subprocess import backend_env

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = SCRIPT / "training.py"
BACKEND = keras.backend.backend()


# Large: the subprocess imports keras-hub (and TensorFlow on its run) and
# compiles six tiny training steps; minutes on a loaded 2-core machine.
@pytest.mark.large
def test_quick_run_prints_the_ratio_table(tmp_path):
    out = tmp_path / "training.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--backends",
            BACKEND,
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=backend_env(BENCH_THREADS="1"),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert f"### {BACKEND}" in text, text
    assert "error" not in text, text
    # One ratio row per model against keras-hub, and against torch.nn on
    # torch; every ratio a positive number.
    peers = ["keras-hub"] + (["torch.nn"] if BACKEND == "torch" else [])
    for model in ("lm", "vit"):
        for peer in peers:
            row = re.search(
                rf"^\| {model} \| [^|]+ \| ours / {re.escape(peer)} \| "
                r"([\d.]+) \| ([\d.]+) \|$",
                text,
                re.MULTILINE,
            )
            assert row, f"no {model} / {peer} row in:\n{text}"
            assert float(row[1]) > 0 and float(row[2]) > 0
    report = json.loads(out.read_text())
    (result,) = report["backends"]
    assert result["backend"] == BACKEND and result["quick"]
    kinds = {entry["model"] for entry in result["results"]}
    assert kinds == {"lm", "vit"}
    for entry in result["results"]:
        assert set(entry["seconds"]) >= {"ours"}
        for name, rate in entry["rate"].items():
            assert rate > 0 and entry["seconds"][name] > 0
        # The contenders are the same architecture: equal parameter counts.
        assert len(set(entry["params"].values())) == 1, entry["params"]
