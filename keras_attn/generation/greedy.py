"""Greedy decoding against a model-agnostic step function."""

from keras import ops

from keras_attn.generation._loop import decoding_loop


def _argmax(logits, tokens, index):
    return ops.argmax(logits, axis=-1)


def greedy_search(
    next_fn,
    tokens,
    cache=None,
    start_index=1,
    end_token=None,
    pad_token=0,
    prompt_mask=None,
    return_cache=False,
):
    """Fills `tokens` from `start_index` on with the most likely token.

    The model is seen only through `next_fn(tokens, cache, index) ->
    (logits, cache)`, which returns the logits `(B, V)` of the token at
    position `index` of the `(B, L)` buffer `tokens` (everything before
    `index` is filled) and the updated `cache`, any nest of tensors (an RNN
    state, a preallocated KV cache, an alignment history...). The loop is a
    `keras.ops.while_loop`, so it compiles under XLA; it stops early once
    every row has produced `end_token`. It is the loop of `sample` with
    argmax as the next-token rule.

    Prompts of different lengths share one batch: start at the shortest
    prompt's length and pass `prompt_mask`, True at every prompt position;
    rows keep their prompt tokens where it is True (the step still runs on
    them, so a cache is filled as usual).

    Args:
        next_fn: the step function described above. It must return a cache
            of the same structure, shapes and dtypes as it receives.
        tokens: `(B, L)` integer tensor; positions `< start_index` hold the
            prompt (at least a start token), the rest is overwritten (pre-fill
            it with `pad_token`: positions after an early stop keep it).
        cache: initial cache (any nest of tensors) or None.
        start_index: int, first position to generate.
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
    from keras_attn.generation import greedy_search

    # A bigram "model": the next token is always (previous + 1) mod 5.
    table = np.roll(np.eye(5, dtype="float32"), 1, axis=1) * 10.0

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)  # (B,)
        return ops.take(ops.convert_to_tensor(table), previous, axis=0), cache

    tokens = np.zeros((2, 6), "int32")
    tokens[:, 0] = [0, 3]
    greedy_search(next_fn, tokens)  # [[0 1 2 3 4 0] [3 4 0 1 2 3]]
    ```
    """
    return decoding_loop(
        next_fn,
        tokens,
        cache,
        start_index,
        _argmax,
        end_token=end_token,
        pad_token=pad_token,
        prompt_mask=prompt_mask,
        return_cache=return_cache,
    )


__all__ = ["greedy_search"]
