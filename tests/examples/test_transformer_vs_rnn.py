"""examples/transformer_vs_rnn.py: the --quick run produces the table, the
figures and sane values."""

import json

import numpy as np
import pytest

from tests.examples._run import run_example


@pytest.mark.large
def test_transformer_vs_rnn_quick_table_and_figures(tmp_path):
    out, figures = tmp_path / "out", tmp_path / "figures"
    stdout = run_example(
        "transformer_vs_rnn", "--quick", "--out", out, "--figures", figures
    )
    line = [s for s in stdout.splitlines() if s.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT ") :])

    table = (out / "transformer_vs_rnn.md").read_text()
    for row in (
        "| parameters |",
        "| sequential computation |",
        "| parallel computation |",
        "| long-term dependencies |",
        "| scalability |",
    ):
        assert row in table
    assert table.strip() in stdout
    for name in ("accuracy", "scaling"):
        assert (figures / f"transformer_vs_rnn_{name}.png").stat().st_size > 0

    lengths = result["lengths"]
    transformer, lstm = result["transformer"], result["lstm"]
    # The same parameter budget: the LSTM is the largest one that fits.
    assert 0.9 <= lstm["parameters"] / transformer["parameters"] <= 1.0
    for model in (transformer, lstm):
        assert all(0.0 <= a <= 1.0 for a in model["accuracy"])
        assert len(model["step_seconds"]) == len(lengths)
        assert all(s > 0 for s in model["step_seconds"])
        assert model["single_step_seconds"] > 0
        assert all(np.isfinite(model["gradient_init"]))
        # Training lowers the loss: the last steps against the first ones
        # (each cycle of steps covers every length once).
        cycle = len(lengths)
        losses = model["losses"]
        assert np.mean(losses[-2 * cycle :]) < np.mean(losses[: 2 * cycle])
    # Vanishing gradients: what reaches the LSTM's first input shrinks with
    # the length, by orders of magnitude over 16 -> 64 steps; attention
    # reaches position 0 in one step at every length.
    init = lstm["gradient_init"]
    assert all(b < a for a, b in zip(init, init[1:]))
    assert init[-1] < 1e-2 * init[0]
    attention = transformer["gradient_init"]
    assert attention[-1] > 1e-2 * attention[0]
