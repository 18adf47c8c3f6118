import keras
from keras import ops

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_rank
from keras_attn._validation import static_shape
from keras_attn._validation_tokens import check_same_batch
from keras_attn._validation_tokens import check_token_ids
from keras_attn.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attn.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer.transformer_encoder import TransformerEncoder
from keras_attn.models._attention_maps import seq2seq_attention_scores
from keras_attn.models._decoding import check_model_sizes
from keras_attn.models._decoding import encoder_decoder_step
from keras_attn.models._decoding import generate
from keras_attn.models._decoding import parse_seq2seq_inputs
from keras_attn.models._decoding import store_sizes
from keras_attn.models._generate_mixin import GenerateMixin

_KEYS = ("encoder_token_ids", "token_ids")
_MASK_KEYS = ("encoder_padding_mask", "padding_mask")


@keras.saving.register_keras_serializable(package="keras_attn")
class Transformer(AdapterMixin, GenerateMixin, keras.Model):
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

    `generate` translates with greedy search, beam search or sampling
    (the contract shared with `TransformerLM` and `RNNSeq2Seq`, stated in
    the `keras_attn.models` docs); the encoder runs once, the
    cross-attention keys and values are computed once, and each step feeds
    one token against preallocated self-attention caches.

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
            `"token_ids"` `(B, T)` (the decoder input) integer tensors, and
            optionally `"encoder_padding_mask"` `(B, S)` and
            `"padding_mask"` `(B, T)` booleans, True on real tokens (or the
            pair of token tensors).
        training: bool, whether dropout is active.

    Returns:
        Logits `(B, T, V)` of the token after each decoder position.

    Example:

    ```python
    import numpy as np
    from keras_attn.models import Transformer

    model = Transformer(
        vocabulary_size=20, max_sequence_length=12, hidden_dim=32
    )
    source = np.array([[5, 6, 7, 8], [9, 10, 11, 0]])
    logits = model({"encoder_token_ids": source, "token_ids": source})
    # logits: (2, 4, 20)
    tokens = model.generate(source, max_length=6, start_token=1)
    # tokens: (2, 6), the start token first
    ```

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
        store_sizes(
            self,
            vocabulary_size,
            max_sequence_length,
            num_layers,
            num_heads,
            hidden_dim,
            intermediate_dim,
        )
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
        """`(encoder_token_ids, token_ids, encoder_mask, decoder_mask)`."""
        if isinstance(inputs, dict) and all(k in inputs for k in _KEYS):
            unknown = sorted(set(inputs) - set(_KEYS + _MASK_KEYS))
            if unknown:
                raise ValueError(
                    f"`inputs` accepts the keys {_KEYS + _MASK_KEYS}. "
                    f"Received unknown keys: {unknown}"
                )
            return tuple(inputs.get(k) for k in _KEYS + _MASK_KEYS)
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return inputs[0], inputs[1], None, None
        raise ValueError(
            f"`inputs` must be a dict with keys {_KEYS} or a pair. "
            f"Received: inputs={inputs!r}"
        )

    def _check_ids(self, name, token_ids):
        check_rank(name, token_ids, 2, "(batch, length)")
        shape = static_shape(token_ids)  # (JAX export: symbolic -> None)
        if shape[1] is not None and shape[1] > self.max_sequence_length:
            raise ValueError(
                f"`{name}` is longer than `max_sequence_length` "
                f"({self.max_sequence_length}). Received: {name}.shape={shape}"
            )
        check_token_ids(name, token_ids, self.vocabulary_size)

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
        self._restore_lora()
        self.built = True

    def encoder_padding_mask(self, encoder_token_ids, padding_mask=None):
        """`(B, S)` boolean mask of the real source tokens, or None.

        False where the source holds `padding_token` or where
        `padding_mask` (optional, `(B, S)`) is False.
        """
        mask = None
        if self.padding_token is not None:
            mask = ops.not_equal(encoder_token_ids, self.padding_token)
        if padding_mask is not None:
            padding_mask = ops.cast(padding_mask, "bool")
            mask = (
                padding_mask
                if mask is None
                else ops.logical_and(mask, padding_mask)
            )
        return mask

    def encode(self, encoder_token_ids, padding_mask=None, training=None):
        """Runs the encoder stack: `(B, S)` ids -> `(B, S, D)`.

        `padding_mask`: optional `(B, S)` boolean, True on real tokens.
        """
        self._check_ids("encoder_token_ids", encoder_token_ids)
        padding_mask = self.encoder_padding_mask(
            encoder_token_ids, padding_mask
        )
        x = self.encoder_embedding(encoder_token_ids)
        if self.dropout > 0:
            x = self.embedding_dropout(x, training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x

    def _final(self, x):
        # The decoder stack's output -> final hidden states (B, T, D).
        return x if self.decoder_norm is None else self.decoder_norm(x)

    def _head(self, hidden):
        # (..., D) final hidden states -> (..., V)
        return self.decoder_embedding.token_embedding(hidden, reverse=True)

    def call(self, inputs, training=None):
        source, token_ids, source_mask, target_mask = self._split(inputs)
        self._check_ids("token_ids", token_ids)
        check_same_batch(source, token_ids)
        memory = self.encode(source, source_mask, training=training)
        memory_mask = self.encoder_padding_mask(source, source_mask)
        return self.decode(
            token_ids, memory, memory_mask, target_mask, training=training
        )

    def decode(
        self,
        token_ids,
        memory,
        memory_mask,
        padding_mask=None,
        with_scores=False,
        training=None,
    ):
        """Runs the decoder stack on `(B, T)` target ids.

        Args:
            token_ids: `(B, T)` integer target tokens.
            memory: `(B, S, D)`, the output of `encode`.
            memory_mask: `(B, S)` boolean or None, True on real source
                tokens (`encoder_padding_mask`).
            padding_mask: optional `(B, T)` boolean, True on real targets.
            with_scores: bool, also return the last block's
                cross-attention scores `(B, N, T, S)`.
            training: bool.

        Returns:
            Logits `(B, T, V)`, or `(logits, scores)`.
        """
        hidden, scores = self._decode_hidden(
            token_ids, memory, memory_mask, padding_mask, with_scores, training
        )
        logits = self._head(hidden)
        return (logits, scores) if with_scores else logits

    def _decode_hidden(
        self,
        token_ids,
        memory,
        memory_mask,
        padding_mask,
        with_scores,
        training,
    ):
        """`decode` up to the final norm: `(hidden (B, T, D), scores)`."""
        scores = None
        x = self.decoder_embedding(token_ids)
        if self.dropout > 0:
            x = self.embedding_dropout(x, training=training)
        for i, block in enumerate(self.decoder_blocks):
            last = with_scores and i == len(self.decoder_blocks) - 1
            outputs = block(
                x,
                memory,
                decoder_padding_mask=padding_mask,
                encoder_padding_mask=memory_mask,
                training=training,
                return_attention_scores=last,
            )
            x, scores = outputs if last else (outputs, scores)
        return self._final(x), scores

    def attention_scores(self, inputs):
        """The attention weights of every block, in inference mode.

        Args:
            inputs: as for `call` (source and target ids, optional masks).

        Returns:
            A dict of lists, one tensor per block: `"encoder"` `(B, N, S,
            S)`, `"decoder"` (causal self-attention) `(B, N, T, T)` and
            `"cross_attention"` `(B, N, T, S)`.
        """
        return seq2seq_attention_scores(self, inputs)

    def compute_output_shape(self, input_shape):
        key = _KEYS[1] if isinstance(input_shape, dict) else 1
        return tuple(input_shape[key]) + (self.vocabulary_size,)

    # -- cached decoding ------------------------------------------------------

    def call_with_cache(
        self,
        token_ids,
        memory,
        memory_mask,
        self_cache,
        cross_cache,
        cache_update_index,
        cross_cache_update_index=None,
        return_attention_scores=False,
    ):
        """Runs the decoder on new tokens against the caches.

        Args:
            token_ids: `(B, T)` new target tokens, at positions
                `cache_update_index + t`.
            memory: `(B, S, D)` encoder output.
            memory_mask: `(B, S)` boolean or None.
            self_cache: tuple of per-block `(B, 2, L, N, H)` caches.
            cross_cache: tuple of per-block `(B, 2, S, N, H)` caches.
            cache_update_index: int or scalar int tensor.
            cross_cache_update_index: `0` to compute the cross caches from
                `memory`, None to reuse them.
            return_attention_scores: bool, also return the last block's
                cross-attention scores `(B, N, T, S)`.

        Returns:
            `(logits, self_cache, cross_cache)`, and the scores last with
            `return_attention_scores`.
        """
        hidden, self_cache, cross_cache, scores = self._cached_hidden(
            token_ids,
            memory,
            memory_mask,
            self_cache,
            cross_cache,
            cache_update_index,
            cross_cache_update_index,
            return_attention_scores,
        )
        outputs = (self._head(hidden), self_cache, cross_cache)
        return outputs + (scores,) if return_attention_scores else outputs

    def _cached_hidden(
        self,
        token_ids,
        memory,
        memory_mask,
        self_cache,
        cross_cache,
        cache_update_index,
        cross_cache_update_index=None,
        return_attention_scores=False,
    ):
        """`call_with_cache` up to the final norm: `(hidden, self_cache,
        cross_cache, scores or None)`."""
        x = self.decoder_embedding(token_ids, start_index=cache_update_index)
        new_self, new_cross = [], []
        scores = None
        blocks = zip(self.decoder_blocks, self_cache, cross_cache)
        for i, (block, s_cache, c_cache) in enumerate(blocks):
            last = return_attention_scores and i == len(self.decoder_blocks) - 1
            outputs = block(
                x,
                memory,
                encoder_padding_mask=memory_mask,
                self_attention_cache=s_cache,
                self_attention_cache_update_index=cache_update_index,
                cross_attention_cache=c_cache,
                cross_attention_cache_update_index=cross_cache_update_index,
                return_attention_scores=last,
            )
            x, s_cache, c_cache = outputs[:1] + outputs[-2:]
            scores = outputs[1] if last else scores
            new_self.append(s_cache)
            new_cross.append(c_cache)
        return self._final(x), tuple(new_self), tuple(new_cross), scores

    def _generate(self, inputs, request):
        # The `generate` of `GenerateMixin` calls this under inference mode.
        parsed = parse_seq2seq_inputs(inputs)
        source = parsed["encoder_token_ids"]
        self._check_ids("encoder_token_ids", source)
        if not self.built:
            self.build({_KEYS[0]: (None, None), _KEYS[1]: (None, None)})
        memory = self.encode(source, parsed["encoder_padding_mask"])
        memory_mask = self.encoder_padding_mask(
            source, parsed["encoder_padding_mask"]
        )
        if memory_mask is None:
            memory_mask = ops.ones(tuple(source.shape), "bool")

        return generate(
            self,
            encoder_decoder_step,
            parsed["token_ids"],
            parsed["padding_mask"],
            source.shape[0],
            request,
            context={"memory": memory, "memory_mask": memory_mask},
            max_sequence_length=self.max_sequence_length,
        )

    def get_config(self):
        config = super().get_config()
        names = (
            "vocabulary_size", "max_sequence_length", "num_layers",
            "num_heads", "hidden_dim", "intermediate_dim", "dropout",
            "layer_norm_epsilon", "normalize_first", "tie_weights",
            "padding_token",
        )  # fmt: skip
        config.update({name: getattr(self, name) for name in names})
        return config
