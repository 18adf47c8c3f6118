import keras
from keras import ops

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_choice
from keras_attn._validation import static_shape
from keras_attn._validation_tokens import check_token_ids
from keras_attn.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)
from keras_attn.layers.transformer._decoding_step import plain_decoder_step
from keras_attn.layers.transformer._decoding_step import (
    steps_without_layer_call,
)
from keras_attn.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attn.models._attention_maps import lm_attention_scores
from keras_attn.models._decoding import check_model_sizes
from keras_attn.models._decoding import empty_scores
from keras_attn.models._decoding import generate
from keras_attn.models._decoding import pad_hidden
from keras_attn.models._decoding import parse_lm_inputs
from keras_attn.models._decoding import store_sizes
from keras_attn.models._decoding import transformer_next_fn
from keras_attn.models._generate_mixin import GenerateMixin

POSITIONS = ("learned", "rotary", "alibi", "relative")


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerLM(AdapterMixin, GenerateMixin, keras.Model):
    """A decoder-only (GPT-style) transformer language model.

    Token embeddings (plus learned position embeddings with
    `position="learned"`), a stack of pre-norm `TransformerDecoder` blocks
    without cross-attention, a final normalization, and the projection to
    the vocabulary (the transposed token embedding with `tie_weights`).
    Called on token ids `(B, T)`, it returns next-token logits `(B, T, V)`:
    train it with `SparseCategoricalCrossentropy(from_logits=True)` on the
    ids shifted by one.

    `generate` continues a prompt with greedy search, beam search or
    sampling (`keras_attn.generation`), feeding one token per step against a
    preallocated key/value cache per block, so that a step costs `O(L)`
    instead of re-running the whole sequence.

    Args:
        vocabulary_size: int, the number of token ids `V`.
        max_sequence_length: int, the longest sequence (prompt plus
            generated tokens).
        num_layers: int, the number of blocks. Defaults to `2`.
        num_heads: int, attention heads per block. Defaults to `4`.
        hidden_dim: int, the model width `D` (a multiple of `num_heads`).
            Defaults to `128`.
        intermediate_dim: int, the feed-forward width. Defaults to
            `4 * hidden_dim`.
        num_key_value_heads: int dividing `num_heads`, key/value heads
            (grouped-query attention; the cache shrinks with them). Defaults
            to `num_heads`.
        position: `"learned"` (GPT-2 position embeddings), `"rotary"`,
            `"alibi"` or `"relative"` (inside attention). Defaults to
            `"learned"`.
        dropout: float in `[0, 1)`. Defaults to `0.0`.
        layer_norm_epsilon: float. Defaults to `1e-5`.
        tie_weights: bool, whether the output projection is the transposed
            token embedding. Defaults to `True`.
        **kwargs: other arguments of `keras.Model` (`name`, `dtype`).

    Call arguments:
        token_ids: `(B, T)` integer tensor.
        training: bool, whether dropout is active.

    Returns:
        Logits `(B, T, V)`.

    Example:

    ```python
    import numpy as np
    from keras_attn.models import TransformerLM

    model = TransformerLM(
        vocabulary_size=50,
        max_sequence_length=16,
        hidden_dim=32,
        position="rotary",
        num_key_value_heads=2,
    )
    logits = model(np.ones((2, 8), "int32"))  # (2, 8, 50)
    prompt = np.array([[1, 2, 3], [4, 5, 6]])
    tokens = model.generate(prompt, max_length=10)  # (2, 10)
    # Prompts of different lengths: right-padded, with a padding mask.
    ragged = {
        "token_ids": np.array([[1, 2, 3], [4, 5, 0]]),
        "padding_mask": np.array([[True, True, True], [True, True, False]]),
    }
    tokens, scores = model.generate(
        ragged, max_length=10, return_attention_scores=True
    )  # (2, 10) and (2, 10, 10)
    ```

    References:
        - Radford et al., "Language Models are Unsupervised Multitask
          Learners", 2019.
        - Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(
        self,
        vocabulary_size,
        max_sequence_length,
        num_layers=2,
        num_heads=4,
        hidden_dim=128,
        intermediate_dim=None,
        num_key_value_heads=None,
        position="learned",
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        tie_weights=True,
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
        check_choice("position", position, POSITIONS)
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
        self.num_key_value_heads = num_key_value_heads
        self.position = position
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.tie_weights = tie_weights
        # Sublayers (no weights until `build`); blocks validate the rest.
        if position == "learned":
            self.embedding = TokenAndPositionEmbedding(
                vocabulary_size,
                max_sequence_length,
                hidden_dim,
                tie_weights=tie_weights,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=0.02
                ),
                dtype=self.dtype_policy,
                name="embedding",
            )
        else:
            self.embedding = keras.layers.ReversibleEmbedding(
                vocabulary_size,
                hidden_dim,
                tie_weights=tie_weights,
                embeddings_initializer=keras.initializers.RandomNormal(
                    stddev=0.02
                ),
                dtype=self.dtype_policy,
                name="embedding",
            )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.blocks = [
            TransformerDecoder(
                self.intermediate_dim,
                num_heads,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                num_key_value_heads=num_key_value_heads,
                position=None if position == "learned" else position,
                dtype=self.dtype_policy,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon,
            dtype=self.dtype_policy,
            name="final_norm",
        )

    @property
    def token_embedding(self):
        if self.position == "learned":
            return self.embedding.token_embedding
        return self.embedding

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                "`token_ids` must have shape (batch, length). Received: "
                f"token_ids.shape={input_shape}"
            )
        hidden_shape = input_shape + (self.hidden_dim,)
        self.embedding.build(input_shape)
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self._restore_lora()
        self.built = True

    def _check_token_ids(self, token_ids):
        # Static: an exported length is symbolic (JAX), not None.
        shape = static_shape(token_ids)
        if len(shape) != 2:
            raise ValueError(
                "`token_ids` must have shape (batch, length). Received: "
                f"token_ids.shape={shape}"
            )
        if (
            self.position == "learned"
            and shape[1] is not None
            and shape[1] > self.max_sequence_length
        ):
            raise ValueError(
                "`token_ids` is longer than `max_sequence_length` "
                f"({self.max_sequence_length}). Received: "
                f"token_ids.shape={shape}"
            )
        check_token_ids("token_ids", token_ids, self.vocabulary_size)

    def _embed(self, token_ids, start_index=0, training=None):
        if self.position == "learned":
            x = self.embedding(token_ids, start_index=start_index)
        else:
            x = self.embedding(token_ids)
        if self.dropout > 0:
            x = self.embedding_dropout(x, training=training)
        return x

    def _head(self, hidden, plain=False):
        # (..., D) final-normed hidden states -> (..., V)
        if plain:
            return self.token_embedding.call(hidden, reverse=True)
        return self.token_embedding(hidden, reverse=True)

    def call(self, token_ids, training=None):
        self._check_token_ids(token_ids)
        return self._forward(token_ids, training=training)

    def _forward(self, token_ids, training=None):
        """Logits `(B, T, V)` of a causal pass."""
        return self._head(self._hidden(token_ids, training=training)[0])

    def _hidden(self, token_ids, with_scores=False, training=None):
        """`(final-normed hidden (B, T, D), last block's scores or None)`."""
        x = self._embed(token_ids, training=training)
        scores = None
        for i, block in enumerate(self.blocks):
            if with_scores and i == len(self.blocks) - 1:
                x, scores = block(x, return_attention_scores=True)
            else:
                x = block(x, training=training)
        return self.final_norm(x), scores

    def attention_scores(self, token_ids):
        """The self-attention weights of every block, in inference mode.

        Args:
            token_ids: `(B, T)` integer tensor.

        Returns:
            A list of `num_layers` tensors `(B, num_heads, T, T)`.
        """
        return lm_attention_scores(self, token_ids)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.vocabulary_size,)

    # -- cached decoding ------------------------------------------------------

    def empty_cache(self, batch_size, max_length):
        """Zero key/value caches, one `(B, 2, max_length, K, H)` per block."""
        num_kv = self.num_key_value_heads or self.num_heads
        shape = (
            batch_size,
            2,
            max_length,
            num_kv,
            self.hidden_dim // self.num_heads,
        )
        return tuple(
            ops.zeros(shape, dtype=self.compute_dtype) for _ in self.blocks
        )

    def call_with_cache(
        self,
        token_ids,
        cache,
        cache_update_index,
        return_attention_scores=False,
    ):
        """Runs `token_ids` at positions `cache_update_index + t`.

        Args:
            token_ids: `(B, T)` integer tensor, the new tokens.
            cache: tuple of per-block caches from `empty_cache`.
            cache_update_index: int or scalar int tensor, the position of
                `token_ids[:, 0]`.
            return_attention_scores: bool, also return the last block's
                self-attention scores `(B, N, T, L)`.

        Returns:
            `(logits, cache)`: logits `(B, T, V)` and the updated caches;
            `(logits, cache, scores)` with `return_attention_scores`.
        """
        hidden, cache, scores = self._cached_hidden(
            token_ids, cache, cache_update_index, return_attention_scores
        )
        logits = self._head(hidden, self._plain_sublayers())
        if return_attention_scores:
            return logits, cache, scores
        return logits, cache

    def _plain_sublayers(self):
        """Whether the embedding, final norm and head may run by `call`.

        `Layer.__call__` costs more than these sublayers' few ops in a
        decoding step; their `call` is the same maths where no autocast
        (mixed precision) nor quantized kernel is involved.
        """
        policy = self.dtype_policy
        layers = (self.final_norm, self.token_embedding)
        if self.position == "learned":
            layers += (self.embedding.position_embedding,)
        return policy.compute_dtype == policy.variable_dtype and all(
            layer.quantization_mode is None for layer in layers
        )

    def _step_embed(self, token_ids, start_index, plain):
        """`_embed` in inference, by the sublayers' `call` when `plain`."""
        if not plain:
            return self._embed(token_ids, start_index=start_index)
        x = self.token_embedding.call(token_ids)  # (B, T, D)
        if self.position == "learned":
            positions = self.embedding.position_embedding
            x = x + positions.call(x, start_index=start_index)
        return x

    def _cached_hidden(self, token_ids, cache, cache_update_index, scores):
        """`call_with_cache` up to the final norm: `(hidden, cache, scores)`."""
        return_attention_scores = scores
        plain = self._plain_sublayers()
        x = self._step_embed(token_ids, cache_update_index, plain)
        new_cache = []
        scores = None
        for i, (block, block_cache) in enumerate(zip(self.blocks, cache)):
            block_scores = return_attention_scores and i == len(self.blocks) - 1
            if not block_scores and steps_without_layer_call(
                block, block_cache
            ):
                # What `block(...)` would run, without `Layer.__call__`.
                outputs = plain_decoder_step(
                    block, x, block_cache, cache_update_index
                )
            else:
                outputs = block(
                    x,
                    self_attention_cache=block_cache,
                    self_attention_cache_update_index=cache_update_index,
                    return_attention_scores=block_scores,
                )
            if len(outputs) == 3:
                x, scores, block_cache = outputs
            else:
                x, block_cache = outputs
            new_cache.append(block_cache)
        x = self.final_norm.call(x) if plain else self.final_norm(x)
        return x, tuple(new_cache), scores

    def _generate(self, inputs, request):
        # The `generate` of `GenerateMixin` calls this under inference mode.
        prompt, prompt_mask = parse_lm_inputs(inputs)
        self._check_token_ids(prompt)
        if not self.built:
            self.build((None, None))

        return generate(
            self,
            type(self)._generation_step,
            prompt,
            prompt_mask,
            prompt.shape[0],
            request,
            max_sequence_length=(
                self.max_sequence_length if self.position == "learned" else None
            ),
        )

    def _generation_step(
        self, tokens, start_index, use_cache, with_scores, with_hidden, context
    ):
        """`(next_fn, cache, prompt hidden states or None)` for `generate`
        (which passes `context=None`: the prompt is all a decoder needs)."""
        batch_size, max_length = tokens.shape
        cache = {}
        if with_scores:
            cache["scores"] = empty_scores(batch_size, max_length, max_length)
        prompt_hidden = None
        if use_cache:
            # Prefill with the common prompt; the first step rewrites its
            # last position with the same keys and values.
            prompt_hidden, cache["kv"], _ = self._cached_hidden(
                tokens[:, :start_index],
                self.empty_cache(batch_size, max_length),
                0,
                False,
            )
        elif with_hidden:
            prompt_hidden = self._hidden(tokens[:, :start_index])[0]
        if with_hidden:
            prompt_hidden = pad_hidden(prompt_hidden, max_length)

        def full_pass(tokens, cache):
            return self._hidden(tokens, with_scores=with_scores)

        def cached_step(token, cache, position):
            hidden, kv, scores = self._cached_hidden(
                token, cache["kv"], position, with_scores
            )
            return hidden, dict(cache, kv=kv), scores

        plain = self._plain_sublayers()

        def head(hidden):
            return self._head(hidden, plain)

        next_fn = transformer_next_fn(
            full_pass,
            cached_step,
            head,
            use_cache,
            with_scores,
            with_hidden,
        )
        return next_fn, cache, prompt_hidden if with_hidden else None

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
                "num_key_value_heads": self.num_key_value_heads,
                "position": self.position,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "tie_weights": self.tie_weights,
            }
        )
        return config
