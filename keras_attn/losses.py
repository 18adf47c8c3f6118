"""Losses: the contrastive (InfoNCE) loss and the sequence loss.

`InfoNCE` is a `keras.losses.Loss` for `model.compile`; `info_nce` is the
same computation as a function, for custom training loops.
`sequence_loss` is the weighted token cross-entropy of
`tfa.seq2seq.sequence_loss`.
"""

import numbers

import keras
from keras import ops

from keras_attn import _validation

# CLIP clips the learned logit scale at 100 (a temperature of 0.01).
_MAX_LOGIT_SCALE = 100.0


def _check_arguments(temperature, logit_scale, symmetric, from_logits):
    if logit_scale is None:
        _validation.check_positive_number("temperature", temperature)
    elif isinstance(logit_scale, bool) or not (
        isinstance(logit_scale, numbers.Real)
        or (
            hasattr(logit_scale, "shape")
            and tuple(logit_scale.shape) in ((), (1,))
        )
    ):
        raise ValueError(
            "`logit_scale` must be None, a number or a scalar variable. "
            f"Received: logit_scale={logit_scale!r}"
        )
    for name, value in (("symmetric", symmetric), ("from_logits", from_logits)):
        if not isinstance(value, bool):
            raise ValueError(
                f"`{name}` must be a bool. Received: {name}={value!r}"
            )


def _check_inputs(y_true, y_pred, from_logits):
    shape = _validation.static_shape(y_pred)
    if from_logits:
        if len(shape) != 2 or _validation.dims_differ(shape[0], shape[1]):
            raise ValueError(
                "With `from_logits=True`, `y_pred` must be a square matrix of "
                "similarity logits (batch, batch). Received: "
                f"y_pred.shape={shape}"
            )
    elif len(shape) != 3 or _validation.dims_differ(shape[1], 2):
        raise ValueError(
            "`y_pred` must stack the two embeddings of each pair, shape "
            f"(batch, 2, dim). Received: y_pred.shape={shape}"
        )
    if y_true is None:
        return
    true_shape = _validation.static_shape(y_true)
    if (
        len(true_shape) not in (1, 2)
        or (len(true_shape) == 2 and true_shape[1] != 1)
        or _validation.dims_differ(true_shape[0], shape[0])
    ):
        raise ValueError(
            "`y_true` must be None or the item ids of the batch, shape "
            f"(batch,) or (batch, 1) with batch = {shape[0]}. Received: "
            f"y_true.shape={true_shape}"
        )


def _cross_entropy(targets, logits, axis):
    """Cross-entropy of each row (axis=1) or column (axis=0), float32."""
    log_probs = ops.log_softmax(logits, axis=axis)
    return -ops.sum(targets * log_probs, axis=axis)


def info_nce(
    y_true,
    y_pred,
    temperature=0.07,
    logit_scale=None,
    symmetric=True,
    from_logits=False,
):
    """The InfoNCE (CLIP-style) contrastive loss of each item of a batch.

    `y_pred[:, 0]` and `y_pred[:, 1]` hold the embeddings of the two views
    of each item (for example its image and its sound). Both are L2
    normalized; the logits are the cosine similarities of every first view
    with every second view, divided by the temperature. Row `i` is a
    classification of which second view belongs to first view `i`; with
    `symmetric=True` the columns (second view to first view) count too and
    the loss of item `i` is the mean of its row and column cross-entropies.

    `y_true` holds item ids. Views of items with the same id are all
    positives, each with an equal share of the target probability (a batch
    that repeats an item does not punish the model for matching the
    repeat). With `y_true=None` every item in the batch is distinct: the
    targets are the identity matrix.

    Args:
        y_true: None or item ids `(B,)` or `(B, 1)`, any numeric dtype.
        y_pred: embedding pairs `(B, 2, D)`, or with `from_logits=True`
            similarity logits `(B, B)` (row: first view, column: second).
        temperature: positive number, the softmax temperature. Ignored
            when `logit_scale` is given. Defaults to `0.07` (CLIP's start).
        logit_scale: None, a number or a scalar variable `s`: the logits are
            multiplied by `exp(s)`, clipped at 100, instead of divided by
            `temperature` (CLIP's learnable parameterization). A trainable
            variable of the model makes the temperature learnable.
        symmetric: bool, average both directions (CLIP) or only rows.
            Defaults to `True`.
        from_logits: bool, whether `y_pred` is already the `(B, B)` logits.
            The temperature (or scale) is applied to them all the same.
            Defaults to `False`.

    Returns:
        The loss of each item, float32 `(B,)`.

    Example:

    ```python
    import numpy as np
    import keras_attn

    images = np.random.normal(size=(8, 16))
    sounds = images + 0.1 * np.random.normal(size=(8, 16))
    pairs = np.stack([images, sounds], axis=1)  # (8, 2, 16)
    loss = keras_attn.losses.info_nce(None, pairs, temperature=0.1)  # (8,)
    ```

    References:
        - Representation Learning with Contrastive Predictive Coding
          (van den Oord et al., 2018).
        - Learning Transferable Visual Models From Natural Language
          Supervision (Radford et al., 2021).
    """
    _check_arguments(temperature, logit_scale, symmetric, from_logits)
    _check_inputs(y_true, y_pred, from_logits)
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        logits = y_pred  # (B, B)
    else:
        first = ops.normalize(y_pred[:, 0], axis=-1)  # (B, D)
        second = ops.normalize(y_pred[:, 1], axis=-1)  # (B, D)
        # (B, D) x (B, D) -> (B, B)
        logits = ops.matmul(first, ops.transpose(second))
    if logit_scale is None:
        logits = logits / float(temperature)
    else:
        scale = ops.exp(ops.reshape(ops.cast(logit_scale, "float32"), ()))
        logits = logits * ops.minimum(scale, _MAX_LOGIT_SCALE)
    batch = ops.shape(logits)[0]
    if y_true is None:
        targets = ops.eye(batch, dtype="float32")  # (B, B)
    else:
        ids = ops.reshape(y_true, (-1,))  # (B,)
        # (B, 1) == (1, B) -> (B, B), symmetric, ones on the diagonal.
        targets = ops.cast(ops.equal(ids[:, None], ids[None, :]), "float32")
        targets = targets / ops.sum(targets, axis=1, keepdims=True)
    loss = _cross_entropy(targets, logits, axis=1)  # (B,)
    if symmetric:
        # The targets are symmetric, so their columns are their rows.
        loss = 0.5 * (loss + _cross_entropy(targets, logits, axis=0))
    return loss


@keras.saving.register_keras_serializable(package="keras_attn")
class InfoNCE(keras.losses.Loss):
    """The InfoNCE (CLIP-style) contrastive loss, for `model.compile`.

    The model outputs the two views of each item stacked, `(B, 2, D)` (for
    example an image embedding and a sound embedding); the loss pulls the
    views of the same item together and pushes the other items of the
    batch apart: a softmax classification, over the batch, of which second
    view belongs to each first view (and, `symmetric=True`, the reverse),
    on cosine similarities divided by a temperature. See `info_nce` for
    the computation. The labels given to `fit` are item ids: every item
    with the same id is a positive (pass `np.arange(n)` for all distinct).

    The temperature is fixed (`temperature`) or learnable: pass a scalar
    variable of the model as `logit_scale` (the logits are multiplied by
    `exp(logit_scale)`, CLIP's form), and `fit` trains it with the model.
    Alternatively, let the model output its own `(B, B)` logits
    (`from_logits=True`). A `logit_scale` variable is saved in the loss's
    config as its current value.

    Args:
        temperature: positive number, the softmax temperature. Defaults to
            `0.07`.
        logit_scale: None, a number or a scalar `keras.Variable` of the
            model (learnable temperature `exp(-logit_scale)`). Defaults to
            None (fixed `temperature`).
        symmetric: bool, average both directions. Defaults to `True`.
        from_logits: bool, whether `y_pred` is `(B, B)` similarity logits.
            Defaults to `False`.
        reduction: as in `keras.losses.Loss`. Defaults to
            `"sum_over_batch_size"`.
        name: name of the loss. Defaults to `"info_nce"`.
        dtype: dtype of the loss computations, as in `keras.losses.Loss`.

    Call arguments:
        y_true: item ids `(B,)` or `(B, 1)`, or None (all distinct).
        y_pred: `(B, 2, D)` embedding pairs, or `(B, B)` logits.
        sample_weight: optional weights `(B,)`.

    Returns:
        The reduced loss (a scalar with the default reduction).

    Example:

    ```python
    import numpy as np
    import keras
    import keras_attn

    images = keras.Input((16,))
    sounds = keras.Input((24,))
    pair = keras.ops.stack(
        [keras.layers.Dense(8)(images), keras.layers.Dense(8)(sounds)], axis=1
    )  # (B, 2, 8)
    model = keras.Model([images, sounds], pair)
    model.compile("adam", loss=keras_attn.losses.InfoNCE(temperature=0.1))
    x = [np.random.rand(64, 16), np.random.rand(64, 24)]
    model.fit(x, np.arange(64), batch_size=16, epochs=1, verbose=0)
    ```

    References:
        - Representation Learning with Contrastive Predictive Coding
          (van den Oord et al., 2018).
        - Learning Transferable Visual Models From Natural Language
          Supervision (Radford et al., 2021).
    """

    def __init__(
        self,
        temperature=0.07,
        logit_scale=None,
        symmetric=True,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="info_nce",
        dtype=None,
    ):
        _check_arguments(temperature, logit_scale, symmetric, from_logits)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = temperature
        self.logit_scale = logit_scale
        self.symmetric = symmetric
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        return info_nce(
            y_true,
            y_pred,
            temperature=self.temperature,
            logit_scale=self.logit_scale,
            symmetric=self.symmetric,
            from_logits=self.from_logits,
        )

    def get_config(self):
        config = super().get_config()
        logit_scale = self.logit_scale
        if logit_scale is not None and not isinstance(
            logit_scale, numbers.Real
        ):
            logit_scale = float(
                ops.convert_to_numpy(ops.reshape(logit_scale, ()))
            )
        config.update(
            temperature=self.temperature,
            logit_scale=logit_scale,
            symmetric=self.symmetric,
            from_logits=self.from_logits,
        )
        return config


def _check_sequence_loss_flags(**flags):
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(
                f"`{name}` must be a bool. Received: {name}={value!r}"
            )
    pairs = (
        ("average_across_timesteps", "sum_over_timesteps"),
        ("average_across_batch", "sum_over_batch"),
        ("average_across_timesteps", "sum_over_batch"),
        ("sum_over_timesteps", "average_across_batch"),
    )
    for first, second in pairs:
        if flags[first] and flags[second]:
            raise ValueError(
                f"`{first}` and `{second}` cannot both be True (average "
                "and sum on one axis, or a different reduction on each "
                "axis; reduce in two steps instead). Received: "
                f"{first}=True, {second}=True"
            )


def sequence_loss(
    logits,
    targets,
    weights=None,
    average_across_timesteps=True,
    average_across_batch=True,
    sum_over_timesteps=False,
    sum_over_batch=False,
):
    """Weighted cross-entropy of a sequence of logits (tfa's `sequence_loss`).

    With `ce[b, t]` the softmax cross-entropy of `targets[b, t]` under
    `logits[b, t]` and `w[b, t]` the weights (1 at real tokens, 0 at
    padding), the reductions are, over the axes asked for:

    - average (`average_across_*`): `sum(w * ce) / sum(w)`, the mean per
      token weight (0 where the weights sum to 0);
    - sum (`sum_over_*`): `sum(w * ce) / count(w != 0)`, the mean over the
      tokens with a nonzero weight (tfa's recommended reduction).

    An axis with neither flag is kept: the result is a scalar, `(B,)`,
    `(T,)` or `(B, T)`. Both flags on one axis raise a `ValueError`, and so
    does an average on one axis with a sum on the other (tfa silently
    drops the sum in that case).

    Args:
        logits: `(B, T, V)` float logits.
        targets: `(B, T)` integer token ids.
        weights: optional `(B, T)` float or boolean weights (a padding
            mask); all ones when None.
        average_across_timesteps: bool, average over `T`.
        average_across_batch: bool, average over `B`.
        sum_over_timesteps: bool, sum over `T` (divided by the count of
            nonzero weights).
        sum_over_batch: bool, sum over `B` (likewise).

    Returns:
        A float32 tensor of rank 0, 1 or 2 (see above).

    Example:

    ```python
    import numpy as np
    from keras_attn.losses import sequence_loss

    logits = np.zeros((2, 3, 4), "float32")  # uniform: ce = log 4 each
    targets = np.array([[1, 2, 0], [3, 0, 0]], "int32")
    weights = np.array([[1, 1, 0], [1, 0, 0]], "float32")  # padding masked
    sequence_loss(logits, targets, weights)  # log(4) = 1.386
    per_row = sequence_loss(logits, targets, weights,
                            average_across_batch=False)  # (2,)
    ```
    """
    _check_sequence_loss_flags(
        average_across_timesteps=average_across_timesteps,
        average_across_batch=average_across_batch,
        sum_over_timesteps=sum_over_timesteps,
        sum_over_batch=sum_over_batch,
    )
    logits = ops.cast(ops.convert_to_tensor(logits), "float32")
    targets = ops.convert_to_tensor(targets)
    _validation.check_rank("logits", logits, 3, "(batch, steps, vocabulary)")
    _validation.check_rank("targets", targets, 2, "(batch, steps)")
    if (
        _validation.static_shape(targets)
        != _validation.static_shape(logits)[:2]
    ):
        raise ValueError(
            "`targets` must have the shape of `logits` without its last "
            f"axis. Received: targets.shape={tuple(targets.shape)}, "
            f"logits.shape={tuple(logits.shape)}"
        )
    if weights is None:
        weights = ops.ones(ops.shape(targets), "float32")
    weights = ops.cast(ops.convert_to_tensor(weights), "float32")
    if _validation.static_shape(weights) != _validation.static_shape(targets):
        raise ValueError(
            "`weights` must have the shape of `targets`. Received: "
            f"weights.shape={tuple(weights.shape)}, "
            f"targets.shape={tuple(targets.shape)}"
        )
    # (B, T): -log softmax(logits)[target] at each position.
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(
        log_probs, ops.cast(targets, "int32")[:, :, None], axis=-1
    )[:, :, 0]
    loss = -picked * weights
    axes = tuple(
        axis
        for axis, flags in (
            (0, (average_across_batch, sum_over_batch)),
            (1, (average_across_timesteps, sum_over_timesteps)),
        )
        if any(flags)
    )
    if not axes:
        return loss
    total = ops.sum(loss, axis=axes)
    if average_across_batch or average_across_timesteps:
        size = ops.sum(weights, axis=axes)
    else:
        size = ops.sum(ops.cast(weights != 0, "float32"), axis=axes)
    # 0 where nothing is weighted, like tfa's div_no_nan.
    return ops.where(size > 0, total / ops.where(size > 0, size, 1.0), 0.0)
