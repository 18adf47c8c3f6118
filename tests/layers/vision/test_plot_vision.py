"""Tests of the vision figures in `keras_attn.plot`."""

import numpy as np
import pytest
from keras import ops

pytest.importorskip("matplotlib")

from keras_attn import plot  # noqa: E402
from keras_attn.layers import PatchEmbedding  # noqa: E402


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _layer(rng, shape=(1, 8, 12, 3), **kwargs):
    layer = PatchEmbedding(kwargs.pop("patch_size", 2), 16, **kwargs)
    layer.build(shape)
    layer.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    )
    return layer


def test_patch_filter_components_are_principal_components(rng):
    layer = _layer(rng)
    kernel = _np(layer.kernel)  # (2, 2, 3, 16)
    comps = plot.patch_filter_components(layer, num_filters=5)
    assert comps.shape == (5, 2, 2, 3)
    # Independent reference: eigenvectors of the filters' covariance.
    filters = kernel.reshape(12, 16).T  # (16 filters, 12 pixels)
    centered = filters - filters.mean(axis=0)
    values, vectors = np.linalg.eigh(centered.T @ centered)
    top = vectors[:, np.argsort(values)[::-1][:5]].T  # (5, 12)
    flat = comps.reshape(5, 12)
    for got, want in zip(flat, top):
        # Same direction up to sign.
        assert abs(abs(got @ want) - 1.0) < 1e-6
    raw = plot.patch_filter_components(kernel, 3, principal_components=False)
    np.testing.assert_allclose(raw, kernel[..., :3].transpose(3, 0, 1, 2))


def test_plot_patch_filters(rng, tmp_path):
    layer = _layer(rng)
    path = tmp_path / "filters.png"
    fig = plot.plot_patch_filters(layer, num_filters=6, columns=3, path=path)
    assert path.stat().st_size > 0
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 6
    comps = plot.patch_filter_components(layer, 6)
    first = comps[0]
    expected = (first - first.min()) / (first.max() - first.min())
    np.testing.assert_allclose(np.asarray(images[0].get_array()), expected)
    # 1-D kernels and single-channel images draw too.
    signal = _layer(rng, shape=(1, 8, 4), patch_size=2, position=None)
    assert len(plot.plot_patch_filters(signal, num_filters=4).axes) == 4
    with pytest.raises(ValueError, match="kernel.shape"):
        plot.plot_patch_filters(np.zeros((3, 4)))


def test_position_similarity_matches_numpy(rng, tmp_path):
    layer = _layer(rng, use_class_token=True)  # grid 4 x 6
    table = _np(layer.position_embeddings)[1:]  # Class token dropped.
    norms = np.sqrt((table**2).sum(axis=1))
    expected = (table @ table.T) / np.outer(norms, norms)
    np.testing.assert_allclose(
        plot.position_similarity(layer), expected, atol=1e-6
    )
    path = tmp_path / "similarity.png"
    fig = plot.plot_position_similarity(layer, path=path)
    assert path.stat().st_size > 0
    tiles = [ax for ax in fig.axes if ax.images][:24]
    assert len(tiles) == 24
    # Tile 7 is patch (1, 1): its similarity to every patch, as a grid.
    np.testing.assert_allclose(
        np.asarray(tiles[7].images[0].get_array()),
        expected[7].reshape(4, 6),
        atol=1e-6,
    )
    # The same from a table with its class token row.
    np.testing.assert_allclose(
        plot.position_similarity(layer.position_embeddings, class_token=True),
        expected,
        atol=1e-6,
    )


def test_position_similarity_bad_input(rng):
    layer = _layer(rng, position=None)
    with pytest.raises(ValueError, match="position=None"):
        plot.position_similarity(layer)
    with pytest.raises(ValueError, match="grid_size"):
        plot.plot_position_similarity(np.ones((10, 4)), grid_size=(3, 3))


def test_plot_attention_rollout(rng, tmp_path):
    images = rng.uniform(size=(3, 8, 8, 1))
    maps = rng.dirichlet(np.ones(16), size=3).reshape(3, 4, 4)
    path = tmp_path / "rollout.png"
    fig = plot.plot_attention_rollout(images, maps, path=path)
    assert path.stat().st_size > 0
    overlay = fig.axes[3 + 1]  # Row 2, column 2: image and map.
    np.testing.assert_allclose(
        np.asarray(overlay.images[1].get_array()), maps[1]
    )
    single = plot.plot_attention_rollout(images[0, ..., 0], maps[0])
    assert len(single.axes) == 2
    with pytest.raises(ValueError, match="rollout_map.shape"):
        plot.plot_attention_rollout(images, maps[:2])
