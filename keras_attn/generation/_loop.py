"""The one autoregressive decoding loop (private).

Greedy search and sampling are this loop with a different next-token rule
(keras-hub's sampler design); beam search keeps several hypotheses per row
but calls the model through the same step function.
"""

from keras import ops

from keras_attn import _compat
from keras_attn._compat import is_tracing
from keras_attn._validation import check_mask_dtype
from keras_attn._validation import check_non_negative_int
from keras_attn._validation import check_rank
from keras_attn._validation import static_shape
from keras_attn.generation.logits_processors import check_stop_sequences
from keras_attn.generation.logits_processors import ends_with_stop_sequence


def check_tokens(tokens, start_index, prompt_mask=None):
    """Validates the token buffer, the first index and the prompt mask."""
    check_rank("tokens", tokens, 2, "(batch, max_length)")
    check_non_negative_int("start_index", start_index)
    max_length = static_shape(tokens)[1]
    if max_length is not None and not 1 <= start_index <= max_length:
        raise ValueError(
            "`start_index` must be in [1, max_length] (position 0 holds at "
            f"least a start token). Received: start_index={start_index}, "
            f"tokens.shape={tuple(tokens.shape)}"
        )
    if prompt_mask is not None:
        check_mask_dtype("prompt_mask", prompt_mask, allow_numeric=False)
        if static_shape(prompt_mask) != static_shape(tokens):
            raise ValueError(
                "`prompt_mask` must have the shape of `tokens` "
                f"{tuple(tokens.shape)}. Received: "
                f"prompt_mask.shape={tuple(prompt_mask.shape)}"
            )


def as_cache(cache):
    # None is not a loop variable on every backend; an empty tuple is.
    return () if cache is None else cache


def from_cache(cache):
    # The inverse of `as_cache`. Not `cache == ()`: a bare tensor cache
    # would compare elementwise (or raise TypeError on JAX).
    return None if isinstance(cache, tuple) and not cache else cache


def index_tensor(index):
    return ops.convert_to_tensor(index, dtype="int32")


def forced_tokens(tokens, prompt_mask, index):
    """`(forced (B,) bool, prompt token (B,))` at `index`, or Nones."""
    if prompt_mask is None:
        return None, None
    return (
        ops.take(prompt_mask, index, axis=1),
        ops.take(tokens, index, axis=1),
    )


def run_loop(cond, body, loop_vars, eager=False):
    """`keras.ops.while_loop`, or with `eager=True` a Python loop.

    The Python loop runs the body op by op on concrete tensors, so the
    body may hand values to the host (a `stream` callback); the
    `while_loop` is compiled on JAX (and under `tf.function` / `jax.jit`)
    and never syncs with the host between steps. A condition that is a
    Python bool (a Python index, no stopping rule) costs no sync either.
    """
    if not eager:
        return ops.while_loop(cond, body, loop_vars)
    loop_vars = tuple(loop_vars)
    while _truth(cond(*loop_vars)):
        loop_vars = tuple(body(*loop_vars))
    return loop_vars


def _truth(value):
    if isinstance(value, bool):
        return value
    return bool(ops.convert_to_numpy(value))


def check_stream(stream, tokens):
    """Validates a `stream` callback: callable, and only in eager mode."""
    if stream is None:
        return
    if not callable(stream):
        raise TypeError(
            "`stream` must be a callable `stream(token_ids, index)`. "
            f"Received: stream={stream!r}"
        )
    if is_tracing(tokens):
        raise ValueError(
            "`stream` needs eager execution: inside `jax.jit` or "
            "`tf.function` the loop is compiled and cannot hand tokens to "
            "Python at each step. Call the decoding eagerly, or pass "
            f"stream=None. Received: stream={stream!r} on a traced tensor"
        )


def emit(stream, token, index):
    """Calls `stream(token_ids (B,) NumPy, index int)` (eager loop only)."""
    if stream is not None:
        stream(ops.convert_to_numpy(token), int(ops.convert_to_numpy(index)))


def finish_rows(done, token, tokens, index, end_token, stop_sequences, forced):
    """`done` updated after writing `token (B,)` at `index` of `tokens`."""
    ended = ops.zeros_like(done)
    if end_token is not None:
        ended = ops.equal(token, end_token)
    if stop_sequences:
        ended = ops.logical_or(
            ended, ends_with_stop_sequence(tokens, index, stop_sequences)
        )
    if forced is not None:
        ended = ops.logical_and(ended, ops.logical_not(forced))
    return ops.logical_or(done, ended)


def decoding_loop(
    next_fn,
    tokens,
    cache,
    start_index,
    next_token_fn,
    end_token=None,
    pad_token=0,
    prompt_mask=None,
    return_cache=False,
    stop_sequences=None,
    stream=None,
):
    """Fills `tokens` from `start_index` on, one token per step.

    At each step `index`, `next_fn(tokens, cache, index)` gives the logits
    `(B, V)` of position `index`, `next_token_fn(logits, tokens, index)`
    turns them into token ids `(B,)` (the rule: argmax, a draw, ...), and
    the token is written at `index`, except in rows where
    `prompt_mask[:, index]` is True (a longer prompt), which keep their
    prompt token. A row is finished once it produced `end_token` or the
    last token of one of `stop_sequences` (a prompt token does not count);
    its later positions hold `pad_token`. The loop is a
    `keras.ops.while_loop` (a Python loop when `stream` is given) and stops
    once every row is finished.

    Args:
        next_fn: step function `(tokens, cache, index) -> (logits, cache)`.
        tokens: `(B, L)` integer tensor, positions `< start_index` filled.
        cache: initial cache (any nest of tensors) or None.
        start_index: int, the first position to generate.
        next_token_fn: `(logits (B, V), tokens, index) -> (B,)` token ids.
        end_token: optional int.
        pad_token: int written after `end_token`.
        prompt_mask: optional boolean `(B, L)`, True at prompt positions.
        return_cache: bool, also return the final cache.
        stop_sequences: optional list of lists of token ids.
        stream: optional callable `stream(token_ids, index)`, called after
            each step with the `(B,)` NumPy tokens written at `index`.

    Returns:
        `tokens`, or `(tokens, cache)` with `return_cache=True`.
    """
    tokens = ops.convert_to_tensor(tokens)
    if prompt_mask is not None:
        prompt_mask = ops.convert_to_tensor(prompt_mask)
    check_tokens(tokens, start_index, prompt_mask)
    stop_sequences = check_stop_sequences(stop_sequences)
    check_stream(stream, tokens)
    cache = as_cache(cache)
    batch_size, max_length = ops.shape(tokens)[0], tokens.shape[1]
    done = ops.zeros((batch_size,), dtype="bool")
    pad = ops.cast(pad_token, tokens.dtype)
    stops = end_token is not None or bool(stop_sequences)
    # Where the loop runs in Python anyway (PyTorch), the index is a Python
    # int: slices and updates at it then take the backends' fast paths,
    # and, without a stopping rule, the loop never reads a tensor.
    host_index = _compat.loop_runs_in_python(tokens)
    index = start_index if host_index else index_tensor(start_index)

    def cond(index, tokens, cache, done):
        if not stops:
            return index < max_length
        return ops.logical_and(
            index < max_length, ops.logical_not(ops.all(done))
        )

    def body(index, tokens, cache, done):
        logits, cache = next_fn(tokens, cache, index)
        token = next_token_fn(logits, tokens, index)
        token = ops.cast(token, tokens.dtype)  # (B,)
        forced, prompt_token = forced_tokens(tokens, prompt_mask, index)
        if forced is not None:
            token = ops.where(forced, prompt_token, token)
        if stops:
            token = ops.where(done, pad, token)
        tokens = ops.slice_update(tokens, [0, index], token[:, None])
        if stops:
            done = finish_rows(
                done, token, tokens, index, end_token, stop_sequences, forced
            )
        emit(stream, token, index)
        return index + 1, tokens, cache, done

    _, tokens, cache, _ = run_loop(
        cond,
        body,
        (index, tokens, cache, done),
        eager=stream is not None or host_index,
    )
    if not return_cache:
        return tokens
    return tokens, from_cache(cache)
