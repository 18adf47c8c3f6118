"""The one `generate` of the sequence models (private).

Implements the contract stated in `keras_attn.models` (read it there).

A model's `generate` parses its inputs into a prompt and the tensors it
computes before the loop (`context`, e.g. the encoder output), then calls
`generate` below with `make_step(model, tokens, start_index, use_cache,
with_scores, with_hidden, context) -> (next_fn, cache, prompt_hidden)`, a
plain function (not a per-call closure) giving the step function of
`keras_attn.generation` for the buffer `tokens (B, max_length)`. With
scores, `cache["scores"]` is a `(B, max_length, S)` buffer into which
`next_fn` writes row `index`. With hidden states (contrastive search),
`next_fn` returns `(logits, hidden, cache)` and `prompt_hidden` is the `(B,
max_length, D)` hidden states of the prompt positions (or None).

On JAX, outside a trace and without `stream`, the part after the host-side
prompt preparation runs as a `jax.jit` program cached on the model per
static configuration (`compile_key`), so a second call at the same shapes
compiles nothing.
"""

import numpy as np
from keras import ops

from keras_attn import _compat
from keras_attn._validation import check_heads_divide
from keras_attn._validation import check_integer_dtype
from keras_attn._validation import check_mask_dtype
from keras_attn._validation import check_non_negative_int
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_ints
from keras_attn._validation import check_rank
from keras_attn.generation.get_sampler import get_sampler
from keras_attn.models._generate_mixin import run_decoding

LM_KEYS = ("token_ids", "padding_mask")
SEQ2SEQ_KEYS = (
    "encoder_token_ids",
    "encoder_padding_mask",
    "token_ids",
    "padding_mask",
)


def check_model_sizes(
    vocabulary_size,
    max_sequence_length,
    num_layers,
    num_heads,
    hidden_dim,
    intermediate_dim,
):
    """The size checks shared by `Transformer` and `TransformerLM`."""
    check_positive_ints(
        vocabulary_size=vocabulary_size,
        max_sequence_length=max_sequence_length,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
    )
    check_positive_int("intermediate_dim", intermediate_dim, allow_none=True)
    check_heads_divide(hidden_dim, num_heads)


def store_sizes(
    model,
    vocabulary_size,
    max_sequence_length,
    num_layers,
    num_heads,
    hidden_dim,
    intermediate_dim,
):
    """Sets the size attributes shared by `Transformer` and
    `TransformerLM` (checked by `check_model_sizes` beforehand)."""
    model.vocabulary_size = vocabulary_size
    model.max_sequence_length = max_sequence_length
    model.num_layers = num_layers
    model.num_heads = num_heads
    model.hidden_dim = hidden_dim
    model.intermediate_dim = intermediate_dim or 4 * hidden_dim


def _ids(name, value):
    value = ops.convert_to_tensor(value)
    check_integer_dtype(name, value)
    check_rank(name, value, 2, "(batch, length)")
    return ops.cast(value, "int32")


def _mask(name, value, ids_name, ids):
    if value is None:
        return None
    value = ops.convert_to_tensor(value)
    check_mask_dtype(name, value)
    if tuple(value.shape) != tuple(ids.shape):
        raise ValueError(
            f"`{name}` must have the shape of `{ids_name}` "
            f"{tuple(ids.shape)}. Received: {name}.shape={tuple(value.shape)}"
        )
    return ops.cast(value, "bool")


def _check_keys(inputs, keys):
    unknown = sorted(set(inputs) - set(keys))
    if unknown:
        raise ValueError(
            f"`inputs` accepts the keys {keys}. Received unknown keys: "
            f"{unknown}"
        )


def parse_lm_inputs(inputs):
    """`(token_ids, padding_mask or None)` of a `TransformerLM` prompt."""
    if isinstance(inputs, dict):
        _check_keys(inputs, LM_KEYS)
        if "token_ids" not in inputs:
            raise ValueError(
                "`inputs` must hold `token_ids`. Received keys: "
                f"{sorted(inputs)}"
            )
        ids = _ids("token_ids", inputs["token_ids"])
        mask = inputs.get("padding_mask")
        return ids, _mask("padding_mask", mask, "token_ids", ids)
    return _ids("token_ids", inputs), None


def parse_seq2seq_inputs(inputs):
    """The four inputs of an encoder-decoder `generate` (None if absent)."""
    if not isinstance(inputs, dict):
        inputs = {"encoder_token_ids": inputs}
    _check_keys(inputs, SEQ2SEQ_KEYS)
    if "encoder_token_ids" not in inputs:
        raise ValueError(
            "`inputs` must hold `encoder_token_ids`. Received keys: "
            f"{sorted(inputs)}"
        )
    source = _ids("encoder_token_ids", inputs["encoder_token_ids"])
    parsed = {
        "encoder_token_ids": source,
        "encoder_padding_mask": _mask(
            "encoder_padding_mask",
            inputs.get("encoder_padding_mask"),
            "encoder_token_ids",
            source,
        ),
        "token_ids": None,
        "padding_mask": None,
    }
    if inputs.get("token_ids") is not None:
        ids = _ids("token_ids", inputs["token_ids"])
        parsed["token_ids"] = ids
        parsed["padding_mask"] = _mask(
            "padding_mask", inputs.get("padding_mask"), "token_ids", ids
        )
    return parsed


def _prompt_buffer(prompt, prompt_mask, batch_size, start_token):
    """NumPy `(ids (B, P), lengths (B,))` of right-padded prompts."""
    if prompt is None:
        ids = np.zeros((batch_size, 0), "int32")
        lengths = np.zeros((batch_size,), "int64")
    else:
        ids = np.asarray(ops.convert_to_numpy(prompt), "int32")
        if prompt_mask is None:
            lengths = np.full((ids.shape[0],), ids.shape[1])
        else:
            mask = np.asarray(ops.convert_to_numpy(prompt_mask), bool)
            lengths = mask.sum(axis=1)
            prefix = np.arange(mask.shape[1])[None, :] < lengths[:, None]
            if not np.array_equal(mask, prefix):
                raise ValueError(
                    "`padding_mask` must be True on a prefix of each row "
                    "(right-padded prompts). Received: padding_mask="
                    f"{mask.tolist()}"
                )
    if start_token is not None:
        start = np.full((ids.shape[0], 1), start_token, "int32")
        ids = np.concatenate([start, ids], axis=1)
        lengths = lengths + 1
    return ids, lengths


def generate(
    model,
    make_step,
    prompt,
    prompt_mask,
    batch_size,
    request,
    context=None,
    max_sequence_length=None,
    first_index=None,
):
    """Builds the token buffer, runs the decoding loop, shapes the result.

    Args:
        model: the model that generates.
        make_step: `(model, tokens, start_index, use_cache, with_scores,
            with_hidden, context) -> (next_fn, cache, prompt_hidden)`, a
            module-level function or a class's method (part of the key of
            the compiled program: a closure made per call would never
            reuse one).
        prompt: `(B, P)` int32 tensor or None.
        prompt_mask: `(B, P)` boolean tensor or None (all True).
        batch_size: int, `B`.
        request: the `GenerateRequest` of the `generate` call.
        context: optional nest of tensors `make_step` takes (computed
            before the loop, e.g. the encoder output).
        max_sequence_length: optional int, the longest sequence the model
            takes.
        first_index: optional int, the first position the loop runs at
            (a model without a cache to prefill steps over its prompts
            from 1); defaults to the shortest prompt's length.

    Returns:
        Tokens `(B, max_length)`, or `(tokens, scores)`.
    """
    max_length, method = request.max_length, request.method
    start_token, end_token = request.start_token, request.end_token
    pad_token, options = request.pad_token, request.options
    return_attention_scores = request.return_attention_scores
    sampler = get_sampler(method, **options)
    with_hidden = bool(getattr(sampler, "uses_hidden_states", False))
    check_positive_int("max_length", max_length)
    check_non_negative_int("pad_token", pad_token)
    check_non_negative_int("start_token", start_token, allow_none=True)
    check_non_negative_int("end_token", end_token, allow_none=True)
    if max_sequence_length is not None and max_length > max_sequence_length:
        raise ValueError(
            "`max_length` (prompt included) must be at most "
            f"`max_sequence_length` ({max_sequence_length}). Received: "
            f"max_length={max_length}"
        )
    ids, lengths = _prompt_buffer(prompt, prompt_mask, batch_size, start_token)
    if ids.shape[1] > max_length:
        raise ValueError(
            "The prompt (with the start token) must fit in `max_length`. "
            f"Received: prompt length {ids.shape[1]}, max_length={max_length}"
        )
    start_index = int(lengths.min()) if len(lengths) else 0
    if first_index is not None and start_index >= 1:
        start_index = min(first_index, start_index)
    if start_index < 1:
        raise ValueError(
            "Every prompt needs at least one token: give a prompt or a "
            "`start_token`. Received: start_token=None and prompt lengths "
            f"{lengths.tolist()}"
        )
    tokens = np.full((ids.shape[0], max_length), pad_token, "int32")
    tokens[:, : ids.shape[1]] = np.where(
        np.arange(ids.shape[1])[None, :] < lengths[:, None], ids, pad_token
    )
    # (B, L): True where a prompt token is kept.
    kept = np.arange(max_length)[None, :] < lengths[:, None]
    ragged = bool((lengths > start_index).any())

    def decode(tokens, kept, context):
        # Everything here depends only on the arguments and on what
        # `compile_key` holds: JAX may run it once for many calls.
        next_fn, cache, prompt_hidden = make_step(
            model,
            tokens,
            start_index,
            request.use_cache,
            return_attention_scores,
            with_hidden,
            context,
        )
        extra = {"hidden_states": prompt_hidden} if with_hidden else {}
        tokens, cache = sampler(
            next_fn,
            tokens,
            cache,
            start_index=start_index,
            end_token=end_token,
            pad_token=pad_token,
            prompt_mask=kept if ragged else None,
            stop_sequences=request.stop_sequences,
            stream=request.stream,
            return_cache=True,
            **extra,
        )
        if not return_attention_scores:
            return tokens
        # Prompt rows produced no token: zeros.
        scores = ops.where(kept[:, :, None], 0.0, cache["scores"])
        return tokens, ops.cast(scores, "float32")

    args = (ops.convert_to_tensor(tokens), ops.convert_to_tensor(kept), context)
    static = (make_step, start_index, ragged)
    return run_decoding(decode, args, request, model, sampler, static)


def write_scores(cache, index, row):
    """`cache` with `row (B, S)` written at row `index` of its scores."""
    scores = cache["scores"]
    scores = _compat.slice_update_owned(
        scores, [0, index, 0], ops.cast(row, scores.dtype)[:, None, :]
    )
    return dict(cache, scores=scores)


def pad_hidden(hidden, max_length):
    """`(B, P, D)` prompt hidden states zero-padded to `(B, max_length, D)`."""
    padding = max_length - hidden.shape[1]
    return ops.pad(ops.cast(hidden, "float32"), [[0, 0], [0, padding], [0, 0]])


def empty_scores(batch_size, max_length, key_length):
    """The `(B, max_length, S)` float32 scores buffer."""
    return ops.zeros((batch_size, max_length, key_length), "float32")


def transformer_next_fn(
    full_pass, cached_step, head, use_cache, with_scores, with_hidden=False
):
    """The step function of a transformer decoder, cached or not.

    Args:
        full_pass: `(tokens (B, L), cache) -> (hidden (B, L, D), scores)`,
            a causal pass over the whole buffer up to the final norm (the
            cache holds the rows' context, reordered by beam search);
            scores `(B, N, L, S)` or None.
        cached_step: `(token (B, 1), cache, position) -> (hidden (B, 1,
            D), cache, scores)`, one token against the caches; scores `(B,
            N, 1, S)` or None.
        head: `hidden (B, D) -> logits (B, V)`.
        use_cache: bool, which of the two the step function calls.
        with_scores: bool, write the head-averaged scores of the query that
            produces token `index` into row `index` of `cache["scores"]`.
        with_hidden: bool, also return the hidden state `(B, D)` of the
            token at `index - 1`.

    Returns:
        `next_fn(tokens, cache, index) -> (logits (B, V), cache)`, or
        `(logits, hidden, cache)` with `with_hidden`.
    """

    def next_fn(tokens, cache, index):
        if use_cache:
            # (B, 1): the token at index - 1, at its position.
            previous = ops.expand_dims(ops.take(tokens, index - 1, 1), 1)
            hidden, cache, scores = cached_step(previous, cache, index - 1)
            query = 0
        else:
            hidden, scores = full_pass(tokens, cache)
            query = index - 1
        if with_scores:
            # (B, N, T, S) -> (B, S): the query, averaged over heads.
            row = ops.mean(ops.take(scores, query, axis=2), axis=1)
            cache = write_scores(cache, index, row)
        hidden = ops.take(hidden, query, axis=1)  # (B, D)
        if with_hidden:
            return head(hidden), hidden, cache
        return head(hidden), cache

    return next_fn


def encoder_decoder_step(
    model, tokens, start_index, use_cache, with_scores, with_hidden, context
):
    """`(next_fn, cache, prompt_hidden)` of `Transformer.generate`.

    Args:
        model: the `Transformer`.
        tokens: the `(B, L)` token buffer.
        start_index: int, the loop's first position.
        use_cache: bool.
        with_scores: bool.
        with_hidden: bool, the step also returns hidden states.
        context: dict of the encoder output `"memory"` `(B, S, D)` and its
            boolean `"memory_mask"` `(B, S)`.
    """
    memory, memory_mask = context["memory"], context["memory_mask"]
    batch_size, max_length = tokens.shape
    source_length = memory.shape[1]
    cache = {"memory": memory, "memory_mask": memory_mask}
    if with_scores:
        cache["scores"] = empty_scores(batch_size, max_length, source_length)
    prompt_hidden = None
    if use_cache:
        head_dim = model.hidden_dim // model.num_heads

        def zeros(n):
            shape = (batch_size, 2, n, model.num_heads, head_dim)
            return tuple(
                ops.zeros(shape, model.compute_dtype)
                for _ in model.decoder_blocks
            )

        # Prefill: the common prompt's self-attention keys and values,
        # and the cross-attention keys and values, computed once.
        prompt_hidden, cache["self"], cache["cross"], _ = model._cached_hidden(
            tokens[:, :start_index],
            memory,
            memory_mask,
            zeros(max_length),
            zeros(source_length),
            0,
            cross_cache_update_index=0,
        )
    elif with_hidden:
        prompt_hidden = model._decode_hidden(
            tokens[:, :start_index], memory, memory_mask, None, False, None
        )[0]
    if with_hidden:
        prompt_hidden = pad_hidden(prompt_hidden, max_length)

    def full_pass(tokens, cache):
        return model._decode_hidden(
            tokens,
            cache["memory"],
            cache["memory_mask"],
            None,
            with_scores,
            None,
        )

    def cached_step(token, cache, position):
        hidden, self_cache, cross_cache, scores = model._cached_hidden(
            token,
            cache["memory"],
            cache["memory_mask"],
            cache["self"],
            cache["cross"],
            position,
            return_attention_scores=with_scores,
        )
        cache = dict(cache, self=self_cache, cross=cross_cache)
        return hidden, cache, scores

    next_fn = transformer_next_fn(
        full_pass, cached_step, model._head, use_cache, with_scores, with_hidden
    )
    return next_fn, cache, prompt_hidden if with_hidden else None
