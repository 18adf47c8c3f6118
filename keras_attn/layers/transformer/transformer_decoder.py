import keras

from keras_attn.layers.transformer._decoding_step import can_step_plainly
from keras_attn.layers.transformer._decoding_step import plain_decoder_step
from keras_attn.layers.transformer._decoding_step import plain_step_sizes
from keras_attn.layers.transformer._transformer_block import TransformerBlock
from keras_attn.layers.transformer._utils import check_masks
from keras_attn.layers.transformer._utils import check_scores_flag
from keras_attn.layers.transformer._utils import check_sequence
from keras_attn.layers.transformer._utils import merge_masks
from keras_attn.layers.transformer._utils import static_length
from keras_attn.layers.transformer._utils import unpack_attention


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerDecoder(TransformerBlock):
    """Transformer decoder block: causal self-attention, cross-attention, MLP.

    The block of the original transformer's decoder: masked (causal)
    self-attention over the decoder sequence, attention from the decoder
    sequence to the encoder's output, and a position-wise feed-forward
    network, each wrapped in a residual connection with normalization (after
    the residual, or before the sublayer with `normalize_first=True`). A
    block first called without an `encoder_sequence` has no cross-attention
    at all: it is the block of decoder-only language models (GPT).

    For autoregressive decoding the self-attention (and cross-attention)
    keys and values can be kept in preallocated caches: at step `i` the block
    sees only the new token, writes its keys and values at position `i` of
    `self_attention_cache`, and attends to positions `<= i`.

    With the default options the block is `keras_hub.layers.TransformerDecoder`:
    same arguments, call arguments, return values, and variables in the same
    order. The extra options are those of `TransformerEncoder`; `position`
    and `sliding_window` apply to the self-attention only, and the ALiBi and
    relative biases are the causal (one-sided) ones.

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
            value heads (grouped-query attention); the caches then hold
            `num_key_value_heads` heads. Defaults to `num_heads`.
        gated: bool, a gated (GLU) feed-forward: SwiGLU with
            `activation="silu"`, GeGLU with `"gelu"`. Defaults to `False`.
        norm: `"layer_norm"` or `"rms_norm"`. Defaults to `"layer_norm"`.
        position: None, `"rotary"`, `"alibi"` or `"relative"`, a position
            scheme inside the self-attention, or a `RotaryEmbedding` layer
            used as the rotary embedding (for example with `rope_type=
            "llama3"`). Defaults to None.
        sliding_window: positive int or None, each position attends only
            itself and the `sliding_window - 1` positions before it.
        attention_dropout: float in `[0, 1)` or None, dropout on the
            attention weights. Defaults to `dropout`.
        **kwargs: other arguments of `keras.layers.Layer` (`name`, `dtype`).

    Call arguments:
        decoder_sequence: `(B, T, D)` tensor.
        encoder_sequence: optional `(B, S, D_e)` tensor, the encoder output.
            Give it on every call or on none.
        decoder_padding_mask: optional boolean `(B, T)` (`(B, S_max)` with
            a cache), False at padded decoder positions. Defaults to the
            Keras mask of `decoder_sequence`.
        decoder_attention_mask: optional boolean `(B, T, T)` (`(B, T,
            S_max)` with a cache), combined with the causal mask.
        encoder_padding_mask: optional boolean `(B, S)`, False at padded
            encoder positions. Defaults to the Keras mask of
            `encoder_sequence`.
        encoder_attention_mask: optional boolean `(B, T, S)`.
        self_attention_cache: optional `(B, 2, S_max, K, H)` key/value cache
            of the self-attention (`K` key/value heads of size `H`).
        self_attention_cache_update_index: int or scalar int tensor, the
            position of the first token of `decoder_sequence`; its keys and
            values are written into the cache there.
        cross_attention_cache: optional `(B, 2, S, K, H)` cache of the
            cross-attention keys and values; needed with
            `self_attention_cache` when the block has cross-attention.
        cross_attention_cache_update_index: `0` to compute the cache from
            `encoder_sequence`, None to reuse it as is.
        use_causal_mask: bool, position `i` attends only positions `<= i`.
            Defaults to `True`.
        training: bool, whether dropout is active.
        return_attention_scores: bool or `"all"`. True: also return the
            attention weights `(B, N, T, S)`, of the cross-attention when
            the block has one, else of the self-attention (`S` = the cache
            length with a cache, whose unwritten positions get 0). `"all"`:
            a dict of both, `{"self_attention": ..., "cross_attention":
            ...}` (the second only with cross-attention). Defaults to
            `False`.
        mask, decoder_sequence_mask, encoder_sequence_mask: the Keras masks
            of the sequences, filled in by Keras (`mask` when
            `decoder_sequence` is the only tensor argument); they stand in
            for missing padding masks. Not to be passed by hand.

    Returns:
        The output `(B, T, D)`; with `return_attention_scores`, `(output,
        scores)`; with caches, the updated `self_attention_cache` and (with
        cross-attention) `cross_attention_cache` follow, in that order.

    Example:

    ```python
    import numpy as np
    import keras_attn

    decoder = keras_attn.layers.TransformerDecoder(
        intermediate_dim=64, num_heads=4
    )
    x = np.random.rand(2, 6, 32).astype("float32")
    memory = np.random.rand(2, 9, 32).astype("float32")
    outputs = decoder(x, memory)  # (2, 6, 32)
    # One cached step at position 3.
    self_cache = np.zeros((2, 2, 6, 4, 8), "float32")
    cross_cache = np.zeros((2, 2, 9, 4, 8), "float32")
    step, self_cache, cross_cache = decoder(
        x[:, 3:4],
        memory,
        self_attention_cache=self_cache,
        self_attention_cache_update_index=3,
        cross_attention_cache=cross_cache,
        cross_attention_cache_update_index=0,
    )  # step: (2, 1, 32)
    ```

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Radford et al., "Language Models are Unsupervised Multitask
          Learners", 2019.
    """

    _bidirectional = False

    @classmethod
    def from_config(cls, config):
        # keras-hub's config carries the build shapes; accept them, so that
        # `from_config(hub_decoder.get_config())` gives a built block.
        config = dict(config)
        decoder_shape = config.pop("decoder_sequence_shape", None)
        encoder_shape = config.pop("encoder_sequence_shape", None)
        layer = super().from_config(config)
        if decoder_shape is not None:
            layer.build(decoder_shape, encoder_shape)
        return layer

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None):
        decoder_sequence_shape = tuple(decoder_sequence_shape)
        if (
            len(decoder_sequence_shape) != 3
            or decoder_sequence_shape[-1] is None
        ):
            raise ValueError(
                "`decoder_sequence` must have shape (batch, length, features) "
                "with known features. Received: decoder_sequence.shape="
                f"{decoder_sequence_shape}"
            )
        self._hidden_dim = decoder_sequence_shape[-1]
        self._encoder_dim = None
        key_dim = self._key_dim(self._hidden_dim)
        # Sublayers in keras-hub's order, so that the variables line up.
        self._self_attention_layer = self._attention(
            key_dim, "self_attention", self_attention=True
        )
        self._self_attention_layer.build(
            decoder_sequence_shape, decoder_sequence_shape
        )
        self._self_attention_layer_norm = self._norm(
            "self_attention_layer_norm"
        )
        self._self_attention_layer_norm.build(decoder_sequence_shape)
        self._self_attention_dropout = self._dropout("self_attention_dropout")
        self._cross_attention_layer = None
        if encoder_sequence_shape is not None:
            encoder_sequence_shape = tuple(encoder_sequence_shape)
            if (
                len(encoder_sequence_shape) != 3
                or encoder_sequence_shape[-1] is None
            ):
                raise ValueError(
                    "`encoder_sequence` must have shape (batch, length, "
                    "features) with known features. Received: "
                    f"encoder_sequence.shape={encoder_sequence_shape}"
                )
            self._encoder_dim = encoder_sequence_shape[-1]
            self._cross_attention_layer = self._attention(
                key_dim, "cross_attention", self_attention=False
            )
            self._cross_attention_layer.build(
                decoder_sequence_shape, encoder_sequence_shape
            )
            self._cross_attention_layer_norm = self._norm(
                "cross_attention_layer_norm"
            )
            self._cross_attention_layer_norm.build(decoder_sequence_shape)
            self._cross_attention_dropout = self._dropout(
                "cross_attention_dropout"
            )
        self._feedforward_layer = self._feedforward()
        self._feedforward_layer.build(decoder_sequence_shape)
        self._feedforward_layer_norm = self._norm("feedforward_layer_norm")
        self._feedforward_layer_norm.build(decoder_sequence_shape)
        self._feedforward_dropout = self._dropout("feedforward_dropout")
        self._build_position_bias(decoder_sequence_shape)
        self._restore_lora()
        self._plain_step_sizes = plain_step_sizes(self)
        self.built = True

    def _check_call(
        self,
        decoder_sequence,
        encoder_sequence,
        decoder_padding_mask,
        decoder_attention_mask,
        encoder_padding_mask,
        encoder_attention_mask,
        self_attention_cache,
        self_attention_cache_update_index,
        cross_attention_cache,
    ):
        has_cross = self._cross_attention_layer is not None
        if has_cross != (encoder_sequence is not None):
            raise ValueError(
                "`encoder_sequence` must be given on every call or on none: "
                "the block was built "
                f"{'with' if has_cross else 'without'} cross-attention. "
                "Received: encoder_sequence="
                f"{'None' if encoder_sequence is None else 'a tensor'}"
            )
        if has_cross and (self_attention_cache is None) != (
            cross_attention_cache is None
        ):
            raise ValueError(
                "With cross-attention, `self_attention_cache` and "
                "`cross_attention_cache` must both be given or both be None. "
                "Received: self_attention_cache="
                f"{'None' if self_attention_cache is None else 'a tensor'}, "
                "cross_attention_cache="
                f"{'None' if cross_attention_cache is None else 'a tensor'}"
            )
        if self_attention_cache is not None and (
            self_attention_cache_update_index is None
        ):
            raise ValueError(
                "`self_attention_cache` needs a "
                "`self_attention_cache_update_index`. Received: "
                "self_attention_cache_update_index=None"
            )
        check_sequence("decoder_sequence", decoder_sequence, self._hidden_dim)
        key_length = None
        if self_attention_cache is not None:
            key_length = self_attention_cache.shape[2]
        check_masks(
            "decoder_sequence",
            decoder_sequence,
            ("decoder_padding_mask", decoder_padding_mask),
            ("decoder_attention_mask", decoder_attention_mask),
            key_length=key_length,
        )
        if has_cross:
            check_sequence(
                "encoder_sequence", encoder_sequence, self._encoder_dim
            )
            encoder_length = encoder_sequence.shape[1]
            if cross_attention_cache is not None:
                encoder_length = cross_attention_cache.shape[2]
            check_masks(
                "encoder_sequence",
                encoder_sequence,
                ("encoder_padding_mask", encoder_padding_mask),
                (None, None),
                key_length=encoder_length,
            )
            check_masks(
                "decoder_sequence",
                decoder_sequence,
                (None, None),
                ("encoder_attention_mask", encoder_attention_mask),
                key_length=encoder_length,
            )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        decoder_attention_mask=None,
        encoder_padding_mask=None,
        encoder_attention_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
        use_causal_mask=True,
        training=None,
        return_attention_scores=False,
        mask=None,
        decoder_sequence_mask=None,
        encoder_sequence_mask=None,
    ):
        self._check_call(
            decoder_sequence,
            encoder_sequence,
            decoder_padding_mask,
            decoder_attention_mask,
            encoder_padding_mask,
            encoder_attention_mask,
            self_attention_cache,
            self_attention_cache_update_index,
            cross_attention_cache,
        )
        if self._plain_step_sizes is not None and can_step_plainly(
            self,
            self_attention_cache,
            (decoder_padding_mask, decoder_attention_mask, mask),
            decoder_sequence_mask,
            use_causal_mask and not return_attention_scores,
            training,
        ):
            return plain_decoder_step(
                self,
                decoder_sequence,
                self_attention_cache,
                self_attention_cache_update_index,
            )
        has_cache = self_attention_cache is not None
        has_cross = self._cross_attention_layer is not None
        # Which sublayers return scores: the last one, or both with "all".
        want_all = check_scores_flag(return_attention_scores)
        want_self = bool(return_attention_scores) and not has_cross
        want_self = want_self or want_all
        # (B, 1 | T, S) boolean or None; the causal mask is added by the
        # attention layer (aligned to the cache index with a cache).
        self_mask = merge_masks(
            decoder_padding_mask,
            decoder_attention_mask,
            decoder_sequence_mask
            if decoder_sequence_mask is not None
            else mask,
        )
        query_length = static_length(decoder_sequence, 1)
        key_length = (
            static_length(self_attention_cache, 2)
            if has_cache
            else query_length
        )
        start_index = self_attention_cache_update_index if has_cache else 0
        bias = self._position_bias(query_length, key_length, start_index)

        # Self-attention block.
        x, scores, self_attention_cache = self._attention_block(
            self._self_attention_layer,
            self._self_attention_layer_norm,
            self._self_attention_dropout,
            decoder_sequence,
            has_cache,
            want_self,
            training,
            attention_mask=self_mask,
            use_causal_mask=use_causal_mask,
            attention_bias=bias,
            cache=self_attention_cache,
            cache_update_index=self_attention_cache_update_index,
        )

        scores = {"self_attention": scores} if want_all else scores
        # Cross-attention block.
        if has_cross:
            cross_mask = merge_masks(
                encoder_padding_mask,
                encoder_attention_mask,
                encoder_sequence_mask,
            )
            x, cross_scores, cross_attention_cache = self._attention_block(
                self._cross_attention_layer,
                self._cross_attention_layer_norm,
                self._cross_attention_dropout,
                x,
                cross_attention_cache is not None,
                bool(return_attention_scores),
                training,
                value=encoder_sequence,
                attention_mask=cross_mask,
                cache=cross_attention_cache,
                cache_update_index=cross_attention_cache_update_index,
            )
            if want_all:
                scores["cross_attention"] = cross_scores
            else:
                scores = cross_scores

        x = self._feedforward_block(x, training)
        outputs = (x, scores) if return_attention_scores else (x,)
        if has_cache:
            outputs += (self_attention_cache,)
            if has_cross:
                outputs += (cross_attention_cache,)
        return outputs[0] if len(outputs) == 1 else outputs

    def _attention_block(
        self,
        layer,
        norm,
        dropout,
        x,
        has_cache,
        return_attention_scores,
        training,
        **attention_kwargs,
    ):
        """An attention sublayer with its residual and normalization.

        Self-attention when `attention_kwargs` has no `value` (the query
        attends to itself), cross-attention otherwise. Returns
        `(output, scores or None, cache or None)`.
        """
        residual = x
        if self.normalize_first:
            x = norm(x)
        attention_kwargs.setdefault("value", x)
        outputs = layer(
            query=x,
            return_attention_scores=return_attention_scores,
            training=training,
            **attention_kwargs,
        )
        x, scores, cache = unpack_attention(
            outputs, return_attention_scores, has_cache
        )
        x = self._residual(x, residual, norm, dropout, training)
        return x, scores, cache

    def compute_output_shape(
        self, decoder_sequence_shape, encoder_sequence_shape=None
    ):
        return tuple(decoder_sequence_shape)

    def compute_output_spec(
        self, decoder_sequence, encoder_sequence=None, **kwargs
    ):
        self_attention_cache = kwargs.get("self_attention_cache")
        cross_attention_cache = kwargs.get("cross_attention_cache")
        return_attention_scores = kwargs.get("return_attention_scores")
        outputs = (
            keras.KerasTensor(decoder_sequence.shape, dtype=self.compute_dtype),
        )
        if return_attention_scores:
            # (B, N, T, S): S the encoder's or the decoder's (cache) length.
            def spec(keys, cache):
                length = keys.shape[1] if cache is None else cache.shape[2]
                shape = decoder_sequence.shape[:2]
                shape = (shape[0], self.num_heads, shape[1], length)
                return keras.KerasTensor(shape, dtype=self.compute_dtype)

            scores = {
                "self_attention": spec(decoder_sequence, self_attention_cache)
            }
            if self._cross_attention_layer is not None:
                scores["cross_attention"] = spec(
                    encoder_sequence, cross_attention_cache
                )
            if return_attention_scores != "all":
                scores = list(scores.values())[-1]
            outputs += (scores,)
        if self_attention_cache is not None:
            outputs += (
                keras.KerasTensor(
                    self_attention_cache.shape,
                    dtype=self_attention_cache.dtype,
                ),
            )
        if cross_attention_cache is not None:
            outputs += (
                keras.KerasTensor(
                    cross_attention_cache.shape,
                    dtype=cross_attention_cache.dtype,
                ),
            )
        return outputs[0] if len(outputs) == 1 else outputs
