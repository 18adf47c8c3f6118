import keras

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_rate
from keras_attn.layers.transformer._utils import clone_initializer


@keras.saving.register_keras_serializable(package="keras_attn")
class FeedForward(AdapterMixin, keras.layers.Layer):
    """Position-wise feed-forward network, plain or gated (GLU).

    Applies the same two-layer MLP to every position: `W2 act(W1 x + b1) +
    b2`, from the feature size `D` up to `intermediate_dim` and back. With
    `gated=True` the hidden layer is a gated linear unit, `act(W1 x + b1) *
    (Wg x + bg)`: `activation="silu"` is SwiGLU and `"gelu"` is GeGLU, the
    feed-forward of most recent language models.

    The variables, in order, are the intermediate kernel and bias, the gate
    kernel and bias (gated only), and the output kernel and bias; without
    gating they are those of keras-hub's transformer feed-forward.

    Args:
        intermediate_dim: int, the hidden size of the network.
        activation: string or callable, the activation of the hidden layer.
            Defaults to `"relu"`.
        gated: bool, whether the hidden layer is a GLU. Defaults to `False`.
        dropout: float in `[0, 1)`, dropout on the hidden activations.
            Defaults to `0.0`.
        output_dim: int, the output size. Defaults to the input's feature
            size.
        use_bias: bool, whether the dense layers have biases. Defaults to
            `True`.
        kernel_initializer: initializer of the kernels. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the biases. Defaults to `"zeros"`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        inputs: a tensor `(B, ..., D)`.
        training: bool, whether dropout is active.

    Returns:
        A tensor `(B, ..., output_dim)`.

    Example:

    >>> import numpy as np
    >>> import keras_attn
    >>> swiglu = keras_attn.layers.FeedForward(
    ...     intermediate_dim=64, activation="silu", gated=True
    ... )
    >>> x = np.random.rand(2, 5, 16).astype("float32")
    >>> tuple(swiglu(x).shape)
    (2, 5, 16)

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Shazeer, "GLU Variants Improve Transformer", 2020.
    """

    # `enable_lora(rank)` adapts every projection of the network.
    default_lora_target_names = (
        "intermediate_dense",
        "gate_dense",
        "output_dense",
    )

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        gated=False,
        dropout=0.0,
        output_dim=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        check_positive_int("intermediate_dim", intermediate_dim)
        check_positive_int("output_dim", output_dim, allow_none=True)
        check_rate("dropout", dropout)
        super().__init__(**kwargs)
        self.intermediate_dim = intermediate_dim
        self.activation = keras.activations.get(activation)
        self.gated = bool(gated)
        self.dropout = dropout
        self.output_dim = output_dim
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.supports_masking = True

    def _dense(self, units, name, activation=None):
        return keras.layers.Dense(
            units,
            activation=activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        inputs_shape = tuple(inputs_shape)
        if len(inputs_shape) < 2 or inputs_shape[-1] is None:
            raise ValueError(
                "`inputs` must have rank 2 or more and a known feature size. "
                f"Received: inputs.shape={inputs_shape}"
            )
        hidden_shape = inputs_shape[:-1] + (self.intermediate_dim,)
        self.intermediate_dense = self._dense(
            self.intermediate_dim, "intermediate_dense", self.activation
        )
        self.intermediate_dense.build(inputs_shape)
        if self.gated:
            self.gate_dense = self._dense(self.intermediate_dim, "gate_dense")
            self.gate_dense.build(inputs_shape)
        self.output_dense = self._dense(
            self.output_dim or inputs_shape[-1], "output_dense"
        )
        self.output_dense.build(hidden_shape)
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, dtype=self.dtype_policy, name="dropout"
        )
        self._features = inputs_shape[-1]
        self._restore_lora()
        self.built = True

    def call(self, inputs, training=None):
        shape = tuple(inputs.shape)
        if len(shape) < 2 or shape[-1] != self._features:
            raise ValueError(
                "`inputs` must have rank 2 or more and the feature size the "
                f"layer was built with ({self._features}). Received: "
                f"inputs.shape={shape}"
            )
        # (B, ..., D) -> (B, ..., I)
        hidden = self.intermediate_dense(inputs)
        if self.gated:
            hidden = hidden * self.gate_dense(inputs)
        if self.dropout > 0:
            hidden = self.dropout_layer(hidden, training=training)
        # (B, ..., I) -> (B, ..., output_dim)
        return self.output_dense(hidden)

    def compute_output_shape(self, inputs_shape):
        inputs_shape = tuple(inputs_shape)
        return inputs_shape[:-1] + (self.output_dim or inputs_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": keras.activations.serialize(self.activation),
                "gated": self.gated,
                "dropout": self.dropout,
                "output_dim": self.output_dim,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
            }
        )
        return config
