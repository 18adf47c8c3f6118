import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers import PatchEmbedding
from keras_attn.layers.vision.patch_embedding import resize_position_grid
from tests.conformance import BadInput
from tests.conformance import check_unknown_length
from tests.conformance import run_layer_test


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _randomize(layer, rng):
    """Random values in every weight (bias, class token included)."""
    layer.set_weights(
        [rng.normal(size=w.shape).astype("float32") for w in layer.weights]
    )


def _np_patches(images, ph, pw):
    """(B, H, W, C) -> (B, gh * gw, ph * pw * C), row-major, in NumPy."""
    b, h, w, c = images.shape
    rows = []
    for i in range(h // ph):
        for j in range(w // pw):
            patch = images[:, i * ph : (i + 1) * ph, j * pw : (j + 1) * pw]
            rows.append(patch.reshape(b, -1))
    return np.stack(rows, axis=1)


def _np_bilinear(table, old, new):
    """Half-pixel bilinear resize of a (prod(old), D) grid table."""
    grid = table.reshape(*old, -1)

    def weights(n_old, n_new):
        m = np.zeros((n_new, n_old))
        for o in range(n_new):
            src = (o + 0.5) * n_old / n_new - 0.5
            src = min(max(src, 0.0), n_old - 1)
            i0 = int(np.floor(src))
            i1 = min(i0 + 1, n_old - 1)
            m[o, i0] += 1 - (src - i0)
            m[o, i1] += src - i0
        return m

    out = np.einsum("ai,ijd->ajd", weights(old[0], new[0]), grid)
    out = np.einsum("bj,ajd->abd", weights(old[1], new[1]), out)
    return out.reshape(new[0] * new[1], -1)


def _np_sincos_1d(pos, dim):
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2))
    angles = np.asarray(pos, "float64")[:, None] * omega
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


BAD_COMMON = [
    BadInput("patch_size=0", init_kwargs={"patch_size": 0}),
    BadInput(r"patch_size=\(2, 2, 2\)", init_kwargs={"patch_size": (2, 2, 2)}),
    BadInput("hidden_dim=-1", init_kwargs={"hidden_dim": -1}),
    BadInput("position='fixed'", init_kwargs={"position": "fixed"}),
    BadInput("interpolation='area'", init_kwargs={"interpolation": "area"}),
    BadInput("data_format='nhwc'", init_kwargs={"data_format": "nhwc"}),
    BadInput("use_class_token=1", init_kwargs={"use_class_token": 1}),
]


@pytest.mark.parametrize(
    "init_kwargs, shape, expected, lengths",
    [
        (
            {"patch_size": 4, "hidden_dim": 8, "use_class_token": True},
            (2, 8, 8, 1),
            (2, 5, 8),
            None,  # Learned positions need a known image size.
        ),
        (
            {"patch_size": 4, "hidden_dim": 8, "position": "sine"},
            (2, 12, 5),
            (2, 3, 8),
            None,  # Positions need a known length.
        ),
        (
            {
                "patch_size": (2, 2),
                "hidden_dim": 8,
                "position": "sine",
                "use_class_token": True,
            },
            (2, 4, 6, 2),
            (2, 7, 8),
            None,  # Positions need a known image size.
        ),
    ],
    ids=["2d_class_token", "1d_sine", "2d_sine_class"],
)
def test_conformance(rng, init_kwargs, shape, expected, lengths):
    # (`lengths` is None: see test_unknown_size for position=None.)
    data = rng.normal(size=shape).astype("float32")
    odd = list(shape)
    odd[1] += 1  # Not divisible by the patch size.
    run_layer_test(
        PatchEmbedding,
        init_kwargs=init_kwargs,
        input_data=data,
        expected_output_shape=expected,
        sequence_axes=lengths,
        bad_inputs=BAD_COMMON
        + [
            BadInput(
                r"inputs.shape=\(2, 3\)", input_data=np.zeros((2, 3), "f4")
            ),
            BadInput(
                r"patch_size=.*input size",
                input_data=np.zeros(odd, "float32"),
            ),
            BadInput(
                "rank",
                input_data=np.zeros((2, 4, 4, 4, 1), "f4"),
            ),
        ],
    )


def test_2d_sine_needs_hidden_dim_divisible_by_4():
    with pytest.raises(ValueError, match="hidden_dim=6"):
        PatchEmbedding((2, 2), 6, position="sine")


def test_patch_size_error_names_both_sizes():
    layer = PatchEmbedding(3, 4)
    with pytest.raises(ValueError, match=r"patch_size=\(3, 3\).*\(8, 9\)"):
        layer(np.zeros((1, 8, 9, 2), "float32"))


def _run(layer, x, size):
    """The layer on `x`; with size="unknown", traced with None sizes.

    Only a TensorFlow graph leaves the sizes unknown at trace time (JAX and
    PyTorch always see concrete ones), so only there the layer takes its
    strided-convolution path; it must give the reshape path's values.
    """
    if size == "known":
        return _np(layer(x))
    if keras.backend.backend() != "tensorflow":
        pytest.skip("sizes are only unknown inside a TensorFlow graph")
    import tensorflow as tf

    channels_last = layer.data_format == "channels_last"
    spec = [None] * x.ndim
    spec[-1 if channels_last else 1] = x.shape[-1 if channels_last else 1]
    traced = tf.function(
        layer, input_signature=[tf.TensorSpec(spec, "float32")]
    )
    return _np(traced(x))


SIZES = pytest.mark.parametrize("size", ["known", "unknown"])


@SIZES
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_2d_projection_matches_numpy(rng, size, data_format):
    images = rng.normal(size=(2, 6, 8, 3)).astype("float32")
    layer = PatchEmbedding((3, 2), 5, position=None, data_format=data_format)
    x = (
        images
        if data_format == "channels_last"
        else images.transpose(0, 3, 1, 2)
    )
    layer.build(x.shape)
    _randomize(layer, rng)
    kernel, bias = _np(layer.kernel), _np(layer.bias)
    assert kernel.shape == (3, 2, 3, 5)
    expected = _np_patches(images, 3, 2) @ kernel.reshape(-1, 5) + bias
    out = _run(layer, x, size)
    assert out.shape == (2, 2 * 4, 5)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Patch (1, 2) by hand: rows 3..5, columns 4..5.
    patch = images[1, 3:6, 4:6, :].reshape(-1)
    np.testing.assert_allclose(
        out[1, 1 * 4 + 2], patch @ kernel.reshape(-1, 5) + bias, atol=1e-5
    )


@SIZES
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_1d_projection_matches_numpy(rng, size, data_format):
    signal = rng.normal(size=(3, 12, 4)).astype("float32")  # (B, T, C)
    layer = PatchEmbedding(3, 6, position=None, data_format=data_format)
    x = signal if data_format == "channels_last" else signal.transpose(0, 2, 1)
    layer.build(x.shape)
    _randomize(layer, rng)
    kernel, bias = _np(layer.kernel), _np(layer.bias)
    assert kernel.shape == (3, 4, 6)
    expected = signal.reshape(3, 4, 12) @ kernel.reshape(12, 6) + bias
    np.testing.assert_allclose(_run(layer, x, size), expected, atol=1e-5)


@pytest.mark.parametrize(
    "shape, patch_size, lengths",
    [((2, 8, 8, 3), 4, (8, 4, 4)), ((2, 12, 5), 4, (12, 8, 4))],
    ids=["image", "signal"],
)
def test_unknown_size(rng, shape, patch_size, lengths):
    # Without positions, images and signals of unknown size (Conv2D's rule).
    layer = PatchEmbedding(patch_size, 8, position=None)
    data = rng.normal(size=shape).astype("float32")
    layer(data)
    check_unknown_length(
        layer,
        data,
        sequence_axes=tuple(range(1, len(shape) - 1)),
        lengths=lengths,
    )


@pytest.mark.parametrize("built, given", [(1, 3), (3, 1)])
def test_channel_count_differs_from_build(built, given):
    # Defect 2: channels were folded into the batch (a batch of 6 from 2).
    layer = PatchEmbedding(4, 8, position=None)
    layer.build((None, 32, 32, built))
    with pytest.raises(ValueError, match=f"num_channels={built}.*{given}"):
        layer(np.zeros((2, 32, 32, given), "float32"))


def test_kernel_layout_is_conv2d_layout(rng):
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    layer = PatchEmbedding(4, 7, position=None)
    layer.build(images.shape)
    _randomize(layer, rng)
    conv = keras.layers.Conv2D(7, 4, strides=4)
    conv.build(images.shape)
    conv.set_weights(layer.get_weights())
    expected = _np(conv(images)).reshape(2, 4, 7)
    np.testing.assert_allclose(_np(layer(images)), expected, atol=1e-5)


def test_class_token_first_and_positions_added(rng):
    images = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    layer = PatchEmbedding(2, 4, use_class_token=True)
    layer.build(images.shape)
    _randomize(layer, rng)
    names = [w.path.split("/")[-1] for w in layer.weights]
    assert names == ["kernel", "bias", "class_token", "position_embeddings"]
    kernel, bias, token, table = (_np(w) for w in layer.weights)
    assert table.shape == (1 + 4, 4)
    out = _np(layer(images))
    assert out.shape == (2, 5, 4)
    for b in range(2):
        np.testing.assert_allclose(out[b, 0], token[0, 0] + table[0], atol=1e-5)
    patches = _np_patches(images, 2, 2) @ kernel.reshape(-1, 4) + bias
    np.testing.assert_allclose(out[:, 1:], patches + table[1:], atol=1e-5)


def test_sine_positions_match_numpy(rng):
    images = rng.normal(size=(1, 6, 4, 1)).astype("float32")
    layer = PatchEmbedding(2, 8, position="sine", use_class_token=True)
    no_pos = PatchEmbedding(2, 8, position=None, use_class_token=True)
    no_pos.build(images.shape)
    layer.build(images.shape)
    _randomize(no_pos, rng)
    layer.set_weights(no_pos.get_weights())
    diff = _np(layer(images)) - _np(no_pos(images))
    rows, cols = np.divmod(np.arange(3 * 2), 2)  # 3 x 2 grid, row-major.
    expected = np.concatenate(
        [_np_sincos_1d(rows, 4), _np_sincos_1d(cols, 4)], axis=1
    )
    np.testing.assert_allclose(diff[0, 0], 0.0, atol=1e-6)  # Class token.
    np.testing.assert_allclose(diff[0, 1:], expected, atol=1e-5)


def test_resize_same_size_is_identity(rng):
    table = rng.normal(size=(3 * 5, 4)).astype("float32")
    for interpolation in ("bilinear", "bicubic", "nearest"):
        out = resize_position_grid(table, (3, 5), (3, 5), interpolation)
        np.testing.assert_allclose(_np(out), table, atol=1e-5)


def test_resize_bilinear_matches_numpy(rng):
    table = rng.normal(size=(2 * 3, 4)).astype("float32")
    out = resize_position_grid(table, (2, 3), (4, 5), "bilinear")
    np.testing.assert_allclose(
        _np(out), _np_bilinear(table, (2, 3), (4, 5)), atol=1e-5
    )


def test_learned_positions_interpolated_at_other_size(rng):
    small = rng.normal(size=(2, 4, 6, 3)).astype("float32")  # grid 2 x 3
    big = rng.normal(size=(2, 8, 10, 3)).astype("float32")  # grid 4 x 5
    layer = PatchEmbedding(2, 4, use_class_token=True)
    layer.build(small.shape)
    _randomize(layer, rng)
    kernel, bias, token, table = (_np(w) for w in layer.weights)
    out = _np(layer(big))
    assert out.shape == (2, 1 + 20, 4)
    # The class token keeps its position; the patch grid is resized.
    np.testing.assert_allclose(
        out[:, 0], np.broadcast_to(token[0, 0] + table[0], (2, 4)), atol=1e-5
    )
    patches = _np_patches(big, 2, 2) @ kernel.reshape(-1, 4) + bias
    expected = patches + _np_bilinear(table[1:], (2, 3), (4, 5))
    np.testing.assert_allclose(out[:, 1:], expected, atol=1e-5)
    # Back at the build size: the table itself, no resize.
    out_small = _np(layer(small))
    patches = _np_patches(small, 2, 2) @ kernel.reshape(-1, 4) + bias
    np.testing.assert_allclose(out_small[:, 1:], patches + table[1:], atol=1e-5)


def test_position_table(rng):
    layer = PatchEmbedding(2, 4, use_class_token=True)
    with pytest.raises(ValueError, match="built=False"):
        layer.position_table()
    layer.build((1, 4, 6, 3))  # grid 2 x 3
    _randomize(layer, rng)
    table = _np(layer.weights[-1])  # (1 + 6, 4)
    np.testing.assert_allclose(_np(layer.position_table()), table, atol=0)
    resized = _np(layer.position_table((4, 5)))
    np.testing.assert_allclose(resized[0], table[0], atol=0)
    np.testing.assert_allclose(
        resized[1:], _np_bilinear(table[1:], (2, 3), (4, 5)), atol=1e-5
    )
    with pytest.raises(ValueError, match="grid"):
        layer.position_table((4,))
    with pytest.raises(ValueError, match="position=None"):
        unpositioned = PatchEmbedding(2, 4, position=None)
        unpositioned.build((1, 4, 6, 3))
        unpositioned.position_table()


def test_1d_learned_positions_interpolated(rng):
    layer = PatchEmbedding(2, 4, position="learned")
    layer.build((1, 6, 2))  # 3 patches
    _randomize(layer, rng)
    kernel, bias, table = (_np(w) for w in layer.weights)
    signal = rng.normal(size=(1, 12, 2)).astype("float32")  # 6 patches
    expected = signal.reshape(1, 6, 4) @ kernel.reshape(4, 4) + bias
    expected = expected + _np_bilinear(table, (1, 3), (1, 6))
    np.testing.assert_allclose(_np(layer(signal)), expected, atol=1e-5)


def test_unknown_size_with_learned_positions_raises():
    with pytest.raises(ValueError, match="inputs.shape"):
        PatchEmbedding(2, 4)(keras.Input((None, None, 3)))


def test_unknown_size_without_positions():
    inputs = keras.Input((None, None, 3))
    outputs = PatchEmbedding(2, 4, position=None)(inputs)
    assert tuple(outputs.shape) == (None, None, 4)
    model = keras.Model(inputs, outputs)
    out = model.predict(np.zeros((1, 6, 4, 3), "float32"), verbose=0)
    assert out.shape == (1, 6, 4)


def test_int_patch_size_on_images_sine_needs_hidden_dim_divisible_by_4():
    # An int patch size is 2-D only once the input rank is known (build).
    layer = PatchEmbedding(2, 6, position="sine")
    with pytest.raises(ValueError, match="hidden_dim=6"):
        layer(np.zeros((1, 4, 4, 1), "float32"))
