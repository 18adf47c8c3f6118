"""keras_attn.losses against a NumPy InfoNCE written out here."""

import keras
import numpy as np
import pytest

import keras_attn
from keras_attn.losses import InfoNCE
from keras_attn.losses import info_nce


def np_log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def np_info_nce(
    ids,
    y_pred,
    temperature=0.07,
    logit_scale=None,
    symmetric=True,
    from_logits=False,
):
    """Loss of each item, one row and one column at a time."""
    y_pred = np.asarray(y_pred, "float64")
    if from_logits:
        logits = y_pred
    else:
        a = y_pred[:, 0] / np.linalg.norm(y_pred[:, 0], axis=1, keepdims=True)
        b = y_pred[:, 1] / np.linalg.norm(y_pred[:, 1], axis=1, keepdims=True)
        logits = a @ b.T
    if logit_scale is None:
        logits = logits / temperature
    else:
        logits = logits * min(np.exp(logit_scale), 100.0)
    n = len(logits)
    ids = np.arange(n) if ids is None else np.asarray(ids).reshape(-1)
    row_log_p = np_log_softmax(logits, axis=1)
    col_log_p = np_log_softmax(logits, axis=0)
    losses = []
    for i in range(n):
        positives = np.flatnonzero(ids == ids[i])
        # Row i: first view i against every second view.
        row = -np.mean([row_log_p[i, j] for j in positives])
        # Column i: second view i against every first view.
        col = -np.mean([col_log_p[j, i] for j in positives])
        losses.append(0.5 * (row + col) if symmetric else row)
    return np.array(losses)


def pairs(batch=6, dim=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, 2, dim)).astype("float32")


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("ids", [None, [0, 1, 2, 3, 4, 5], [3, 1, 3, 0, 1, 7]])
def test_function_matches_numpy(ids, symmetric):
    y_pred = pairs()
    y_true = None if ids is None else np.array(ids, "int32")
    got = info_nce(y_true, y_pred, temperature=0.2, symmetric=symmetric)
    want = np_info_nce(ids, y_pred, 0.2, symmetric=symmetric)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-5
    )


def test_from_logits_and_logit_scale_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 5)).astype("float32")
    ids = np.array([0, 1, 1, 2, 3])
    got = info_nce(ids, logits, temperature=0.5, from_logits=True)
    want = np_info_nce(ids, logits, 0.5, from_logits=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    y_pred = pairs(seed=2)
    for scale in (1.3, 10.0):  # exp(10) is clipped at 100
        got = info_nce(None, y_pred, logit_scale=scale)
        want = np_info_nce(None, y_pred, logit_scale=scale)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_aligned_views_have_low_loss():
    y_pred = pairs(batch=8, dim=16)
    y_pred[:, 1] = 3.0 * y_pred[:, 0]  # same direction, other length
    aligned = np.mean(keras.ops.convert_to_numpy(info_nce(None, y_pred, 0.01)))
    assert aligned < 1e-3
    shuffled = y_pred.copy()
    shuffled[:, 1] = shuffled[::-1, 1]
    assert np.mean(keras.ops.convert_to_numpy(info_nce(None, shuffled))) > 1


def test_loss_class_reduction_and_sample_weight():
    y_pred = pairs(seed=3)
    ids = np.array([0, 1, 2, 0, 4, 5])
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0], "float32")
    loss = InfoNCE(temperature=0.3)
    want = np_info_nce(ids, y_pred, 0.3)
    np.testing.assert_allclose(loss(ids, y_pred), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        loss(ids, y_pred, sample_weight=weights),
        (want * weights).sum() / len(want),
        rtol=1e-5,
    )
    summed = InfoNCE(temperature=0.3, reduction="sum")
    np.testing.assert_allclose(summed(ids, y_pred), want.sum(), rtol=1e-5)


class LogitScale(keras.layers.Layer):
    """Holds a learnable logit scale; passes its input through."""

    def build(self, input_shape):
        self.scale = self.add_weight(
            shape=(), initializer=keras.initializers.Constant(1.0), name="s"
        )

    def call(self, inputs):
        return inputs


def test_fit_trains_a_learnable_logit_scale_like_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 2, 3)).astype("float32")
    ids = np.arange(8)
    inputs = keras.Input((2, 3))
    scale_layer = LogitScale()
    dense = keras.layers.Dense(4, use_bias=False)
    outputs = dense(scale_layer(inputs))  # (B, 2, 4)
    model = keras.Model(inputs, outputs)
    kernel = rng.normal(size=(3, 4)).astype("float32")
    dense.kernel.assign(kernel)
    model.compile(
        keras.optimizers.SGD(learning_rate=0.1),
        loss=InfoNCE(logit_scale=scale_layer.scale),
    )

    # The loss as a function of s alone; its derivative by central
    # differences in float64.
    def reference(s):
        return np_info_nce(None, x @ kernel.astype("float64"), logit_scale=s)

    np.testing.assert_allclose(
        model.evaluate(x, ids, batch_size=8, verbose=0),
        reference(1.0).mean(),
        rtol=1e-5,
    )
    eps = 1e-5
    grad = (reference(1 + eps).mean() - reference(1 - eps).mean()) / (2 * eps)
    model.fit(x, ids, batch_size=8, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(scale_layer.scale),
        1.0 - 0.1 * grad,
        rtol=1e-4,
    )


def test_config_round_trip():
    loss = InfoNCE(temperature=0.2, symmetric=False, name="pairs")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, InfoNCE)
    assert restored.get_config() == loss.get_config()
    variable = keras.Variable(2.5)
    config = InfoNCE(logit_scale=variable).get_config()
    assert config["logit_scale"] == pytest.approx(2.5)
    assert keras_attn.losses.InfoNCE is InfoNCE


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": "warm"}, "temperature"),
        ({"logit_scale": "x"}, "logit_scale"),
        ({"symmetric": 1}, "symmetric"),
        ({"from_logits": "no"}, "from_logits"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        InfoNCE(**kwargs)
    with pytest.raises(ValueError, match=name):
        info_nce(None, pairs(), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"y_pred.shape=\(6, 5\)"):
        info_nce(None, np.zeros((6, 5), "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(6, 3, 5\)"):
        info_nce(None, np.zeros((6, 3, 5), "float32"))
    with pytest.raises(ValueError, match=r"y_pred.shape=\(6, 5\)"):
        info_nce(None, np.zeros((6, 5), "float32"), from_logits=True)
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\)"):
        info_nce(np.arange(4), pairs())
