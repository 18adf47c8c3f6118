"""Beam search decoding against a model-agnostic step function."""

import keras
from keras import ops

from keras_attn._validation import check_number
from keras_attn._validation import check_positive_int
from keras_attn.generation._loop import as_cache
from keras_attn.generation._loop import check_tokens
from keras_attn.generation._loop import finish_rows
from keras_attn.generation._loop import forced_tokens
from keras_attn.generation._loop import from_cache
from keras_attn.generation._loop import index_tensor
from keras_attn.generation.logits_processors import check_stop_sequences

# Log probability of impossible continuations. Finite so that sums and the
# length normalisation never produce NaN (inf - inf).
_IMPOSSIBLE = -1e9


def _length_penalty(lengths, alpha):
    # GNMT / tfa.seq2seq: ((5 + length) / 6) ** alpha.
    return ops.power((5.0 + ops.cast(lengths, "float32")) / 6.0, alpha)


def coverage_penalty_term(coverage):
    """Wu et al.'s coverage term `sum_s log(min(coverage_s, 1))`, `(...)`.

    `coverage (..., S)` is the attention each source position received,
    summed over the decoding steps. As in `tfa.seq2seq`, positions that
    received exactly 0 (padded source positions) count as covered.
    """
    coverage = ops.where(coverage == 0.0, 1.0, coverage)
    return ops.sum(ops.log(ops.minimum(coverage, 1.0)), axis=-1)


def _check_coverage(coverage_penalty_weight, alignments_fn):
    check_number("coverage_penalty", coverage_penalty_weight, minimum=0)
    if coverage_penalty_weight and not callable(alignments_fn):
        raise ValueError(
            "`coverage_penalty` needs the attention weights of each step: "
            "pass `alignments_fn(cache) -> (N, S)`. Received: "
            f"coverage_penalty={coverage_penalty_weight}, "
            f"alignments_fn={alignments_fn!r}"
        )


def beam_search(
    next_fn,
    tokens,
    cache=None,
    start_index=1,
    beam_width=4,
    length_penalty=0.0,
    end_token=None,
    pad_token=0,
    prompt_mask=None,
    return_scores=False,
    return_cache=False,
    return_all_beams=False,
    stop_sequences=None,
    process_logits=None,
    coverage_penalty=0.0,
    alignments_fn=None,
    return_steps=False,
):
    """Fills `tokens` from `start_index` on with the best beam.

    Keeps, for every batch row, the `beam_width` partial sequences of highest
    score and extends each with every token of the vocabulary at each step.
    The score of a sequence is its total log probability divided by the
    length penalty `((5 + length) / 6) ** length_penalty` of Wu et al. (as
    `length_penalty_weight` of `tfa.seq2seq.BeamSearchDecoder`; 0 disables
    it), where `length` counts the generated tokens up to `end_token`. A beam
    that produced `end_token` is finished: it keeps its score and is padded
    with `pad_token`. The loop stops once every beam is finished.

    With `coverage_penalty` `beta > 0` (`coverage_penalty_weight` of tfa),
    a finished beam's score also gets Wu et al.'s coverage term
    `beta * sum_s log(min(c_s, 1))`, where `c_s` is the attention that
    source position `s` received over the beam's steps (given by
    `alignments_fn`; positions with `c_s = 0`, padding, count as covered).
    The term rewards beams that attended to every source position. It
    applies from the step that produced `end_token` on; tfa applies it
    from the step after.

    Length convention: tfa leaves `end_token` out of the length at the
    step that produces it and counts it at later steps; here it is counted
    at every step, so both give the same final score to a beam finished
    before the last step.

    The model is seen only through `next_fn(tokens, cache, index) ->
    (logits, cache)`, as in `greedy_search`, called on `B * beam_width` rows
    (row `b * beam_width + k` is beam `k` of batch row `b`). Every tensor of
    the cache must have the batch as its leading axis: the search reorders
    it along that axis when beams are reselected.

    Prompts of different lengths: as in `greedy_search`, start at the
    shortest prompt and pass `prompt_mask`; a prompt token is the only
    continuation of its row's beams, at no cost and no length.

    Args:
        next_fn: step function `(tokens, cache, index) -> (logits, cache)`.
        tokens: `(B, L)` integer tensor, positions `< start_index` filled.
        cache: initial cache for `B` rows (any nest of tensors) or None;
            repeated `beam_width` times here.
        start_index: int, first position to generate.
        beam_width: positive int; 1 is greedy search.
        length_penalty: float >= 0, the exponent `alpha` above.
        end_token: optional int that finishes a beam.
        pad_token: int written after `end_token`.
        prompt_mask: optional boolean `(B, L)`, True at the positions that
            hold a prompt token to keep (right-padded prompts).
        return_scores: bool, also return the scores `(B,)` of the returned
            sequences (`(B, beam_width)` with `return_all_beams`).
        return_cache: bool, also return the final cache of the returned beam
            (of every beam, `(B, beam_width, ...)`, with `return_all_beams`).
        return_all_beams: bool, return every beam sorted best first,
            tokens `(B, beam_width, L)`, instead of the best one.
        stop_sequences: optional list of lists of token ids; a beam is
            finished once its tokens end with one of them (as with
            `end_token`).
        process_logits: optional `(logits (N, V), tokens (N, L), index) ->
            logits`, applied to each beam's logits before the log softmax
            (the processors of a `Sampler`).
        coverage_penalty: float >= 0, the weight `beta` above (0 disables
            it).
        alignments_fn: callable `alignments_fn(cache) -> (N, S)`, the
            attention weights over the `S` source positions of the step
            that produced `cache` (`N = B * beam_width` rows); also called
            once on the initial cache to size the coverage. Needed when
            `coverage_penalty > 0`.
        return_steps: bool, also return a dict of what each step decided
            (as `BeamSearchDecoderOutput` of tfa): `"predicted_ids"`, the
            token each beam took at each position, `"parent_ids"`, the
            beam it extended, and `"scores"`, its score, each
            `(B, L, beam_width)`. Positions before `start_index` hold the
            prompt and positions after an early stop the input buffer,
            with parent `k` for beam `k` and score 0.
            `gather_tree(predicted_ids, parent_ids)` backtracks them to
            the beams `(B, L, beam_width)`.

    Returns:
        `tokens` `(B, L)`; with `return_scores`, `return_cache` and/or
        `return_steps`, a tuple `(tokens, scores, cache, steps)` of the ones
        asked for, in that order.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import beam_search

    # A bigram "model" given by a table of log probabilities.
    log_probs = np.log(np.full((4, 4), 0.25, "float32"))

    def next_fn(tokens, cache, index):
        previous = ops.take(tokens, index - 1, axis=1)  # (B,)
        table = ops.convert_to_tensor(log_probs)
        return ops.take(table, previous, axis=0), cache

    tokens = np.zeros((1, 5), "int32")
    best = beam_search(next_fn, tokens, beam_width=3, end_token=3)
    ```

    References:
        - [Wu et al., 2016. Google's Neural Machine Translation System:
          Bridging the Gap between Human and Machine
          Translation](https://arxiv.org/abs/1609.08144)
    """
    check_positive_int("beam_width", beam_width)
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, (int, float))
        or length_penalty < 0
    ):
        raise ValueError(
            "`length_penalty` must be a float >= 0. Received: "
            f"length_penalty={length_penalty!r}"
        )
    _check_coverage(coverage_penalty, alignments_fn)
    tokens = ops.convert_to_tensor(tokens)
    if prompt_mask is not None:
        prompt_mask = ops.convert_to_tensor(prompt_mask)
    check_tokens(tokens, start_index, prompt_mask)
    stop_sequences = check_stop_sequences(stop_sequences)
    stops = end_token is not None or bool(stop_sequences)
    width = beam_width
    batch_size, max_length = tokens.shape[0], tokens.shape[1]
    if batch_size is None:
        batch_size = ops.shape(tokens)[0]

    def expand(x):  # (B, ...) -> (B * W, ...), beams of a row adjacent
        return ops.repeat(x, width, axis=0)

    # What each step decided, (B, L, W): the prompt and the untouched
    # buffer where no step ran, each beam its own parent there.
    step_ids = ops.repeat(tokens[:, :, None], width, axis=2)
    step_parents = ops.broadcast_to(
        ops.arange(width, dtype="int32")[None, None, :],
        (batch_size, max_length, width),
    )
    step_scores = ops.zeros((batch_size, max_length, width), "float32")
    tokens = expand(tokens)  # (B * W, L)
    if prompt_mask is not None:
        prompt_mask = expand(prompt_mask)  # (B * W, L)
    cache = keras.tree.map_structure(expand, as_cache(cache))
    # Only beam 0 is live at first: the W copies are identical, and
    # extending all of them would fill the beam with duplicates.
    first = ops.concatenate(
        [ops.zeros((1,)), ops.full((width - 1,), _IMPOSSIBLE)], axis=0
    )
    log_probs = ops.tile(first[None, :], [batch_size, 1])  # (B, W)
    lengths = ops.zeros((batch_size, width), dtype="int32")  # (B, W)
    done = ops.zeros((batch_size, width), dtype="bool")  # (B, W)
    if coverage_penalty:
        source = ops.shape(alignments_fn(cache))[-1]
        coverage = ops.zeros((batch_size, width, source), "float32")
    else:
        coverage = ops.zeros((batch_size, width, 1), "float32")  # unused
    state = {
        "tokens": tokens,
        "cache": cache,
        "log_probs": log_probs,
        "scores": log_probs,
        "lengths": lengths,
        "done": done,
        "coverage": coverage,
        "steps": (step_ids, step_parents, step_scores),
    }

    def cond(index, state):
        return ops.logical_and(
            index < max_length, ops.logical_not(ops.all(state["done"]))
        )

    def body(index, state):
        tokens, done = state["tokens"], state["done"]
        logits, cache = next_fn(tokens, state["cache"], index)  # (B * W, V)
        if process_logits is not None:
            logits = process_logits(logits, tokens, index)
        vocab = logits.shape[-1]
        step_log_probs = ops.log_softmax(ops.cast(logits, "float32"), axis=-1)
        step_log_probs = ops.reshape(
            step_log_probs, (batch_size, width, vocab)
        )  # (B, W, V)
        if stops:
            # A finished beam has one continuation, pad, at no cost.
            pad_row = ops.where(
                ops.arange(vocab) == pad_token, 0.0, _IMPOSSIBLE
            )  # (V,)
            step_log_probs = ops.where(
                done[:, :, None], pad_row[None, None, :], step_log_probs
            )
        forced, prompt_token = forced_tokens(tokens, prompt_mask, index)
        if forced is not None:
            # (B, W, 1): a prompt position has one continuation, for free.
            forced = ops.reshape(forced, (batch_size, width, 1))
            prompt_token = ops.reshape(prompt_token, (batch_size, width, 1))
            prompt_row = ops.where(
                ops.arange(vocab)[None, None, :] == prompt_token,
                0.0,
                _IMPOSSIBLE,
            )  # (B, W, V)
            step_log_probs = ops.where(forced, prompt_row, step_log_probs)
        candidates = state["log_probs"][:, :, None] + step_log_probs
        grows = ops.logical_not(done)
        if forced is not None:
            grows = ops.logical_and(grows, ops.logical_not(forced[:, :, 0]))
        candidate_lengths = ops.where(
            grows, state["lengths"] + 1, state["lengths"]
        )
        candidate_lengths = ops.broadcast_to(
            candidate_lengths[:, :, None], (batch_size, width, vocab)
        )  # (B, W, V)
        scores = candidates  # (B, W, V)
        if length_penalty:
            scores = candidates / _length_penalty(
                candidate_lengths, length_penalty
            )
        coverage = state["coverage"]
        if coverage_penalty:
            # (B * W, S) -> (B, W, S); a finished beam attends no more.
            attention = ops.reshape(
                ops.cast(alignments_fn(cache), "float32"),
                (batch_size, width, -1),
            )
            coverage = (
                coverage
                + attention
                * ops.cast(ops.logical_not(done), "float32")[:, :, None]
            )
            # The term goes to finished candidates: finished beams and
            # those that take `end_token` now.
            ends = ops.broadcast_to(
                done[:, :, None], (batch_size, width, vocab)
            )
            if end_token is not None:
                ends = ops.logical_or(
                    ends, (ops.arange(vocab) == end_token)[None, None, :]
                )
            scores = scores + ops.where(
                ends,
                coverage_penalty * coverage_penalty_term(coverage)[:, :, None],
                0.0,
            )
        flat_scores = ops.reshape(scores, (batch_size, width * vocab))
        top_scores, flat_index = ops.top_k(flat_scores, k=width)  # (B, W)
        beam = flat_index // vocab  # (B, W), the beam each one extends
        token = ops.cast(flat_index % vocab, tokens.dtype)  # (B, W)
        log_probs = ops.take_along_axis(
            ops.reshape(candidates, (batch_size, width * vocab)),
            flat_index,
            axis=1,
        )
        lengths = ops.take_along_axis(
            ops.reshape(candidate_lengths, (batch_size, width * vocab)),
            flat_index,
            axis=1,
        )
        done = ops.take_along_axis(done, beam, axis=1)
        if coverage_penalty:
            coverage = ops.take_along_axis(coverage, beam[:, :, None], axis=1)
        # Reorder every row-indexed tensor to follow its beam.
        rows = ops.reshape(
            ops.arange(batch_size, dtype="int32")[:, None] * width
            + ops.cast(beam, "int32"),
            (-1,),
        )  # (B * W,)
        tokens = ops.take(tokens, rows, axis=0)
        cache = keras.tree.map_structure(
            lambda x: ops.take(x, rows, axis=0), cache
        )
        tokens = ops.slice_update(
            tokens, [0, index], ops.reshape(token, (-1, 1))
        )
        if stops:
            # `forced` is the same for the beams of a row: no reorder.
            done = ops.reshape(
                finish_rows(
                    ops.reshape(done, (-1,)),
                    ops.reshape(token, (-1,)),
                    tokens,
                    index,
                    end_token,
                    stop_sequences,
                    None if forced is None else ops.reshape(forced, (-1,)),
                ),
                (batch_size, width),
            )
        step_ids, step_parents, step_scores = state["steps"]
        start = [0, index, 0]
        steps = (
            ops.slice_update(
                step_ids, start, ops.cast(token, step_ids.dtype)[:, None]
            ),
            ops.slice_update(
                step_parents, start, ops.cast(beam, "int32")[:, None]
            ),
            ops.slice_update(step_scores, start, top_scores[:, None]),
        )
        return index + 1, {
            "tokens": tokens,
            "cache": cache,
            "log_probs": log_probs,
            "scores": top_scores,
            "lengths": lengths,
            "done": done,
            "coverage": coverage,
            "steps": steps,
        }

    _, state = ops.while_loop(cond, body, (index_tensor(start_index), state))
    tokens, cache, scores = state["tokens"], state["cache"], state["scores"]

    def unexpand(x):  # (B * W, ...) -> (B, W, ...) or best (B, ...)
        # `top_k` keeps the beams sorted best first at every step.
        x = ops.reshape(x, (batch_size, width) + tuple(x.shape[1:]))
        return x if return_all_beams else x[:, 0]

    tokens = unexpand(tokens)
    cache = keras.tree.map_structure(unexpand, cache)
    if not return_all_beams:
        scores = scores[:, 0]
    result = [tokens]
    if return_scores:
        result.append(scores)
    if return_cache:
        result.append(from_cache(cache))
    if return_steps:
        step_ids, step_parents, step_scores = state["steps"]
        result.append(
            {
                "predicted_ids": step_ids,
                "parent_ids": step_parents,
                "scores": step_scores,
            }
        )
    return result[0] if len(result) == 1 else tuple(result)
