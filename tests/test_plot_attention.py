"""Tests of keras_attn.plot.plot_attention."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_attn.plot import plot_attention  # noqa: E402


def test_plot_attention_draws_the_weights(tmp_path, rng):
    weights = rng.dirichlet(np.ones(5), size=3)  # (T=3, S=5)
    path = tmp_path / "alignment.png"
    fig = plot_attention(weights, list("abcde"), ["x", "y", "z"], path=path)
    assert path.stat().st_size > 0
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.images[0].get_array(), weights)
    assert [t.get_text() for t in ax.get_xticklabels()] == list("abcde")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]


def test_plot_attention_bad_input(rng):
    with pytest.raises(ValueError, match="weights"):
        plot_attention(np.ones((2, 3, 4)), "abcd", "abc")
    with pytest.raises(ValueError, match="source_tokens"):
        plot_attention(np.ones((3, 4)), "abc", "abc")


def test_plotting_leaves_the_callers_backend_and_pyplot_alone(rng):
    import matplotlib
    import matplotlib.pyplot as plt

    from keras_attn import plot

    before = matplotlib.get_backend()
    # A backend other than Agg, which the module used to force.
    matplotlib.use("svg", force=True)
    try:
        open_figures = plt.get_fignums()
        plot.plot_attention(rng.dirichlet(np.ones(4), size=2), "abcd", "xy")
        plot.plot_position_encoding(sequence_length=8, hidden_dim=8)
        assert matplotlib.get_backend() == "svg"
        assert plt.get_fignums() == open_figures
    finally:
        matplotlib.use(before, force=True)
