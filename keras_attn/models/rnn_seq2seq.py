"""An RNN encoder-decoder with attention (Bahdanau/Luong NMT)."""

import keras
from keras import ops

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_choice
from keras_attn._validation import check_non_negative_int
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_rank
from keras_attn._validation_tokens import check_same_batch
from keras_attn._validation_tokens import check_token_ids
from keras_attn.layers.attention.bahdanau_attention import BahdanauAttention
from keras_attn.layers.attention.luong_attention import LuongAttention
from keras_attn.layers.recurrent.attention_rnn import AttentionRNN
from keras_attn.models._decoding import empty_scores
from keras_attn.models._decoding import generate
from keras_attn.models._decoding import parse_seq2seq_inputs
from keras_attn.models._decoding import write_scores
from keras_attn.models._generate_mixin import GenerateMixin

RNN_TYPES = ("lstm", "gru")
ATTENTION_TYPES = ("bahdanau", "luong")


@keras.saving.register_keras_serializable(package="keras_attn")
class RNNSeq2Seq(AdapterMixin, GenerateMixin, keras.Model):
    """A sequence-to-sequence model: bidirectional RNN encoder, attentional
    RNN decoder.

    The encoder embeds the source tokens and runs a bidirectional LSTM (or
    GRU) of `hidden_dim // 2` units per direction; its states `(B, S,
    hidden_dim)` are the memory, and the concatenated final states of both
    directions start the decoder. The decoder is an `AttentionRNN` over an
    `LSTMCell` (or `GRUCell`) of `hidden_dim` units with Bahdanau or Luong
    attention and input feeding, followed by a `Dense` to the target
    vocabulary. `call` is teacher forcing: it reads the target shifted
    right (starting with the start token) and returns logits for every
    position. `generate` decodes greedily or with beam search through
    `keras_attn.generation`.

    Args:
        vocabulary_size: positive int, size of the source vocabulary.
        target_vocabulary_size: positive int or None (the source one), size
            of the target vocabulary (include the start and end tokens).
        embedding_dim: positive int, size of both embeddings.
        hidden_dim: positive even int, size of the decoder state and of the
            encoder's memory (the two directions together).
        rnn_type: `"lstm"` or `"gru"`.
        attention_type: `"bahdanau"` (additive, `hidden_dim` units) or
            `"luong"` (multiplicative, `"general"` score).
        attention_layer_size: positive int or None (`hidden_dim`), size of
            the attention vector of the decoder.
        padding_token: optional int; source positions holding it are masked
            in the encoder and the attention, target positions in the
            decoder.
        **kwargs: `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `(encoder_token_ids, token_ids)`, integer tensors
            `(B, S)` and `(B, T)` (a tuple, list or a dict with these keys).
        training: bool.
        return_alignments: bool, also return the alignments `(B, T, S)`.

    Returns:
        Logits `(B, T, target_vocabulary_size)` (and the alignments).

    Example:

    ```python
    import numpy as np
    from keras_attn.models import RNNSeq2Seq

    model = RNNSeq2Seq(vocabulary_size=12, embedding_dim=8, hidden_dim=16)
    source = np.random.randint(1, 12, size=(2, 5))
    target_in = np.random.randint(1, 12, size=(2, 4))
    logits = model((source, target_in))  # (2, 4, 12)
    tokens, alignments = model.generate(
        source, max_length=5, start_token=1, return_attention_scores=True
    )
    # tokens: (2, 5), the start token first; alignments: (2, 5, 5)
    ```

    References:
        - [Bahdanau et al., 2015. Neural Machine Translation by Jointly
          Learning to Align and Translate](https://arxiv.org/abs/1409.0473)
        - [Luong et al., 2015. Effective Approaches to Attention-based Neural
          Machine Translation](https://arxiv.org/abs/1508.04025)
    """

    def __init__(
        self,
        vocabulary_size,
        target_vocabulary_size=None,
        embedding_dim=64,
        hidden_dim=128,
        rnn_type="lstm",
        attention_type="bahdanau",
        attention_layer_size=None,
        padding_token=None,
        **kwargs,
    ):
        check_positive_int("vocabulary_size", vocabulary_size)
        check_positive_int(
            "target_vocabulary_size", target_vocabulary_size, allow_none=True
        )
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("hidden_dim", hidden_dim)
        if hidden_dim % 2:
            raise ValueError(
                "`hidden_dim` must be even (the encoder's two directions "
                f"each have hidden_dim // 2 units). Received: "
                f"hidden_dim={hidden_dim}"
            )
        check_choice("rnn_type", rnn_type, RNN_TYPES)
        check_choice("attention_type", attention_type, ATTENTION_TYPES)
        check_positive_int(
            "attention_layer_size", attention_layer_size, allow_none=True
        )
        if padding_token is not None:
            check_non_negative_int("padding_token", padding_token)
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.target_vocabulary_size = target_vocabulary_size
        self.embedding_dim = embedding_dim
        self.hidden_dim = hidden_dim
        self.rnn_type = rnn_type
        self.attention_type = attention_type
        self.attention_layer_size = attention_layer_size
        self.padding_token = padding_token

        target_vocab = target_vocabulary_size or vocabulary_size
        policy = self.dtype_policy
        self.encoder_embedding = keras.layers.Embedding(
            vocabulary_size,
            embedding_dim,
            dtype=policy,
            name="encoder_embedding",
        )
        rnn_cls = keras.layers.LSTM if rnn_type == "lstm" else keras.layers.GRU
        self.encoder = keras.layers.Bidirectional(
            rnn_cls(
                hidden_dim // 2,
                return_sequences=True,
                return_state=True,
                dtype=policy,
            ),
            merge_mode="concat",
            dtype=policy,
            name="encoder",
        )
        self.decoder_embedding = keras.layers.Embedding(
            target_vocab,
            embedding_dim,
            dtype=policy,
            name="decoder_embedding",
        )
        cell_cls = (
            keras.layers.LSTMCell
            if rnn_type == "lstm"
            else keras.layers.GRUCell
        )
        if attention_type == "bahdanau":
            attention = BahdanauAttention(
                hidden_dim, dtype=policy, name="attention"
            )
        else:
            attention = LuongAttention(
                "general", dtype=policy, name="attention"
            )
        self.decoder = AttentionRNN(
            cell_cls(hidden_dim, dtype=policy, name="decoder_cell"),
            attention,
            attention_layer_size=attention_layer_size or hidden_dim,
            return_alignments=True,
            dtype=policy,
            name="decoder",
        )
        self.output_dense = keras.layers.Dense(
            target_vocab, dtype=policy, name="output_dense"
        )

    # -- pieces -------------------------------------------------------------

    def _split(self, inputs):
        if isinstance(inputs, dict):
            return inputs["encoder_token_ids"], inputs["token_ids"]
        if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
            return inputs[0], inputs[1]
        raise ValueError(
            "`inputs` must be (encoder_token_ids, token_ids) or a dict "
            f"with these keys. Received: inputs={inputs!r}"
        )

    def _check_tokens(self, name, tokens):
        check_rank(name, tokens, 2, "(batch, length)")
        vocabulary_size = (
            self.vocabulary_size
            if name == "encoder_token_ids"
            else self.target_vocabulary_size or self.vocabulary_size
        )
        check_token_ids(name, tokens, vocabulary_size)

    def _token_mask(self, tokens):
        if self.padding_token is None:
            return None
        return ops.not_equal(tokens, self.padding_token)

    def build(self, input_shape):
        if isinstance(input_shape, dict):
            source_shape = input_shape["encoder_token_ids"]
            target_shape = input_shape["token_ids"]
        elif (
            isinstance(input_shape, (list, tuple))
            and len(input_shape) == 2
            and all(isinstance(x, (list, tuple)) for x in input_shape)
        ):
            source_shape, target_shape = input_shape
        else:
            raise ValueError(
                "`inputs` must be (encoder_token_ids, token_ids) or a dict "
                f"with these keys. Received shape(s): {input_shape}"
            )
        source_shape, target_shape = tuple(source_shape), tuple(target_shape)
        for name, shape in (
            ("encoder_token_ids", source_shape),
            ("token_ids", target_shape),
        ):
            check_rank(name, keras.KerasTensor(shape), 2, "(batch, length)")
        check_same_batch(
            keras.KerasTensor(source_shape), keras.KerasTensor(target_shape)
        )
        self.encoder_embedding.build(source_shape)
        self.encoder.build(source_shape + (self.embedding_dim,))
        self.decoder_embedding.build(target_shape)
        self.decoder.build(
            target_shape + (self.embedding_dim,),
            (source_shape[0], source_shape[1], self.hidden_dim),
        )
        self.output_dense.build(
            (None, None, self.attention_layer_size or self.hidden_dim)
        )
        self._restore_lora()
        self.built = True

    def encode(self, encoder_token_ids, training=None):
        """Runs the encoder.

        Args:
            encoder_token_ids: `(B, S)` integer tensor.
            training: bool.

        Returns:
            `(memory, memory_mask, decoder_cell_state)`: memory
            `(B, S, hidden_dim)`, mask `(B, S)` or None, and the initial
            state of the decoder cell.
        """
        self._check_tokens("encoder_token_ids", encoder_token_ids)
        mask = self._token_mask(encoder_token_ids)
        x = self.encoder_embedding(encoder_token_ids)  # (B, S, E)
        memory, *states = self.encoder(x, mask=mask, training=training)
        # Bidirectional returns forward states then backward ones; the
        # decoder cell's state is their concatenation, state by state.
        half = len(states) // 2
        cell_state = [
            ops.concatenate([f, b], axis=-1)
            for f, b in zip(states[:half], states[half:])
        ]  # each (B, hidden_dim)
        return memory, mask, cell_state

    def call(self, inputs, training=None, return_alignments=False):
        encoder_token_ids, token_ids = self._split(inputs)
        self._check_tokens("token_ids", token_ids)
        check_same_batch(encoder_token_ids, token_ids)
        memory, memory_mask, cell_state = self.encode(
            encoder_token_ids, training
        )
        y = self.decoder_embedding(token_ids)  # (B, T, E)
        outputs, alignments = self.decoder(
            y,
            memory,
            memory_mask=memory_mask,
            initial_state=cell_state,
            mask=self._token_mask(token_ids),
            training=training,
        )
        logits = self.output_dense(outputs)  # (B, T, V)
        if return_alignments:
            return logits, alignments
        return logits

    # -- inference -----------------------------------------------------------

    def _generate(self, inputs, request):
        # The `generate` of `GenerateMixin` calls this under inference mode.
        parsed = parse_seq2seq_inputs(inputs)
        source = parsed["encoder_token_ids"]
        if not self.built:
            self.build((tuple(source.shape), (None, None)))
        memory, memory_mask, cell_state = self.encode(source)
        batch_size, source_length = source.shape[0], memory.shape[1]
        if memory_mask is None:
            memory_mask = ops.ones((batch_size, source_length), "bool")
        if parsed["encoder_padding_mask"] is not None:
            memory_mask = ops.logical_and(
                memory_mask, parsed["encoder_padding_mask"]
            )

        return generate(
            self,
            type(self)._generation_step,
            parsed["token_ids"],
            parsed["padding_mask"],
            batch_size,
            request,
            context={
                "memory": memory,
                "memory_mask": memory_mask,
                "cell_state": cell_state,
            },
            first_index=1,
        )

    def _generation_step(
        self, tokens, start_index, use_cache, with_scores, with_hidden, context
    ):
        """`(next_fn, cache, None)` for `generate`; `context` holds the
        encoder's `memory (B, S, D)`, `memory_mask (B, S)` and final
        `cell_state`."""
        batch_size, max_length = tokens.shape
        memory, memory_mask = context["memory"], context["memory_mask"]
        cache = {
            "state": self.decoder.get_initial_state(
                batch_size, context["cell_state"]
            ),
            "memory": memory,
            "keys": self.decoder.precompute(memory),
            "memory_mask": memory_mask,
        }
        if with_scores:
            cache["scores"] = empty_scores(
                batch_size, max_length, memory.shape[1]
            )

        def next_fn(tokens, cache, index):
            previous = ops.take(tokens, index - 1, axis=1)  # (B,)
            y = self.decoder_embedding(previous)  # (B, E)
            output, state, alignment = self.decoder.step(
                y,
                cache["state"],
                cache["memory"],
                keys=cache["keys"],
                memory_mask=cache["memory_mask"],
            )
            cache = dict(cache, state=state)
            if with_scores:
                cache = write_scores(cache, index, alignment)
            if with_hidden:  # the attention output is the hidden state
                return self.output_dense(output), output, cache
            return self.output_dense(output), cache  # (B, V)

        # The RNN has no cache to prefill (`use_cache` changes nothing):
        # the loop steps from the start token, keeping the prompt tokens it
        # walks over (so the first step gives the only prompt hidden state
        # needed).
        return next_fn, cache, None

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "target_vocabulary_size": self.target_vocabulary_size,
                "embedding_dim": self.embedding_dim,
                "hidden_dim": self.hidden_dim,
                "rnn_type": self.rnn_type,
                "attention_type": self.attention_type,
                "attention_layer_size": self.attention_layer_size,
                "padding_token": self.padding_token,
            }
        )
        return config
