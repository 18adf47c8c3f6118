"""Dispatch of the transformer models' `generate` to the decoding loops."""

from keras_attn.generation.beam_search import beam_search
from keras_attn.generation.greedy import greedy_search
from keras_attn.generation.sampling import sample

METHODS = ("greedy", "beam", "sample")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={value!r}"
        )


def check_method(method):
    if method not in METHODS:
        raise ValueError(
            f"`method` must be one of {METHODS}. Received: method={method!r}"
        )


def decode(next_fn, tokens, cache, start_index, method, options):
    """Runs `method` on `next_fn`; `options` are the loop's own arguments."""
    loops = {"greedy": greedy_search, "beam": beam_search, "sample": sample}
    return loops[method](
        next_fn, tokens, cache, start_index=start_index, **options
    )
