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


def check_model_sizes(
    vocabulary_size,
    max_sequence_length,
    num_layers,
    num_heads,
    hidden_dim,
    intermediate_dim,
):
    """The size checks shared by `Transformer` and `TransformerLM`."""
    for name, value in (
        ("vocabulary_size", vocabulary_size),
        ("max_sequence_length", max_sequence_length),
        ("num_layers", num_layers),
        ("num_heads", num_heads),
        ("hidden_dim", hidden_dim),
    ):
        check_positive_int(name, value)
    if intermediate_dim is not None:
        check_positive_int("intermediate_dim", intermediate_dim)
    if hidden_dim % num_heads:
        raise ValueError(
            "`hidden_dim` must be a multiple of `num_heads`. Received: "
            f"hidden_dim={hidden_dim}, num_heads={num_heads}"
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
