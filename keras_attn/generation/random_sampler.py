"""Random sampling (temperature, top-k, top-p, min-p) as a sampler."""

import keras
from keras import ops

from keras_attn._validation import check_non_negative_int
from keras_attn.generation.logits_processors import check_min_p
from keras_attn.generation.sampler import Sampler
from keras_attn.generation.sampling import check_sampling_args
from keras_attn.generation.sampling import filter_logits
from keras_attn.generation.sampling import sample_from_logits


@keras.saving.register_keras_serializable(package="keras_attn")
class RandomSampler(Sampler):
    """Draws each token from the filtered distribution (`method="sample"`).

    At each step the logits (after the processors of `Sampler`) are divided
    by `temperature`, restricted to the `top_k` most likely tokens, to the
    nucleus of probability `top_p`, and to the tokens at least `min_p`
    times as likely as the most likely one; one token is drawn from the
    softmax of what is left. The random numbers (one per row and step) are
    drawn before the loop from `seed`, so the loop carries no random state
    and compiles under XLA; a fixed `seed` gives the same tokens on every
    run of a backend. Called with the call arguments of `Sampler`.

    Args:
        temperature: positive float; below 1 sharpens, above 1 flattens.
        top_k: optional positive int.
        top_p: optional float in `(0, 1]`.
        min_p: optional float in `(0, 1]`.
        seed: optional int or `keras.random.SeedGenerator`.
        repetition_penalty: optional float > 0 (see `Sampler`).
        no_repeat_ngram_size: optional positive int (see `Sampler`).

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import RandomSampler

    # A "model" with fixed next-token probabilities 0.6, 0.3, 0.05, 0.05.
    logits = ops.log(ops.convert_to_tensor([[0.6, 0.3, 0.05, 0.05]] * 4))

    def next_fn(tokens, cache, index):
        return logits, cache

    sampler = RandomSampler(min_p=0.1, seed=0)  # keeps p >= 0.06: 0 and 1
    sampler(next_fn, np.zeros((4, 8), "int32"))
    ```

    References:
        - Fan et al., "Hierarchical Neural Story Generation", 2018 (top-k).
        - Holtzman et al., "The Curious Case of Neural Text Degeneration",
          2020 (top-p).
        - Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative
          and Coherent LLM Outputs", 2024 (min-p).
    """

    def __init__(
        self,
        temperature=1.0,
        top_k=None,
        top_p=None,
        min_p=None,
        seed=None,
        repetition_penalty=None,
        no_repeat_ngram_size=None,
    ):
        super().__init__(
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        check_sampling_args(temperature, top_k, top_p)
        check_min_p(min_p, allow_none=True)
        if not isinstance(seed, keras.random.SeedGenerator):
            check_non_negative_int("seed", seed, allow_none=True)
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.min_p = min_p
        self.seed = seed

    def token_rule(self, tokens):
        batch_size, max_length = ops.shape(tokens)[0], tokens.shape[1]
        # (L, B) uniforms, one per step and row, drawn before the loop.
        uniforms = keras.random.uniform(
            (max_length, batch_size), seed=self.seed
        )

        def rule(logits, tokens, index):
            logits = self.process_logits(logits, tokens, index)
            logits = filter_logits(
                logits, self.temperature, self.top_k, self.top_p, self.min_p
            )
            uniform = ops.take(uniforms, index, axis=0)  # (B,)
            return sample_from_logits(logits, uniform)

        return rule

    def get_next_token(self, logits, index):
        raise NotImplementedError(
            "RandomSampler draws in `token_rule`, with its per-call numbers."
        )

    def get_config(self):
        config = super().get_config()
        seed = self.seed
        config.update(
            {
                "temperature": self.temperature,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "min_p": self.min_p,
                "seed": seed if seed is None or isinstance(seed, int) else None,
            }
        )
        return config


__all__ = ["RandomSampler"]
