"""The sampler interface: one decoding rule plugged into the one loop."""

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn.generation._loop import decoding_loop
from keras_attn.generation.logits_processors import no_repeat_ngram
from keras_attn.generation.logits_processors import repetition_penalty


@keras.saving.register_keras_serializable(package="keras_attn")
class Sampler:
    """Base class of the decoding methods that `generate(method=...)` takes.

    A sampler fills a token buffer `(B, L)` from `start_index` on, calling
    the model only through a step function `next_fn(tokens, cache, index)
    -> (logits, cache)` (see `keras_attn.generation`). The subclasses are
    `GreedySampler`, `RandomSampler` (temperature, top-k, top-p, min-p),
    `BeamSampler` and `ContrastiveSampler`; the models'
    `generate(method=...)` takes an instance or one of their names
    (`get_sampler`).

    Every sampler applies, before its own rule, the logits processors
    given here: `repetition_penalty` and `no_repeat_ngram_size`, computed
    from the tokens so far (prompt included). A call also takes the
    per-call options `end_token`, `pad_token`, `stop_sequences` (a row
    ends once its last tokens match one of them; its later positions hold
    `pad_token`) and `stream` (a callback given each step's new tokens).

    A subclass that picks one token per row from the processed logits
    overrides `get_next_token(logits, index)`; the loop (compiled as a
    `keras.ops.while_loop`, or stepped in Python with `stream`) stays here.

    Args:
        repetition_penalty: optional float > 0; the logits of tokens
            already in the sequence are divided by it where positive and
            multiplied where negative (CTRL; 1 changes nothing).
        no_repeat_ngram_size: optional positive int `n`; no n-gram occurs
            twice in a sequence (the prompt included).

    Call arguments:
        next_fn: step function `(tokens, cache, index) -> (logits, cache)`
            (`(logits, hidden, cache)` for `ContrastiveSampler`).
        tokens: `(B, L)` integer tensor; positions `< start_index` hold the
            prompt.
        cache: initial cache (any nest of tensors with the batch first) or
            None.
        start_index: int, the first position to generate.
        end_token: optional int that finishes a row.
        pad_token: int written after a row finished. Defaults to `0`.
        prompt_mask: optional boolean `(B, L)`, True at positions that
            keep their prompt token (right-padded prompts of different
            lengths).
        stop_sequences: optional list of lists of token ids; a row
            finishes once the tokens ending at the one just generated
            match one of them (the stop sequence stays in the output).
        stream: optional callable `stream(token_ids, index)`, called after
            every step with the `(B,)` NumPy array of the tokens written at
            position `index` (prompt tokens in rows with longer prompts,
            `pad_token` in finished rows). The loop then runs eagerly, one
            op at a time; without `stream` it is a `keras.ops.while_loop`
            with no host sync between steps. Inside `jax.jit` or
            `tf.function` a `stream` raises a `ValueError`.
        return_cache: bool, also return the final cache.

    Returns:
        `tokens (B, L)`, or `(tokens, cache)` with `return_cache=True`.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import Sampler

    class NoZeroSampler(Sampler):
        # Greedy search that never picks token 0.
        def get_next_token(self, logits, index):
            return ops.argmax(logits[:, 1:], axis=-1) + 1

    table = np.eye(4, dtype="float32")  # a bigram "model": repeat the last

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)
        return ops.take(ops.convert_to_tensor(table), previous, axis=0), cache

    tokens = np.array([[2, 0, 0, 0]], "int32")
    seen = []
    NoZeroSampler()(next_fn, tokens, stream=lambda t, i: seen.append(t))
    # [[2, 2, 2, 2]]; `seen` holds the 3 new tokens, one per step
    ```
    """

    def __init__(self, repetition_penalty=None, no_repeat_ngram_size=None):
        check_positive_number(
            "repetition_penalty", repetition_penalty, allow_none=True
        )
        check_positive_int(
            "no_repeat_ngram_size", no_repeat_ngram_size, allow_none=True
        )
        self.repetition_penalty = repetition_penalty
        self.no_repeat_ngram_size = no_repeat_ngram_size

    def process_logits(self, logits, tokens, index):
        """Applies the logits processors; returns float32 `(B, V)` logits.

        Args:
            logits: `(B, V)` logits of position `index`.
            tokens: `(B, L)` buffer, the sequence so far before `index`.
            index: int or scalar int tensor.
        """
        logits = ops.cast(logits, "float32")
        if self.repetition_penalty is not None:
            logits = repetition_penalty(
                logits, tokens, index, self.repetition_penalty
            )
        if self.no_repeat_ngram_size is not None:
            logits = no_repeat_ngram(
                logits, tokens, index, self.no_repeat_ngram_size
            )
        return logits

    def get_next_token(self, logits, index):
        """Picks `(B,)` token ids from processed logits `(B, V)`.

        Args:
            logits: `(B, V)` float32 logits after `process_logits`.
            index: scalar int tensor, the position being filled.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement `get_next_token`."
        )

    def token_rule(self, tokens):
        """The `(logits, tokens, index) -> (B,)` rule of one call.

        Built once per call from the token buffer `(B, L)` (a random
        sampler draws its numbers here, before the loop).
        """

        def rule(logits, tokens, index):
            logits = self.process_logits(logits, tokens, index)
            return self.get_next_token(logits, index)

        return rule

    def __call__(
        self,
        next_fn,
        tokens,
        cache=None,
        start_index=1,
        end_token=None,
        pad_token=0,
        prompt_mask=None,
        stop_sequences=None,
        stream=None,
        return_cache=False,
    ):
        tokens = ops.convert_to_tensor(tokens)
        return decoding_loop(
            next_fn,
            tokens,
            cache,
            start_index,
            self.token_rule(tokens),
            end_token=end_token,
            pad_token=pad_token,
            prompt_mask=prompt_mask,
            return_cache=return_cache,
            stop_sequences=stop_sequences,
            stream=stream,
        )

    def get_config(self):
        return {
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)


__all__ = ["Sampler"]
