"""`RNNDecoder`: a recurrent cell, an embedding and an output layer decoding
tokens, teacher-forced for training and through a sampler for inference."""

import keras
from keras import ops

from keras_attn._validation import check_non_negative_int
from keras_attn._validation import check_number
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_rank
from keras_attn.generation.beam_sampler import BeamSampler
from keras_attn.generation.contrastive_sampler import ContrastiveSampler
from keras_attn.generation.get_sampler import get_sampler
from keras_attn.generation.sampling import sample_from_logits
from keras_attn.layers.recurrent._time_loop import masked_time_loop


def _as_list(states):
    # Keras cells take and return their state as a list (GRUCell may
    # return a bare tensor).
    return list(states) if isinstance(states, (list, tuple)) else [states]


def _check_layer(name, layer, needs_state_size=False):
    # Looked up on the class too: a `state_size` property may need more
    # set-up (a memory) before it can be read.
    has_state_size = "state_size" in vars(layer) or hasattr(
        type(layer), "state_size"
    )
    if not isinstance(layer, keras.layers.Layer) or (
        needs_state_size and not has_state_size
    ):
        kind = "a Keras RNN cell (a layer with `state_size`)"
        raise ValueError(
            f"`{name}` must be {kind if needs_state_size else 'a Keras layer'}"
            f". Received: {name}={layer!r}"
        )


@keras.saving.register_keras_serializable(package="keras_attn")
class RNNDecoder(keras.layers.Layer):
    """Decodes tokens with a recurrent cell, an embedding and an output layer.

    The successor of `tfa.seq2seq.BasicDecoder` + `dynamic_decode` (and of
    `BeamSearchDecoder`): it runs any Keras RNN cell (`output, new_states
    = cell(inputs, states, **cell_kwargs)`, e.g. `keras.layers.LSTMCell`)
    on the embedding of the previous token and maps each output to logits
    with `output_layer`.

    - Training (`decoder(inputs, initial_state)`): teacher forcing, the
      input at step `t` is the embedding of `inputs[:, t]` (tfa's
      `TrainingSampler`); returns the logits `(B, T, V)`. With
      `scheduled_sampling_probability` `p > 0` and `training=True`, from
      the second step on each row takes, with probability `p`, the
      embedding of a token drawn from its own previous logits instead
      (tfa's `ScheduledEmbeddingTrainingSampler`). Steps where `mask` is
      False (padding after a row's end) leave the state unchanged and give
      zero logits.
    - Inference (`decoder.decode(...)`): the previous token's embedding is
      fed back through one of the library's samplers (`"greedy"`,
      `"sample"` with temperature / top-k / top-p / seed, `"beam"`, or a
      `Sampler` instance: tfa's `GreedyEmbeddingSampler`,
      `SampleEmbeddingSampler` and `BeamSearchDecoder`), for
      `maximum_iterations` steps or until every row produced `end_token`.
      A row that produced `end_token` is no longer stepped: its state
      stays frozen and its later tokens are `pad_token`.

    Args:
        cell: a Keras RNN cell (a layer with `state_size`).
        embedding: layer mapping token ids `(B,)` / `(B, T)` to vectors,
            e.g. `keras.layers.Embedding`.
        output_layer: layer mapping the cell output `(B, H)` to logits
            `(B, V)`, e.g. `keras.layers.Dense(V)`.
        scheduled_sampling_probability: float in `[0, 1]`, the probability
            `p` above (0, the default, is plain teacher forcing).
        seed: optional int, seed of the scheduled sampling draws.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `(B, T)` integer token ids fed at each step (the targets
            shifted right, starting with the start token).
        initial_state: optional list of `(B, ...)` cell states (the
            encoder's final state); zeros from the cell's
            `get_initial_state` when None.
        mask: optional boolean `(B, T)`, False at steps to skip.
        training: bool, scheduled sampling applies only in training.
        cell_kwargs: optional dict of extra keyword arguments of every
            cell call (e.g. the memory of an attention cell).
        return_state: bool, also return the final cell states (a list).

    Returns:
        logits `(B, T, V)`, or `(logits, final_states)` with
        `return_state=True`.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_attn.generation import RNNDecoder

    decoder = RNNDecoder(
        keras.layers.LSTMCell(16),
        keras.layers.Embedding(10, 8),
        keras.layers.Dense(10),
    )
    targets_in = np.array([[1, 4, 5], [1, 6, 2]], "int32")
    logits = decoder(targets_in)  # (2, 3, 10), teacher forcing
    result = decoder.decode(batch_size=2, start_token=1, end_token=2,
                            maximum_iterations=5)
    result["ids"].shape, result["lengths"].shape  # (2, 5), (2,)
    beams = decoder.decode(batch_size=2, start_token=1, end_token=2,
                           maximum_iterations=5, method="beam",
                           beam_width=3)
    beams["beam_ids"].shape, beams["parent_ids"].shape  # (2,3,5), (2,5,3)
    ```

    References:
        - [Bengio et al., 2015. Scheduled Sampling for Sequence Prediction
          with Recurrent Neural Networks](https://arxiv.org/abs/1506.03099)
    """

    def __init__(
        self,
        cell,
        embedding,
        output_layer,
        scheduled_sampling_probability=0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # The output keeps the time axis of the input: the mask carries on.
        self.supports_masking = True
        _check_layer("cell", cell, needs_state_size=True)
        _check_layer("embedding", embedding)
        _check_layer("output_layer", output_layer)
        check_number(
            "scheduled_sampling_probability",
            scheduled_sampling_probability,
            minimum=0,
        )
        if scheduled_sampling_probability > 1:
            raise ValueError(
                "`scheduled_sampling_probability` must be in [0, 1]. "
                "Received: scheduled_sampling_probability="
                f"{scheduled_sampling_probability}"
            )
        check_non_negative_int("seed", seed, allow_none=True)
        self.cell = cell
        self.embedding = embedding
        self.output_layer = output_layer
        self.scheduled_sampling_probability = scheduled_sampling_probability
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, inputs_shape=(None, None)):
        # Built here, not on first use: variables cannot be created inside
        # the compiled loops.
        inputs_shape = tuple(inputs_shape)
        if not self.embedding.built:
            self.embedding.build(inputs_shape)
        embed_dim = self.embedding.compute_output_shape(inputs_shape)[-1]
        if not self.cell.built:
            self.cell.build((None, embed_dim))
        output_dim = getattr(self.cell, "output_size", None)
        if not isinstance(output_dim, int):
            output_dim = _as_list(self.cell.state_size)[0]
        if not self.output_layer.built:
            self.output_layer.build((None, output_dim))
        self.vocabulary_size = self.output_layer.compute_output_shape(
            (None, output_dim)
        )[-1]
        self.built = True

    def get_initial_state(self, batch_size):
        """The cell's zero state for `batch_size` rows, as a list."""
        return _as_list(self.cell.get_initial_state(batch_size=batch_size))

    def step(self, token, states, cell_kwargs=None):
        """One step: `(logits (B, V), new_states)` after token ids `(B,)`."""
        return self._step(self.embedding(token), states, cell_kwargs)

    def _step(self, x, states, cell_kwargs):
        output, states = self.cell(x, _as_list(states), **(cell_kwargs or {}))
        return self.output_layer(output), _as_list(states)

    def call(
        self,
        inputs,
        initial_state=None,
        mask=None,
        training=None,
        cell_kwargs=None,
        return_state=False,
    ):
        inputs = ops.convert_to_tensor(inputs)
        check_rank("inputs", inputs, 2, "(batch, steps) token ids")
        batch_size = ops.shape(inputs)[0]
        steps = inputs.shape[1]
        states = (
            self.get_initial_state(batch_size)
            if initial_state is None
            else _as_list(initial_state)
        )
        embedded = self.embedding(inputs)  # (B, T, E)
        vocab = self.vocabulary_size
        scheduled = bool(training) and self.scheduled_sampling_probability > 0
        per_step = None
        if scheduled:
            # (T, B, 2): [use a sample?, the draw], made before the loop (a
            # seed generator cannot advance inside a compiled JAX loop).
            per_step = keras.random.uniform(
                (steps, batch_size, 2), seed=self.seed_generator
            )
            # The first step always reads its given token.
            per_step = ops.concatenate(
                [ops.ones_like(per_step[:1]), per_step[1:]], axis=0
            )

        def step_fn(x_t, carry, extra_t):
            states, previous_logits = carry
            if scheduled:
                use_sample = extra_t[:, 0] < self.scheduled_sampling_probability
                token = sample_from_logits(previous_logits, extra_t[:, 1])
                sampled = ops.cast(self.embedding(token), x_t.dtype)
                x_t = ops.where(use_sample[:, None], sampled, x_t)
            logits, states = self._step(x_t, states, cell_kwargs)
            logits = ops.cast(logits, self.compute_dtype)
            return logits, (states, logits), ops.zeros_like(logits[:, :1])

        carry = (states, ops.zeros((batch_size, vocab), self.compute_dtype))
        logits, _, (states, _), _ = masked_time_loop(
            step_fn,
            embedded,
            carry,
            mask,
            vocab,
            1,
            self.compute_dtype,
            per_step=per_step,
        )
        return (logits, states) if return_state else logits

    def decode(
        self,
        initial_state=None,
        batch_size=None,
        start_token=1,
        end_token=None,
        maximum_iterations=32,
        method="greedy",
        pad_token=0,
        cell_kwargs=None,
        alignments_fn=None,
        **sampler_options,
    ):
        """Generates up to `maximum_iterations` tokens per row.

        Args:
            initial_state: optional list of `(B, ...)` cell states; zeros
                for `batch_size` rows when None.
            batch_size: int, needed when `initial_state` is None.
            start_token: int fed at the first step.
            end_token: optional int; a row that produced it is finished
                (its state frozen, its later tokens `pad_token`).
            maximum_iterations: positive int, the most tokens per row.
            method: a `Sampler` or its name (`get_sampler`): `"greedy"`,
                `"sample"` or `"beam"` (not `"contrastive"`, which needs
                the hidden states of the whole sequence).
            pad_token: int written after a row's `end_token`.
            cell_kwargs: optional dict of extra keyword arguments of every
                cell call; tensors in it need the batch as leading axis
                (beam search repeats them per beam). A cell that holds its
                memory itself (`AttentionRNNCell.setup_memory`) needs it
                repeated for a beam search, as tfa's `tile_batch`:
                `ops.repeat(memory, beam_width, axis=0)`.
            alignments_fn: for a beam's `coverage_penalty`:
                `alignments_fn(states) -> (N, S)`, the attention weights
                of the step that produced the cell `states`.
            **sampler_options: constructor arguments of the named sampler
                (`temperature`, `top_k`, `seed`, `beam_width`,
                `length_penalty`, `coverage_penalty`, ...).

        Returns:
            A dict: `"ids"` `(B, maximum_iterations)` generated tokens,
            `"lengths"` `(B,)` tokens up to and including `end_token`
            (`maximum_iterations` for a row that never produced it) and
            `"states"`, the final cell states. With a beam search also
            `"scores"` `(B,)` of the best beam, `"beam_ids"`
            `(B, W, maximum_iterations)` and `"beam_scores"` `(B, W)` for
            every beam (best first), and tfa's per-step outputs
            `"predicted_ids"`, `"parent_ids"` and `"step_scores"`, each
            `(B, maximum_iterations, W)` (see `gather_tree`).
        """
        check_positive_int("maximum_iterations", maximum_iterations)
        if not self.built:
            self.build()
        check_non_negative_int("start_token", start_token)
        check_non_negative_int("end_token", end_token, allow_none=True)
        sampler = get_sampler(method, **sampler_options)
        if isinstance(sampler, ContrastiveSampler):
            raise ValueError(
                "RNNDecoder.decode supports greedy, sampling and beam "
                "search; contrastive search needs a model's hidden states "
                f"(use `generate` of a model). Received: method={method!r}"
            )
        if initial_state is None:
            check_positive_int("batch_size", batch_size)
            initial_state = self.get_initial_state(batch_size)
        states = _as_list(initial_state)
        batch_size = ops.shape(states[0])[0]
        tokens = ops.concatenate(
            [
                ops.full((batch_size, 1), start_token, "int32"),
                ops.full((batch_size, maximum_iterations), pad_token, "int32"),
            ],
            axis=1,
        )  # (B, 1 + maximum_iterations)
        # Everything with a batch axis travels in the cache, so that beam
        # search repeats it per beam and reorders it with the beams.
        cache = {"states": states, "cell_kwargs": dict(cell_kwargs or {})}
        positions = ops.arange(maximum_iterations + 1)[None, :]

        def next_fn(tokens, cache, index):
            previous = ops.take(tokens, index - 1, axis=1)  # (B,)
            logits, new_states = self.step(
                previous, cache["states"], cache["cell_kwargs"]
            )
            if end_token is not None:
                # Rows whose generated tokens so far hold `end_token` keep
                # their state (tfa's `impute_finished`).
                ended = ops.any(
                    ops.logical_and(
                        tokens == end_token,
                        ops.logical_and(positions >= 1, positions < index),
                    ),
                    axis=1,
                )  # (B,)
                new_states = [
                    ops.where(
                        ops.reshape(ended, (-1,) + (1,) * (len(new.shape) - 1)),
                        old,
                        new,
                    )
                    for old, new in zip(cache["states"], new_states)
                ]
            return logits, {
                "states": new_states,
                "cell_kwargs": cache["cell_kwargs"],
            }

        options = dict(end_token=end_token, pad_token=pad_token)
        if isinstance(sampler, BeamSampler):
            states_fn = None
            if alignments_fn is not None:

                def states_fn(cache):
                    return alignments_fn(cache["states"])

            beam_tokens, beam_scores, cache, steps = sampler(
                next_fn,
                tokens,
                cache,
                return_cache=True,
                alignments_fn=states_fn,
                return_scores=True,
                return_all_beams=True,
                return_steps=True,
                **options,
            )
            beam_ids = beam_tokens[:, :, 1:]  # (B, W, T)
            result = {
                "ids": beam_ids[:, 0],
                "states": [s[:, 0] for s in cache["states"]],
                "scores": beam_scores[:, 0],
                "beam_ids": beam_ids,
                "beam_scores": beam_scores,
                "predicted_ids": steps["predicted_ids"][:, 1:],
                "parent_ids": steps["parent_ids"][:, 1:],
                "step_scores": steps["scores"][:, 1:],
            }
        else:
            tokens, cache = sampler(
                next_fn, tokens, cache, return_cache=True, **options
            )
            result = {"ids": tokens[:, 1:], "states": cache["states"]}
        result["lengths"] = _lengths(result["ids"], end_token)
        return result

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": keras.saving.serialize_keras_object(self.cell),
                "embedding": keras.saving.serialize_keras_object(
                    self.embedding
                ),
                "output_layer": keras.saving.serialize_keras_object(
                    self.output_layer
                ),
                "scheduled_sampling_probability": (
                    self.scheduled_sampling_probability
                ),
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in ("cell", "embedding", "output_layer"):
            config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)


def _lengths(ids, end_token):
    """`(B,)` tokens up to and including the first `end_token` of `ids`."""
    steps = ids.shape[1]
    if end_token is None:
        return ops.full((ops.shape(ids)[0],), steps, "int32")
    is_end = ops.cast(ids == end_token, "int32")  # (B, T)
    first = ops.argmax(is_end, axis=1)  # 0 when absent
    return ops.cast(
        ops.where(ops.any(is_end > 0, axis=1), first + 1, steps), "int32"
    )


__all__ = ["RNNDecoder"]
