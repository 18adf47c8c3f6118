import keras

from keras_attn.layers.transformer._transformer_block import TransformerBlock
from keras_attn.layers.transformer._utils import check_masks
from keras_attn.layers.transformer._utils import check_sequence
from keras_attn.layers.transformer._utils import merge_masks


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerEncoder(TransformerBlock):
    """Transformer encoder block: self-attention, then a feed-forward network.

    Each of the two sublayers is wrapped in a residual connection with layer
    normalization, after the residual (post-norm, BERT and the original
    transformer) or before the sublayer (`normalize_first=True`, pre-norm,
    GPT-2 and most recent models). Stack several blocks to make an encoder.

    With the default options the block is `keras_hub.layers.TransformerEncoder`:
    same arguments, call arguments, outputs, and variables in the same order,
    so `set_weights(hub_encoder.get_weights())` transfers a trained block.
    The options beyond it are grouped-query attention
    (`num_key_value_heads`), a GLU feed-forward (`gated`), RMS normalization
    (`norm`), a position scheme inside attention (`position`), local
    attention (`sliding_window`) and a separate attention dropout.

    Args:
        intermediate_dim: int, the hidden size of the feed-forward network.
        num_heads: int, the number of attention heads; the head size is the
            input feature size divided by `num_heads`.
        dropout: float in `[0, 1)`, dropout on the attention weights and on
            the output of each sublayer. Defaults to `0`.
        activation: string or callable, the activation of the feed-forward
            network. Defaults to `"relu"`.
        layer_norm_epsilon: float, the epsilon of the normalization layers.
            Defaults to `1e-5`.
        kernel_initializer: initializer of the dense and attention kernels.
            Defaults to `"glorot_uniform"`.
        bias_initializer: initializer of the dense and attention biases.
            Defaults to `"zeros"`.
        normalize_first: bool, pre-norm (True) or post-norm (False).
            Defaults to `False`.
        num_key_value_heads: int dividing `num_heads`, the number of key and
            value heads (grouped-query attention). Defaults to `num_heads`.
        gated: bool, a gated (GLU) feed-forward: SwiGLU with
            `activation="silu"`, GeGLU with `"gelu"`. Defaults to `False`.
        norm: `"layer_norm"` or `"rms_norm"`. Defaults to `"layer_norm"`.
        position: None, `"rotary"` (rotary embedding of queries and keys),
            `"alibi"` (linear distance bias) or `"relative"` (learned T5
            bucket bias). Defaults to None (positions come with the inputs).
            A `RotaryEmbedding` layer (or its serialized config) is used as
            the rotary embedding (copied): for example
            `RotaryEmbedding(rope_type="yarn", scaling_factor=4.0)`, or
            `RotaryEmbedding2D(num_prefix_tokens=1)` for image patches.
        sliding_window: positive int or None, each position attends only
            the positions less than `sliding_window` away.
        attention_dropout: float in `[0, 1)` or None, dropout on the
            attention weights. Defaults to `dropout`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        inputs: `(B, T, D)` tensor.
        padding_mask: optional boolean `(B, T)`, False at padded positions,
            which no position attends. Defaults to the Keras mask of
            `inputs` (for example from `Embedding(mask_zero=True)`).
        attention_mask: optional boolean `(B, T, T)`, True where position
            `i` may attend position `j`; combined with `padding_mask`.
        training: bool, whether dropout is active.
        return_attention_scores: bool, also return the attention weights
            `(B, num_heads, T, T)`.
        mask, inputs_mask: the Keras mask of `inputs`, filled in by Keras
            (named `mask` when `inputs` is the only tensor argument,
            `inputs_mask` otherwise); it stands in for a missing
            `padding_mask`. Not to be passed by hand.

    Returns:
        The output `(B, T, D)`, or `(output, scores)` with
        `return_attention_scores=True`.

    Example:

    >>> import numpy as np
    >>> import keras_attn
    >>> encoder = keras_attn.layers.TransformerEncoder(
    ...     intermediate_dim=64, num_heads=4
    ... )
    >>> x = np.random.rand(2, 10, 32).astype("float32")
    >>> padding_mask = np.arange(10)[None] < np.array([[10], [6]])
    >>> tuple(encoder(x, padding_mask=padding_mask).shape)
    (2, 10, 32)

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Xiong et al., "On Layer Normalization in the Transformer
          Architecture", 2020.
    """

    _bidirectional = True

    def build(self, inputs_shape):
        inputs_shape = tuple(inputs_shape)
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(
                "`inputs` must have shape (batch, length, features) with "
                f"known features. Received: inputs.shape={inputs_shape}"
            )
        self._hidden_dim = inputs_shape[-1]
        key_dim = self._key_dim(self._hidden_dim)
        # Sublayers in keras-hub's order, so that the variables line up.
        self._self_attention_layer = self._attention(
            key_dim, "self_attention_layer", self_attention=True
        )
        self._self_attention_layer.build(inputs_shape, inputs_shape)
        self._self_attention_layer_norm = self._norm(
            "self_attention_layer_norm"
        )
        self._self_attention_layer_norm.build(inputs_shape)
        self._self_attention_dropout = self._dropout("self_attention_dropout")
        self._feedforward_layer_norm = self._norm("feedforward_layer_norm")
        self._feedforward_layer_norm.build(inputs_shape)
        self._feedforward_layer = self._feedforward()
        self._feedforward_layer.build(inputs_shape)
        self._feedforward_dropout = self._dropout("feedforward_dropout")
        self._build_position_bias(inputs_shape)
        self._restore_lora()
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        mask=None,
        inputs_mask=None,
    ):
        check_sequence("inputs", inputs, self._hidden_dim)
        check_masks(
            "inputs",
            inputs,
            ("padding_mask", padding_mask),
            ("attention_mask", attention_mask),
        )
        # (B, 1 | T, T) boolean, or None.
        mask = merge_masks(
            padding_mask,
            attention_mask,
            inputs_mask if inputs_mask is not None else mask,
        )
        length = inputs.shape[1] or keras.ops.shape(inputs)[1]
        bias = self._position_bias(length, length, 0)

        # Self-attention block.
        residual = x = inputs
        if self.normalize_first:
            x = self._self_attention_layer_norm(x)
        outputs = self._self_attention_layer(
            query=x,
            value=x,
            attention_mask=mask,
            attention_bias=bias,
            return_attention_scores=return_attention_scores,
            training=training,
        )
        x, scores = outputs if return_attention_scores else (outputs, None)
        x = self._residual(
            x,
            residual,
            self._self_attention_layer_norm,
            self._self_attention_dropout,
            training,
        )

        x = self._feedforward_block(x, training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape)

    def compute_output_spec(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        training=None,
        return_attention_scores=False,
        mask=None,
        inputs_mask=None,
    ):
        output = keras.KerasTensor(inputs.shape, dtype=self.compute_dtype)
        if not return_attention_scores:
            return output
        batch, length = inputs.shape[0], inputs.shape[1]
        scores = keras.KerasTensor(
            (batch, self.num_heads, length, length), dtype=self.compute_dtype
        )
        return output, scores
