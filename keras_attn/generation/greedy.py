"""Greedy decoding against a model-agnostic step function."""

from keras import ops

from keras_attn.generation._utils import as_cache
from keras_attn.generation._utils import check_tokens
from keras_attn.generation._utils import from_cache
from keras_attn.generation._utils import index_tensor


def greedy_search(
    next_fn,
    tokens,
    cache=None,
    start_index=1,
    end_token=None,
    pad_token=0,
    return_cache=False,
):
    """Fills `tokens` from `start_index` on with the most likely token.

    The model is seen only through `next_fn(tokens, cache, index) ->
    (logits, cache)`, which returns the logits `(B, V)` of the token at
    position `index` of the `(B, L)` buffer `tokens` (everything before
    `index` is filled) and the updated `cache`, any nest of tensors (an RNN
    state, a preallocated KV cache, an alignment history...). The loop is a
    `keras.ops.while_loop`, so it compiles under XLA; it stops early once
    every row has produced `end_token`.

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
    tokens = ops.convert_to_tensor(tokens)
    check_tokens(tokens, start_index)
    cache = as_cache(cache)
    batch_size, max_length = ops.shape(tokens)[0], tokens.shape[1]
    done = ops.zeros((batch_size,), dtype="bool")

    def cond(index, tokens, cache, done):
        return ops.logical_and(
            index < max_length, ops.logical_not(ops.all(done))
        )

    def body(index, tokens, cache, done):
        logits, cache = next_fn(tokens, cache, index)
        next_token = ops.cast(ops.argmax(logits, axis=-1), tokens.dtype)
        if end_token is not None:
            next_token = ops.where(
                done, ops.cast(pad_token, tokens.dtype), next_token
            )
            done = ops.logical_or(done, ops.equal(next_token, end_token))
        tokens = ops.slice_update(tokens, [0, index], next_token[:, None])
        return index + 1, tokens, cache, done

    _, tokens, cache, _ = ops.while_loop(
        cond, body, (index_tensor(start_index), tokens, cache, done)
    )
    if not return_cache:
        return tokens
    return tokens, from_cache(cache)


__all__ = ["greedy_search"]
