import numpy as np
import pytest

pytest.importorskip("matplotlib")

from keras_attn import plot  # noqa: E402


def test_plot_position_encoding_writes_png(tmp_path):
    path = tmp_path / "positions.png"
    fig = plot.plot_position_encoding(
        sequence_length=16, hidden_dim=8, path=path
    )
    assert len(fig.axes) == 4  # two panels and their color bars
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # The similarity panel shows the dot products of the table's rows.
    table = np.asarray(fig.axes[0].images[0].get_array())
    similarity = np.asarray(fig.axes[1].images[0].get_array())
    np.testing.assert_allclose(similarity, table @ table.T, atol=1e-6)


def test_plot_position_encoding_bad_kind():
    with pytest.raises(ValueError, match="kind='heat'"):
        plot.plot_position_encoding(kind="heat")
