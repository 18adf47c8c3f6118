"""Greedy search as a sampler."""

import keras
from keras import ops

from keras_attn.generation.sampler import Sampler


@keras.saving.register_keras_serializable(package="keras_attn")
class GreedySampler(Sampler):
    """Picks the most likely token at every step (`method="greedy"`).

    With `repetition_penalty` or `no_repeat_ngram_size` the argmax is taken
    after those processors. Deterministic; the loop compiles under XLA.
    Called with the call arguments of `Sampler`.

    Args:
        repetition_penalty: optional float > 0 (see `Sampler`).
        no_repeat_ngram_size: optional positive int (see `Sampler`).

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import GreedySampler

    # A bigram "model" that always prefers to repeat token 1.
    table = np.array([[0, 5, 1], [0, 5, 1], [0, 5, 1]], "float32")

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)
        return ops.take(ops.convert_to_tensor(table), previous, axis=0), cache

    tokens = np.zeros((1, 5), "int32")
    GreedySampler()(next_fn, tokens)  # [[0, 1, 1, 1, 1]]
    GreedySampler(no_repeat_ngram_size=2)(next_fn, tokens)  # [[0, 1, 1, 2, 1]]
    ```
    """

    def get_next_token(self, logits, index):
        return ops.argmax(logits, axis=-1)


__all__ = ["GreedySampler"]
