"""Tests of `keras_attn.models.VisionTransformer`."""

import time

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.interpret import attention_rollout
from keras_attn.models import VisionTransformer


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), "float64")


def _small(**kwargs):
    config = dict(
        image_size=8,
        patch_size=2,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        num_classes=5,
        num_channels=1,
    )
    config.update(kwargs)
    return VisionTransformer(**config)


def test_logits_and_config_round_trip(rng):
    model = _small()
    images = rng.normal(size=(3, 8, 8, 1)).astype("float32")
    assert tuple(model(images).shape) == (3, 5)
    config = model.get_config()
    restored = VisionTransformer.from_config(config)
    assert restored.get_config() == config
    assert restored.count_params() == model.count_params()


def _np_layer_norm(x, gamma, beta, epsilon=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def _np_rotary_2d(x, grid, base=100.0):
    """Axial 2-D RoPE of `x` `(B, N, T, H)` at `grid` `(T, 2)`, in NumPy."""
    out = x.copy()
    half = x.shape[-1] // 2
    quarter = half // 2
    frequencies = base ** (-2 * np.arange(quarter) / half)  # (H/4,)
    for axis in (0, 1):  # first half: rows; second half: columns
        angle = grid[:, axis, None] * frequencies  # (T, H/4)
        start = axis * half
        a = x[..., start : start + quarter]
        b = x[..., start + quarter : start + half]
        out[..., start : start + quarter] = a * np.cos(angle) - b * np.sin(
            angle
        )
        out[..., start + quarter : start + half] = b * np.cos(
            angle
        ) + a * np.sin(angle)
    return out


def _np_vit(
    images, weights, patch, num_layers, num_heads, pooling, rotary_2d=False
):
    """The ViT forward pass written out in NumPy, from the flat weights."""
    from scipy.special import erf

    weights = [w.astype("float64") for w in weights]
    kernel, bias = weights[:2]
    rest = weights[2:]
    b, h, w, c = images.shape
    # (B, H, W, C) -> (B, gh, gw, ph, pw, C) -> (B, N, ph * pw * C)
    x = images.reshape(b, h // patch, patch, w // patch, patch, c)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, patch * patch * c)
    x = x @ kernel.reshape(-1, kernel.shape[-1]) + bias
    if pooling == "cls":
        token, rest = rest[0], rest[1:]
        x = np.concatenate([np.broadcast_to(token, (b, 1, x.shape[-1])), x], 1)
    if rotary_2d:
        rows, columns = h // patch, w // patch
        grid = [(r, c) for r in range(rows) for c in range(columns)]
        grid = np.array([(0, 0)] * (pooling == "cls") + grid, "float64")
    else:
        x = x + rest[0]
        rest = rest[1:]
    for _ in range(num_layers):
        wq, bq, wk, bk, wv, bv, wo, bo, g1, b1, g2, b2, w1, c1, w2, c2 = rest[
            :16
        ]
        rest = rest[16:]
        y = _np_layer_norm(x, g1, b1)
        # (B, T, D) x (D, N, H) + (N, 1, H) -> (B, N, T, H)
        q = np.einsum("btd,dnh->bnth", y, wq) + bq[:, None]
        k = np.einsum("bsd,dnh->bnsh", y, wk) + bk[:, None]
        v = np.einsum("bsd,dnh->bnsh", y, wv) + bv[:, None]
        if rotary_2d:
            q, k = _np_rotary_2d(q, grid), _np_rotary_2d(k, grid)
        logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
        logits = logits - logits.max(-1, keepdims=True)
        probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        heads = probs @ v  # (B, N, T, H)
        x = x + np.einsum("bnth,nhd->btd", heads, wo) + bo
        y = _np_layer_norm(x, g2, b2) @ w1 + c1
        y = 0.5 * y * (1.0 + erf(y / np.sqrt(2.0)))  # exact GELU
        x = x + y @ w2 + c2
    gamma, beta, head_w, head_b = rest
    x = _np_layer_norm(x, gamma, beta)
    x = x[:, 0] if pooling == "cls" else x.mean(1)
    return x @ head_w + head_b


@pytest.mark.parametrize(
    "pooling,position",
    [("cls", "learned"), ("mean", "learned"), ("cls", "rotary_2d")],
)
def test_matches_numpy_forward(rng, pooling, position):
    # Rotary: a 4 x 2 grid of patches (8 x 4 images), the class token first.
    size = (8, 4) if position == "rotary_2d" else 8
    model = _small(pooling=pooling, position=position, image_size=size)
    model.set_weights(
        [
            rng.normal(size=w.shape).astype("float32") * 0.3
            for w in model.weights
        ]
    )
    images = rng.normal(size=(3, *model.image_size, 1)).astype("float32")
    expected = _np_vit(
        images.astype("float64"),
        model.get_weights(),
        2,
        2,
        2,
        pooling,
        rotary_2d=position == "rotary_2d",
    )
    np.testing.assert_allclose(_np(model(images)), expected, atol=1e-4)


@pytest.mark.parametrize("position", ["learned", "rotary_2d"])
def test_saves_and_loads_as_keras(rng, tmp_path, position):
    model = _small(pooling="mean", dropout=0.1, position=position)
    images = rng.normal(size=(4, 8, 8, 1)).astype("float32")
    # Random, non-trivial weights everywhere (zeros class token etc.).
    model.set_weights(
        [0.3 * rng.normal(size=w.shape).astype("f4") for w in model.weights]
    )
    expected = _np(model.predict(images, verbose=0))
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, VisionTransformer)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(
        _np(loaded.predict(images, verbose=0)), expected, atol=1e-6
    )


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_headless_features_feed_the_head(rng, pooling):
    """logits == features @ W + b, with W, b the head's weights (NumPy)."""
    images = rng.normal(size=(3, 8, 8, 1)).astype("float32")
    model = _small(pooling=pooling)
    headless = _small(pooling=pooling, num_classes=None)
    weights = model.get_weights()
    headless.set_weights(weights[:-2])
    features = _np(headless(images))
    assert features.shape == (3, 16)
    w, b = _np(model.head.kernel), _np(model.head.bias)
    np.testing.assert_allclose(_np(model(images)), features @ w + b, atol=1e-5)
    # The features are layer-normalized (zero mean over channels: the
    # final norm's beta starts at zero).
    np.testing.assert_allclose(features.mean(axis=-1), 0.0, atol=1e-5)


def test_token_count_and_attention_scores(rng):
    images = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    for pooling, tokens in (("cls", 17), ("mean", 16)):
        model = _small(pooling=pooling, num_layers=3)
        scores = model.attention_scores(images)
        assert len(scores) == 3
        for s in scores:
            s = _np(s)
            assert s.shape == (2, 2, tokens, tokens)
            np.testing.assert_allclose(s.sum(axis=-1), 1.0, atol=1e-5)
        rollout = attention_rollout(scores, class_token=pooling == "cls")
        assert rollout.shape == (2, 4, 4)
        np.testing.assert_allclose(rollout.sum(axis=(1, 2)), 1.0, atol=1e-9)


def test_channels_first(rng):
    images = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    last = _small()
    first = _small(data_format="channels_first")
    first.set_weights(last.get_weights())
    np.testing.assert_allclose(
        _np(first(images.transpose(0, 3, 1, 2))), _np(last(images)), atol=1e-5
    )


def _vit_param_count(patch, channels, image, layers, dim, mlp, classes):
    """Parameters of a ViT, counted by hand (class token, learned pos)."""
    tokens = (image // patch) ** 2 + 1
    embed = patch * patch * channels * dim + dim + dim + tokens * dim
    attention = 4 * (dim * dim + dim)
    mlp_params = dim * mlp + mlp + mlp * dim + dim
    norms = 2 * 2 * dim
    head = dim * classes + classes
    return embed + layers * (attention + mlp_params + norms) + 2 * dim + head


def test_architectures():
    architectures = VisionTransformer.ARCHITECTURES
    assert architectures["vit_small"]["hidden_dim"] == 384
    assert architectures["vit_base"]["num_heads"] == 12
    model = VisionTransformer.from_architecture("vit_tiny", num_classes=1000)
    # ViT-Ti/16 at 224 x 224 with a 1000-class head: 5,717,416 parameters.
    expected = _vit_param_count(16, 3, 224, 12, 192, 768, 1000)
    assert expected == 5_717_416
    assert model.count_params() == expected
    small = VisionTransformer.from_architecture(
        "vit_small", image_size=32, patch_size=8, num_layers=1
    )
    assert small.num_classes is None and small.hidden_dim == 384
    assert small.patch_size == (8, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size=0"),
        ({"patch_size": 3}, r"patch_size=\(3, 3\), image_size=\(8, 8\)"),
        ({"pooling": "max"}, "pooling='max'"),
        ({"num_classes": 0}, "num_classes=0"),
        ({"num_layers": -1}, "num_layers=-1"),
        ({"num_heads": 3}, "hidden_dim=16, num_heads=3"),
        ({"dropout": 1.5}, "dropout=1.5"),
        ({"position": "rotary"}, "position='rotary'"),
        (
            {"position": "rotary_2d", "num_heads": 8},
            "rotary_2d.*hidden_dim=16, num_heads=8",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _small(**kwargs)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="name='vit_huge'"):
        VisionTransformer.from_architecture("vit_huge")


def test_mlp_dim_is_an_alias_of_intermediate_dim(rng):
    model = _small(intermediate_dim=None, mlp_dim=24)
    assert model.intermediate_dim == model.mlp_dim == 24
    assert model.get_config()["intermediate_dim"] == 24
    block = model.encoder_layers[0]
    assert block.intermediate_dim == 24
    with pytest.raises(ValueError, match="intermediate_dim=32, mlp_dim=24"):
        _small(mlp_dim=24)
    with pytest.raises(ValueError, match="intermediate_dim=None"):
        _small(intermediate_dim=None)


@pytest.mark.parametrize("channels", [3, 2])
def test_channel_count_differs_from_build(channels):
    # Defect 2: (2, 8, 8, 3) into num_channels=1 gave a batch of 6.
    model = _small(num_channels=1)
    with pytest.raises(ValueError, match=f"num_channels=1.*{channels}"):
        model(np.zeros((2, 8, 8, channels), "float32"))


def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]  # (N, 8, 8, 1)
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], data.target[order]


@pytest.mark.large
def test_learns_digits():
    images, labels = _digits()
    train, test = slice(0, 1400), slice(1400, None)
    start = time.perf_counter()
    # 2 x 2 patches of 4 x 4 pixels: 5 tokens, fast on every backend.
    model = VisionTransformer(
        image_size=8,
        patch_size=4,
        num_layers=1,
        num_heads=4,
        hidden_dim=32,
        intermediate_dim=64,
        num_classes=10,
        num_channels=1,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(images[train], labels[train], batch_size=64, epochs=12, verbose=0)
    elapsed = time.perf_counter() - start
    logits = _np(model.predict(images[test], verbose=0))
    accuracy = float(np.mean(logits.argmax(axis=-1) == labels[test]))
    # The time is printed, not asserted: timing never goes into a test.
    print(f"digits test accuracy {accuracy:.3f} in {elapsed:.1f} s")
    assert accuracy >= 0.90, accuracy


@pytest.mark.parametrize("dtype", ["mixed_bfloat16", "mixed_float16"])
def test_dtype_policy(rng, dtype, tmp_path):
    model = _small(dtype=dtype)
    images = rng.normal(size=(2, 8, 8, 1)).astype("float32")
    logits = _np(model(images))
    assert np.all(np.isfinite(logits))
    assert model.patch_embedding.compute_dtype == dtype.split("_")[1]
    assert model.patch_embedding.kernel.dtype == "float32"
    path = tmp_path / "vit.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.patch_embedding.compute_dtype == dtype.split("_")[1]
    np.testing.assert_allclose(_np(loaded(images)), logits, atol=1e-6)
