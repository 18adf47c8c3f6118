"""Beam search as a sampler."""

import keras

from keras_attn._validation import check_number
from keras_attn._validation import check_positive_int
from keras_attn.generation.beam_search import beam_search
from keras_attn.generation.sampler import Sampler


@keras.saving.register_keras_serializable(package="keras_attn")
class BeamSampler(Sampler):
    """Keeps the `beam_width` best sequences per row (`method="beam"`).

    `beam_search` behind the `Sampler` interface: the processors of
    `Sampler` are applied to each beam's logits before its log softmax,
    and a beam whose tokens end with one of `stop_sequences` is finished
    like one that produced `end_token`. Beams are reordered at every step,
    so a token is not final until the search ends: a `stream` callback
    raises a `ValueError`. Otherwise called with the call arguments of
    `Sampler`, plus those of `beam_search` that only a beam has:
    `alignments_fn` (for `coverage_penalty`), `return_scores`,
    `return_all_beams` and `return_steps` (results in the order of
    `beam_search`).

    Args:
        beam_width: positive int; 1 is greedy search.
        length_penalty: float >= 0, the exponent of the GNMT length
            penalty (see `beam_search`).
        repetition_penalty: optional float > 0 (see `Sampler`).
        no_repeat_ngram_size: optional positive int (see `Sampler`).
        coverage_penalty: float >= 0, the weight of Wu et al.'s coverage
            penalty (see `beam_search`; needs `alignments_fn` at call).

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import BeamSampler

    log_probs = np.log(np.full((4, 4), 0.25, "float32"))

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)
        return ops.take(ops.convert_to_tensor(log_probs), previous, 0), cache

    BeamSampler(beam_width=3)(next_fn, np.zeros((1, 5), "int32"))
    ```
    """

    def __init__(
        self,
        beam_width=4,
        length_penalty=0.0,
        repetition_penalty=None,
        no_repeat_ngram_size=None,
        coverage_penalty=0.0,
    ):
        super().__init__(
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        check_positive_int("beam_width", beam_width)
        check_number("length_penalty", length_penalty, minimum=0)
        check_number("coverage_penalty", coverage_penalty, minimum=0)
        self.beam_width = beam_width
        self.length_penalty = length_penalty
        self.coverage_penalty = coverage_penalty

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
        alignments_fn=None,
        return_scores=False,
        return_all_beams=False,
        return_steps=False,
    ):
        if stream is not None:
            raise ValueError(
                "Beam search reorders its beams until the end, so it cannot "
                "stream tokens. Use greedy, sampling or contrastive search, "
                f"or pass stream=None. Received: stream={stream!r}"
            )
        processed = (
            self.repetition_penalty is not None
            or self.no_repeat_ngram_size is not None
        )
        return beam_search(
            next_fn,
            tokens,
            cache,
            start_index=start_index,
            beam_width=self.beam_width,
            length_penalty=self.length_penalty,
            end_token=end_token,
            pad_token=pad_token,
            prompt_mask=prompt_mask,
            return_cache=return_cache,
            stop_sequences=stop_sequences,
            process_logits=self.process_logits if processed else None,
            coverage_penalty=self.coverage_penalty,
            alignments_fn=alignments_fn,
            return_scores=return_scores,
            return_all_beams=return_all_beams,
            return_steps=return_steps,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beam_width": self.beam_width,
                "length_penalty": self.length_penalty,
                "coverage_penalty": self.coverage_penalty,
            }
        )
        return config


__all__ = ["BeamSampler"]
