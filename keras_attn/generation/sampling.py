"""Random sampling (temperature, top-k, top-p) against a step function."""

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn.generation._loop import check_tokens
from keras_attn.generation._loop import decoding_loop
from keras_attn.generation.logits_processors import min_p_filter


def check_sampling_args(temperature, top_k, top_p):
    check_positive_number("temperature", temperature)
    check_positive_int("top_k", top_k, allow_none=True)
    check_positive_number("top_p", top_p, allow_none=True)
    if top_p is not None and top_p > 1:
        raise ValueError(
            f"`top_p` must be in (0, 1] or None. Received: top_p={top_p!r}"
        )


def filter_logits(logits, temperature=1.0, top_k=None, top_p=None, min_p=None):
    """Scales logits by `1 / temperature` and masks the excluded tokens.

    Args:
        logits: `(B, V)` float tensor.
        temperature: positive float.
        top_k: keep the `top_k` most likely tokens (ties at the boundary are
            kept too).
        top_p: keep the smallest set of most likely tokens whose
            probability reaches `top_p` (nucleus sampling).
        min_p: keep the tokens at least `min_p` times as likely as the
            most likely one (`min_p_filter`).

    Returns:
        `(B, V)` float32 logits, `-inf`-like (`-1e9`) where excluded.
    """
    check_sampling_args(temperature, top_k, top_p)
    logits = ops.cast(logits, "float32") / float(temperature)
    excluded = ops.full_like(logits, -1e9)
    if top_k is not None and top_k < logits.shape[-1]:
        # (B, 1): the k-th largest logit.
        kth = ops.top_k(logits, top_k, sorted=True)[0][:, -1:]
        logits = ops.where(logits < kth, excluded, logits)
    if top_p is not None and top_p < 1:
        # (B, V) sorted descending, and the probability mass before each.
        sorted_logits = ops.flip(ops.sort(logits, axis=-1), axis=-1)
        sorted_probs = ops.softmax(sorted_logits, axis=-1)
        mass_before = ops.cumsum(sorted_probs, axis=-1) - sorted_probs
        # The smallest logit kept: the last one with mass_before < top_p.
        kept = ops.where(mass_before < top_p, sorted_logits, 1e9)
        threshold = ops.min(kept, axis=-1, keepdims=True)  # (B, 1)
        logits = ops.where(logits < threshold, excluded, logits)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    return logits


def sample_from_logits(logits, uniform):
    """Draws one token per row by inverting the CDF at `uniform`.

    Args:
        logits: `(B, V)` float logits.
        uniform: `(B,)` floats in `[0, 1)`.

    Returns:
        `(B,)` int32 token ids.
    """
    probs = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    cdf = ops.cumsum(probs, axis=-1)  # (B, V)
    target = uniform[:, None] * cdf[:, -1:]
    # The first token whose cumulative probability exceeds the target.
    token = ops.sum(ops.cast(cdf <= target, "int32"), axis=-1)
    return ops.minimum(token, logits.shape[-1] - 1)


def sample(
    next_fn,
    tokens,
    cache=None,
    start_index=1,
    temperature=1.0,
    top_k=None,
    top_p=None,
    seed=None,
    end_token=None,
    pad_token=0,
    prompt_mask=None,
    return_cache=False,
):
    """Fills `tokens` from `start_index` on with sampled tokens.

    At each step the logits are divided by `temperature`, restricted to the
    `top_k` most likely tokens and/or the nucleus of probability `top_p`,
    and one token is drawn from their softmax. The random numbers (one per
    row and step) are drawn before the loop from `seed`, so the loop
    carries no random state and compiles under XLA; a fixed `seed` gives
    the same tokens on every run of a backend.

    The model is seen only through `next_fn(tokens, cache, index) ->
    (logits, cache)`, as in `greedy_search`: this is the same loop, with a
    draw as the next-token rule; `prompt_mask` works as there.

    Args:
        next_fn: step function `(tokens, cache, index) -> (logits, cache)`.
        tokens: `(B, L)` integer tensor, positions `< start_index` filled.
        cache: initial cache (any nest of tensors) or None.
        start_index: int, first position to generate.
        temperature: positive float; below 1 sharpens, above 1 flattens.
        top_k: optional positive int.
        top_p: optional float in `(0, 1]`.
        seed: optional int or `keras.random.SeedGenerator`.
        end_token: optional int; a row is finished once it produced it, and
            the positions after it are `pad_token`.
        pad_token: int written after `end_token`.
        prompt_mask: optional boolean `(B, L)`, True at the positions that
            hold a prompt token to keep (right-padded prompts).
        return_cache: bool, also return the final cache.

    Returns:
        `tokens` `(B, L)`, or `(tokens, cache)` with `return_cache=True`.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import sample

    # A "model" with fixed next-token probabilities 0.7, 0.2, 0.1.
    logits = ops.log(ops.convert_to_tensor([[0.7, 0.2, 0.1]] * 4))

    def next_fn(tokens, cache, index):
        return logits, cache

    tokens = np.zeros((4, 8), "int32")
    sample(next_fn, tokens, top_k=2, seed=0)  # only tokens 0 and 1 drawn
    ```

    References:
        - Fan et al., "Hierarchical Neural Story Generation", 2018 (top-k).
        - Holtzman et al., "The Curious Case of Neural Text Degeneration",
          2020 (top-p).
    """
    check_sampling_args(temperature, top_k, top_p)
    tokens = ops.convert_to_tensor(tokens)
    check_tokens(tokens, start_index)
    batch_size, max_length = ops.shape(tokens)[0], tokens.shape[1]
    # (L, B) uniforms, one per step and row, drawn before the loop.
    uniforms = keras.random.uniform((max_length, batch_size), seed=seed)

    def draw(logits, tokens, index):
        logits = filter_logits(logits, temperature, top_k, top_p)
        uniform = ops.take(uniforms, index, axis=0)  # (B,)
        return sample_from_logits(logits, uniform)

    return decoding_loop(
        next_fn,
        tokens,
        cache,
        start_index,
        draw,
        end_token=end_token,
        pad_token=pad_token,
        prompt_mask=prompt_mask,
        return_cache=return_cache,
    )


__all__ = ["filter_logits", "sample", "sample_from_logits"]
