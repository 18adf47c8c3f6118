"""Autoregressive decoding: samplers plugged into one decoding loop.

The loops see a model only through a step function
`next_fn(tokens, cache, index) -> (logits, cache)`: the logits `(B, V)` of
the token at position `index` of the `(B, L)` buffer `tokens`, and the
updated cache (any nest of tensors with the batch as leading axis).

A `Sampler` is one decoding method: `GreedySampler`, `RandomSampler`
(temperature, top-k, top-p, min-p), `BeamSampler` and `ContrastiveSampler`;
each applies the logits processors `repetition_penalty` and
`no_repeat_ngram` when asked, ends rows at `end_token` or
`stop_sequences`, and hands each step's tokens to a `stream` callback. The
models' `generate(method=...)` takes a sampler or its name
(`get_sampler`). `greedy_search`, `sample` and `beam_search` are the same
loops as functions; `gather_tree` backtracks a beam search's steps.

`RNNDecoder` runs a recurrent cell, an embedding and an output layer:
teacher-forced (or with scheduled sampling) for training, and through the
samplers above for inference (the successor of tfa's `BasicDecoder` and
`BeamSearchDecoder`).
"""

from keras_attn.generation.beam_sampler import BeamSampler
from keras_attn.generation.beam_search import beam_search
from keras_attn.generation.contrastive_sampler import ContrastiveSampler
from keras_attn.generation.gather_tree import gather_tree
from keras_attn.generation.get_sampler import get_sampler
from keras_attn.generation.greedy import greedy_search
from keras_attn.generation.greedy_sampler import GreedySampler
from keras_attn.generation.logits_processors import min_p_filter
from keras_attn.generation.logits_processors import no_repeat_ngram
from keras_attn.generation.logits_processors import repetition_penalty
from keras_attn.generation.random_sampler import RandomSampler
from keras_attn.generation.rnn_decoder import RNNDecoder
from keras_attn.generation.sampler import Sampler
from keras_attn.generation.sampling import sample

__all__ = [
    "BeamSampler",
    "ContrastiveSampler",
    "GreedySampler",
    "RNNDecoder",
    "RandomSampler",
    "Sampler",
    "beam_search",
    "gather_tree",
    "get_sampler",
    "greedy_search",
    "min_p_filter",
    "no_repeat_ngram",
    "repetition_penalty",
    "sample",
]
