"""Autoregressive decoding: greedy, sampling and beam search.

The loops see a model only through a step function
`next_fn(tokens, cache, index) -> (logits, cache)`: the logits `(B, V)` of
the token at position `index` of the `(B, L)` buffer `tokens`, and the
updated cache (any nest of tensors with the batch as leading axis).
"""

from keras_attn.generation.beam_search import beam_search
from keras_attn.generation.greedy import greedy_search
from keras_attn.generation.sampling import sample

__all__ = ["beam_search", "greedy_search", "sample"]
