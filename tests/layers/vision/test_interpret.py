"""Tests of `keras_attn.interpret.attention_rollout` against hand-worked
NumPy."""

import numpy as np
import pytest

from keras_attn.interpret import attention_rollout


def _random_attention(rng, shape):
    """Row-stochastic weights of the given (B, N, T, T) shape."""
    logits = rng.normal(size=shape)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)


def test_two_layer_toy_case_by_hand():
    # One example, two heads, three tokens: [CLS, patch 0, patch 1].
    layer1 = np.array(
        [
            [[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.0, 0.5, 0.5]],
            [[0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]],
        ]
    )[None]
    layer2 = np.array(
        [
            [[0.2, 0.6, 0.2], [0.3, 0.3, 0.4], [0.0, 0.0, 1.0]],
            [[0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.1, 0.8, 0.1]],
        ]
    )[None]
    # By hand: mean over heads, + I, rows renormalized.
    a1 = (
        np.array([[0.3, 0.175, 0.525], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]])
        + np.eye(3)
    ) / 2.0
    a2 = (
        np.array([[0.1, 0.3, 0.6], [0.4, 0.4, 0.2], [0.05, 0.4, 0.55]])
        + np.eye(3)
    ) / 2.0
    # CLS row of a2 @ a1, written out element by element.
    cls_row = [sum(a2[0, k] * a1[k, j] for k in range(3)) for j in range(3)]
    patches = np.array(cls_row[1:]) / (cls_row[1] + cls_row[2])
    out = attention_rollout([layer1, layer2], grid_size=(1, 2))
    assert out.shape == (1, 1, 2)
    np.testing.assert_allclose(out[0, 0], patches, atol=1e-12)
    # The order of the layers matters (a1 @ a2 differs).
    swapped = attention_rollout([layer2, layer1], grid_size=(1, 2))
    assert not np.allclose(swapped, out)


def _loop_rollout(layers, class_token):
    """Rollout with explicit loops over examples, rows and columns."""
    batch, _, tokens, _ = layers[0].shape
    maps = []
    for b in range(batch):
        rollout = np.eye(tokens)
        for scores in layers:
            fused = scores[b].mean(axis=0) + np.eye(tokens)
            fused = fused / fused.sum(axis=1, keepdims=True)
            new = np.zeros((tokens, tokens))
            for i in range(tokens):
                for j in range(tokens):
                    new[i, j] = sum(
                        fused[i, k] * rollout[k, j] for k in range(tokens)
                    )
            rollout = new
        row = rollout[0, 1:] if class_token else rollout.mean(axis=0)
        maps.append(row / row.sum())
    return np.stack(maps)


@pytest.mark.parametrize("class_token", [True, False])
def test_random_layers_match_loops(rng, class_token):
    tokens = 10 if class_token else 9
    layers = [_random_attention(rng, (2, 3, tokens, tokens)) for _ in range(3)]
    out = attention_rollout(layers, class_token=class_token)
    assert out.shape == (2, 3, 3)
    np.testing.assert_allclose(out.sum(axis=(1, 2)), 1.0, atol=1e-12)
    expected = _loop_rollout(layers, class_token).reshape(2, 3, 3)
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_uniform_attention_gives_uniform_map(rng):
    layers = [np.full((1, 2, 5, 5), 0.2)] * 4
    out = attention_rollout(layers)
    np.testing.assert_allclose(out, np.full((1, 2, 2), 0.25), atol=1e-12)


def test_max_fusion_and_no_residual(rng):
    layer = _random_attention(rng, (1, 2, 3, 3))
    out = attention_rollout(
        [layer], grid_size=2, head_fusion="max", add_residual=False
    )
    fused = layer[0].max(axis=0)
    fused = fused / fused.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        out[0], fused[0, 1:] / fused[0, 1:].sum(), atol=1e-12
    )


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros((1, 1, 3, 3)),), {}, "attention_scores=ndarray"),
        (([],), {}, r"attention_scores=\[\]"),
        (([np.zeros((1, 3, 3))],), {}, r"attention_scores\[0\].shape"),
        (([np.ones((1, 1, 5, 5))],), {"grid_size": (3, 3)}, "grid_size"),
        (([np.ones((1, 1, 6, 6))],), {}, "grid_size=None"),
        (([np.ones((1, 1, 5, 5))],), {"head_fusion": "sum"}, "head_fusion"),
    ],
)
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        attention_rollout(*args, **kwargs)
