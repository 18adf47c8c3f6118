import keras
from keras import ops

from keras_attn._compat import inference_mode
from keras_attn.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attn.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer.transformer_encoder import TransformerEncoder
from keras_attn.models._decoding import check_method
from keras_attn.models._decoding import check_model_sizes
from keras_attn.models._decoding import check_positive_int
from keras_attn.models._decoding import decode

_KEYS = ("encoder_token_ids", "decoder_token_ids")


@keras.saving.register_keras_serializable(package="keras_attn")
class Transformer(keras.Model):
    """The encoder-decoder transformer of "Attention Is All You Need".

    The source tokens go through token and position embeddings and
    `num_layers` `TransformerEncoder` blocks; the target tokens through
    their own embeddings and `num_layers` `TransformerDecoder` blocks that
    attend causally to the target and to the encoder output. The decoder
    output is projected to the vocabulary by the transposed target token
    embedding (`tie_weights=True`, as in the paper) or a separate matrix.
    Source and target share one vocabulary. Post-norm blocks as in the
    paper by default; `normalize_first=True` makes them pre-norm and adds a
    final normalization to the encoder and decoder stacks.

    `generate` translates with greedy search, beam search or sampling; the
    encoder runs once, the cross-attention keys and values are computed
    once, and each step feeds one token against preallocated
    self-attention caches.

    Args:
        vocabulary_size: int, the number of token ids `V`.
        max_sequence_length: int, the longest source or target sequence
            (the target including its start token).
        num_layers: int, the number of encoder and of decoder blocks.
            Defaults to `2`.
        num_heads: int, attention heads per block. Defaults to `4`.
        hidden_dim: int, the model width `D` (a multiple of `num_heads`).
            Defaults to `128`.
        intermediate_dim: int, the feed-forward width. Defaults to
            `4 * hidden_dim`.
        dropout: float in `[0, 1)`. Defaults to `0.0`.
        layer_norm_epsilon: float. Defaults to `1e-5`.
        normalize_first: bool, pre-norm blocks. Defaults to `False`.
        tie_weights: bool, whether the output projection is the transposed
            target token embedding. Defaults to `True`.
        padding_token: optional int; source positions holding it are
            masked out of every attention. Defaults to None.
        **kwargs: other arguments of `keras.Model` (`name`, `dtype`).

    Call arguments:
        inputs: a dict with `"encoder_token_ids"` `(B, S)` and
            `"decoder_token_ids"` `(B, T)` integer tensors (or the pair).
        training: bool, whether dropout is active.

    Returns:
        Logits `(B, T, V)` of the token after each decoder position.

    Example:

    >>> import numpy as np
    >>> from keras_attn.models import Transformer
    >>> model = Transformer(
    ...     vocabulary_size=20, max_sequence_length=12, hidden_dim=32
    ... )
    >>> source = np.array([[5, 6, 7, 8], [9, 10, 11, 0]])
    >>> logits = model(
    ...     {"encoder_token_ids": source, "decoder_token_ids": source}
    ... )
    >>> tuple(logits.shape)
    (2, 4, 20)
    >>> tuple(model.generate(source, max_length=6, start_token=1).shape)
    (2, 6)

    References:
        - Vaswani et al., "Attention Is All You Need", 2017.
        - Press and Wolf, "Using the Output Embedding to Improve Language
          Models", 2017.
    """

    def __init__(
        self,
        vocabulary_size,
        max_sequence_length,
        num_layers=2,
        num_heads=4,
        hidden_dim=128,
        intermediate_dim=None,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        normalize_first=False,
        tie_weights=True,
        padding_token=None,
        **kwargs,
    ):
        check_model_sizes(
            vocabulary_size,
            max_sequence_length,
            num_layers,
            num_heads,
            hidden_dim,
            intermediate_dim,
        )
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.max_sequence_length = max_sequence_length
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim or 4 * hidden_dim
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.normalize_first = normalize_first
        self.tie_weights = tie_weights
        self.padding_token = padding_token

        def embedding(name):
            return TokenAndPositionEmbedding(
                vocabulary_size,
                max_sequence_length,
                hidden_dim,
                tie_weights=tie_weights,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=0.02
                ),
                dtype=self.dtype_policy,
                name=name,
            )

        block_kwargs = dict(
            intermediate_dim=self.intermediate_dim,
            num_heads=num_heads,
            dropout=dropout,
            layer_norm_epsilon=layer_norm_epsilon,
            normalize_first=normalize_first,
            dtype=self.dtype_policy,
        )
        self.encoder_embedding = embedding("encoder_embedding")
        self.encoder_blocks = [
            TransformerEncoder(**block_kwargs, name=f"encoder_block_{i}")
            for i in range(num_layers)
        ]
        self.decoder_embedding = embedding("decoder_embedding")
        self.decoder_blocks = [
            TransformerDecoder(**block_kwargs, name=f"decoder_block_{i}")
            for i in range(num_layers)
        ]
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.encoder_norm = self.decoder_norm = None
        if normalize_first:
            self.encoder_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="encoder_norm",
            )
            self.decoder_norm = keras.layers.LayerNormalization(
                epsilon=layer_norm_epsilon,
                dtype=self.dtype_policy,
                name="decoder_norm",
            )

    # -- pieces -------------------------------------------------------------

    def _split(self, inputs):
        if isinstance(inputs, dict) and all(k in inputs for k in _KEYS):
            return inputs[_KEYS[0]], inputs[_KEYS[1]]
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError(
            "`inputs` must be a dict with keys "
            f"{_KEYS} or a pair. Received: inputs={inputs!r}"
        )

    def _check_ids(self, name, token_ids):
        shape = tuple(token_ids.shape)
        if len(shape) != 2:
            raise ValueError(
                f"`{name}` must have shape (batch, length). Received: "
                f"{name}.shape={shape}"
            )
        if shape[1] is not None and shape[1] > self.max_sequence_length:
            raise ValueError(
                f"`{name}` is longer than `max_sequence_length` "
                f"({self.max_sequence_length}). Received: {name}.shape={shape}"
            )

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            source_shape = input_shape.get(_KEYS[0])
            target_shape = input_shape.get(_KEYS[1])
        elif isinstance(input_shape, (list, tuple)) and len(input_shape) == 2:
            source_shape, target_shape = input_shape
        else:
            source_shape = target_shape = None
        if source_shape is None or target_shape is None:
            raise ValueError(
                f"`inputs` must be a dict with keys {_KEYS} or a pair. "
                f"Received shapes: {input_shape}"
            )
        source_shape, target_shape = tuple(source_shape), tuple(target_shape)
        for name, shape in zip(_KEYS, (source_shape, target_shape)):
            if len(shape) != 2:
                raise ValueError(
                    f"`{name}` must have shape (batch, length). Received: "
                    f"{name}.shape={shape}"
                )
        source_hidden = source_shape + (self.hidden_dim,)
        target_hidden = target_shape + (self.hidden_dim,)
        self.encoder_embedding.build(source_shape)
        for block in self.encoder_blocks:
            block.build(source_hidden)
        self.decoder_embedding.build(target_shape)
        for block in self.decoder_blocks:
            block.build(target_hidden, source_hidden)
        if self.normalize_first:
            self.encoder_norm.build(source_hidden)
            self.decoder_norm.build(target_hidden)
        self.built = True

    def encoder_padding_mask(self, encoder_token_ids):
        """`(B, S)` boolean mask of the non-padding source tokens, or None."""
        if self.padding_token is None:
            return None
        return ops.not_equal(encoder_token_ids, self.padding_token)

    def encode(self, encoder_token_ids, training=None):
        """Runs the encoder stack: `(B, S)` ids -> `(B, S, D)`."""
        self._check_ids("encoder_token_ids", encoder_token_ids)
        padding_mask = self.encoder_padding_mask(encoder_token_ids)
        x = self.encoder_embedding(encoder_token_ids)
        if self.dropout > 0:
            x = self.embedding_dropout(x, training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x

    def _logits(self, x):
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        # (B, T, D) -> (B, T, V)
        return self.decoder_embedding.token_embedding(x, reverse=True)

    def call(self, inputs, training=None):
        encoder_token_ids, decoder_token_ids = self._split(inputs)
        self._check_ids("decoder_token_ids", decoder_token_ids)
        memory = self.encode(encoder_token_ids, training=training)
        memory_mask = self.encoder_padding_mask(encoder_token_ids)
        x = self.decoder_embedding(decoder_token_ids)
        if self.dropout > 0:
            x = self.embedding_dropout(x, training=training)
        for block in self.decoder_blocks:
            x = block(
                x, memory, encoder_padding_mask=memory_mask, training=training
            )
        return self._logits(x)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            target_shape = input_shape[_KEYS[1]]
        else:
            target_shape = input_shape[1]
        return tuple(target_shape) + (self.vocabulary_size,)

    # -- cached decoding ------------------------------------------------------

    def call_with_cache(
        self,
        decoder_token_ids,
        memory,
        memory_mask,
        self_cache,
        cross_cache,
        cache_update_index,
        cross_cache_update_index=None,
    ):
        """Runs the decoder on new tokens against the caches.

        Args:
            decoder_token_ids: `(B, T)` new target tokens, at positions
                `cache_update_index + t`.
            memory: `(B, S, D)` encoder output.
            memory_mask: `(B, S)` boolean or None.
            self_cache: tuple of per-block `(B, 2, L, N, H)` caches.
            cross_cache: tuple of per-block `(B, 2, S, N, H)` caches.
            cache_update_index: int or scalar int tensor.
            cross_cache_update_index: `0` to compute the cross caches from
                `memory`, None to reuse them.

        Returns:
            `(logits, self_cache, cross_cache)`.
        """
        x = self.decoder_embedding(
            decoder_token_ids, start_index=cache_update_index
        )
        new_self, new_cross = [], []
        for block, s_cache, c_cache in zip(
            self.decoder_blocks, self_cache, cross_cache
        ):
            x, s_cache, c_cache = block(
                x,
                memory,
                encoder_padding_mask=memory_mask,
                self_attention_cache=s_cache,
                self_attention_cache_update_index=cache_update_index,
                cross_attention_cache=c_cache,
                cross_attention_cache_update_index=cross_cache_update_index,
            )
            new_self.append(s_cache)
            new_cross.append(c_cache)
        return self._logits(x), tuple(new_self), tuple(new_cross)

    def generate(
        self,
        encoder_token_ids,
        max_length,
        start_token,
        end_token=None,
        method="greedy",
        use_cache=True,
        pad_token=None,
        **options,
    ):
        """Decodes a target for each source sequence.

        Args:
            encoder_token_ids: `(B, S)` integer source tokens.
            max_length: int, the number of tokens to generate.
            start_token: int fed to the decoder first.
            end_token: optional int; a sequence stops after it.
            method: `"greedy"`, `"beam"` or `"sample"`.
            use_cache: bool, decode one token per step against key/value
                caches (fast) or re-run the decoder on the whole prefix.
            pad_token: int written after `end_token`. Defaults to
                `padding_token`, else 0.
            **options: arguments of the decoding loop: `beam_width`,
                `length_penalty` (beam); `temperature`, `top_k`, `top_p`,
                `seed` (sample).

        Returns:
            `(B, max_length)` int32 generated tokens (without the start
            token).
        """
        with inference_mode():
            return self._generate(
                encoder_token_ids,
                max_length,
                start_token,
                end_token,
                method,
                use_cache,
                pad_token,
                options,
            )

    def _generate(
        self,
        encoder_token_ids,
        max_length,
        start_token,
        end_token,
        method,
        use_cache,
        pad_token,
        options,
    ):
        check_method(method)
        check_positive_int("max_length", max_length)
        encoder_token_ids = ops.convert_to_tensor(encoder_token_ids, "int32")
        self._check_ids("encoder_token_ids", encoder_token_ids)
        if max_length + 1 > self.max_sequence_length:
            raise ValueError(
                "`max_length` plus the start token must fit in "
                f"`max_sequence_length` ({self.max_sequence_length}). "
                f"Received: max_length={max_length}"
            )
        if pad_token is None:
            pad_token = self.padding_token or 0
        batch_size, source_length = encoder_token_ids.shape
        if not self.built:
            self.build({_KEYS[0]: (None, None), _KEYS[1]: (None, None)})
        memory = self.encode(encoder_token_ids)
        memory_mask = self.encoder_padding_mask(encoder_token_ids)
        if memory_mask is None:
            memory_mask = ops.ones((batch_size, source_length), "bool")
        length = max_length + 1
        tokens = ops.concatenate(
            [
                ops.full((batch_size, 1), start_token, dtype="int32"),
                ops.full((batch_size, max_length), pad_token, dtype="int32"),
            ],
            axis=1,
        )  # (B, 1 + max_length)

        if use_cache:
            head_dim = self.hidden_dim // self.num_heads

            def zeros(n):
                shape = (batch_size, 2, n, self.num_heads, head_dim)
                return tuple(
                    ops.zeros(shape, self.compute_dtype)
                    for _ in self.decoder_blocks
                )

            # Prefill: the start token's self-attention keys and values, and
            # the cross-attention keys and values, computed once.
            _, self_cache, cross_cache = self.call_with_cache(
                tokens[:, :1],
                memory,
                memory_mask,
                zeros(length),
                zeros(source_length),
                0,
                cross_cache_update_index=0,
            )
            cache = {
                "self": self_cache,
                "cross": cross_cache,
                "memory": memory,
                "memory_mask": memory_mask,
            }

            def next_fn(tokens, cache, index):
                # (B, 1): the token at index - 1.
                previous = ops.expand_dims(ops.take(tokens, index - 1, 1), 1)
                logits, self_cache, cross_cache = self.call_with_cache(
                    previous,
                    cache["memory"],
                    cache["memory_mask"],
                    cache["self"],
                    cache["cross"],
                    index - 1,
                )
                cache = dict(cache, self=self_cache, cross=cross_cache)
                return logits[:, 0, :], cache

        else:
            cache = {"memory": memory, "memory_mask": memory_mask}

            def next_fn(tokens, cache, index):
                x = self.decoder_embedding(tokens)
                for block in self.decoder_blocks:
                    x = block(
                        x,
                        cache["memory"],
                        encoder_padding_mask=cache["memory_mask"],
                    )
                logits = self._logits(x)  # (B, L, V), causal
                return ops.take(logits, index - 1, axis=1), cache

        options = dict(options, end_token=end_token, pad_token=pad_token)
        tokens = decode(next_fn, tokens, cache, 1, method, options)
        return tokens[:, 1:]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "max_sequence_length": self.max_sequence_length,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "tie_weights": self.tie_weights,
                "padding_token": self.padding_token,
            }
        )
        return config
