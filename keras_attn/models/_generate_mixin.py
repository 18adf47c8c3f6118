"""`generate`, written once for the sequence models (private)."""

import dataclasses

import keras

from keras_attn._compat import CompiledGeneration
from keras_attn._compat import TokenModelSaveSignature
from keras_attn._compat import decoding_owns_caches
from keras_attn._compat import inference_mode
from keras_attn._compat import outside_jax_trace

# Compiled `generate` programs kept per model (each prompt length, sampler
# and option set has its own); the oldest is dropped beyond this.
MAX_PROGRAMS = 16


@dataclasses.dataclass(frozen=True)
class GenerateRequest:
    """The arguments of one `generate` call, as a model passes them on."""

    max_length: int
    method: str
    start_token: object
    end_token: object
    pad_token: int
    use_cache: bool
    return_attention_scores: bool
    stop_sequences: object
    stream: object
    options: dict
    # The model's compiled programs (a dict, see `run_decoding`), or None
    # where there are none (not JAX, or inside a trace).
    compiled: object = None


class GenerateMixin(TokenModelSaveSignature):
    """Gives a model the one `generate` of `keras_attn.models`' contract.

    A model implements `_generate(inputs, request)`: it parses its inputs
    into a prompt and a context (e.g. the encoder output) and runs the
    decoding loop (`keras_attn.models._decoding.generate`) with its step
    function; on JAX through a compiled program kept on the model
    (`run_decoding`). The models that generate are
    the ones whose inputs are token ids, hence `TokenModelSaveSignature`
    (so that `model.export()` works on TensorFlow).
    """

    def generate(
        self,
        inputs,
        max_length,
        method="greedy",
        start_token=None,
        end_token=None,
        pad_token=0,
        use_cache=True,
        return_attention_scores=False,
        stop_sequences=None,
        stream=None,
        **options,
    ):
        """Generates token sequences (the contract of `keras_attn.models`).

        Runs without gradient tracking (`torch.no_grad` on PyTorch).

        Args:
            inputs: for `TransformerLM`, the prompt `token_ids (B, P)` or a
                dict with `"token_ids"` and `"padding_mask"` (True on prompt
                tokens; prompts right-padded). For `Transformer` and
                `RNNSeq2Seq`, the source `encoder_token_ids (B, S)` or a
                dict with `"encoder_token_ids"` and optionally
                `"encoder_padding_mask"`, `"token_ids"` (a decoder prompt)
                and `"padding_mask"`.
            max_length: int, the length of the returned sequences, start
                token and prompt included (at most the model's
                `max_sequence_length` where it has learned positions).
            method: a `keras_attn.generation.Sampler`, or the name of one:
                `"greedy"`, `"sample"` (or `"random"`), `"beam"` or
                `"contrastive"` (see `keras_attn.generation.get_sampler`).
            start_token: optional int put before every prompt; required by
                the encoder-decoder models when they get no decoder prompt.
            end_token: optional int; a sequence stops after it.
            pad_token: int written after `end_token`. Defaults to `0`.
            use_cache: bool, decode one token per step against caches
                (fast), or re-run the decoder on the whole prefix each step.
                The RNN decoder always steps on its state.
            return_attention_scores: bool, also return the scores: row `i`
                is the attention when producing token `i` (zeros on prompt
                rows); `(B, max_length, S)` over the source for the
                encoder-decoder models (the last block's cross-attention
                averaged over heads, or the RNN's alignments),
                `(B, max_length, max_length)` for `TransformerLM` (the last
                block's self-attention averaged over heads).
            stop_sequences: optional list of lists of token ids; a row
                stops once its last tokens match one of them (kept in the
                output, `pad_token` after).
            stream: optional callable `stream(token_ids, index)`, called
                after each step with the `(B,)` NumPy tokens written at
                position `index`; the loop then runs eagerly (not with
                `method="beam"`, nor inside `jax.jit` / `tf.function`).
            **options: the constructor arguments of the named sampler:
                `repetition_penalty`, `no_repeat_ngram_size` (all);
                `beam_width`, `length_penalty` (beam); `temperature`,
                `top_k`, `top_p`, `min_p`, `seed` (sample); `k`, `alpha`,
                `temperature` (contrastive).

        Returns:
            `(B, max_length)` int32 tokens, the prompt included and
            `pad_token` after `end_token`; or `(tokens, scores)` with
            `return_attention_scores=True`.
        """
        request = GenerateRequest(
            max_length=max_length,
            method=method,
            start_token=start_token,
            end_token=end_token,
            pad_token=pad_token,
            use_cache=use_cache,
            return_attention_scores=return_attention_scores,
            stop_sequences=stop_sequences,
            stream=stream,
            options=options,
            compiled=self._generate_programs(),
        )
        # The loop makes its own caches: on PyTorch it writes them in place.
        with inference_mode(), decoding_owns_caches():
            return self._generate(inputs, request)

    def _generate_programs(self):
        """The dict of this model's compiled `generate` programs, or None.

        Only on JAX and outside a trace (`run_decoding` says why).
        """
        if not outside_jax_trace():
            return None
        programs = getattr(self, "_compiled_generate", None)
        if programs is None:
            # A plain holder, not a dict: Keras would track a dict.
            programs = self._compiled_generate = CompiledPrograms()
        return programs.by_key


class CompiledPrograms:
    """Holds a model's compiled `generate` programs by their static key."""

    def __init__(self):
        self.by_key = {}


def run_decoding(decode, args, request, model, sampler, static):
    """`decode(*args)`, as a compiled program of the model where one fits.

    On JAX, `ops.while_loop` traces and compiles its loop at every call:
    the step function is a new closure each time. Here the device part of
    `generate` (`decode`: prefill, loop, scores) runs instead as a
    `jax.jit` program kept per static configuration (`compile_key`), with
    the model's weights and the sampler's seed states as arguments (see
    `keras_attn._compat.CompiledGeneration`), so a call at known shapes
    compiles nothing. Elsewhere, and where `compile_key` is None, `decode`
    runs as it is.

    Args:
        decode: `(*args) -> outputs`; every per-call tensor it needs is in
            `args`, anything else it reads is in the key.
        args: a nest of tensors.
        request: the `GenerateRequest`.
        model: the model (its variables are mapped in).
        sampler: the call's `Sampler`.
        static: a tuple of hashables that `decode` depends on besides the
            request and the sampler (step function, first index, ...).
    """
    key = compile_key(request, sampler, static)
    if key is None:
        return decode(*args)
    programs = request.compiled
    if key not in programs:
        if len(programs) >= MAX_PROGRAMS:  # forget the oldest
            del programs[next(iter(programs))]
        programs[key] = CompiledGeneration(
            decode,
            lambda: model.variables,
            lambda: seed_states(sampler),
        )
    return programs[key](*args)


def seed_states(sampler):
    """The state variables of the `keras.random.SeedGenerator`s a sampler
    holds (a call advances them)."""
    return [
        value.state
        for value in getattr(sampler, "__dict__", {}).values()
        if isinstance(value, keras.random.SeedGenerator)
    ]


def _frozen(value):
    """`value` with lists and dicts made hashable (tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def compile_key(request, sampler, static):
    """The static configuration of a compiled `generate`, or None.

    None where the call does not run as a cached program: no program
    cache (not JAX, or inside a trace), a `stream` callback (the loop runs
    in Python), or a sampler drawing from Keras' global seed generator
    (`seed=None`), which refuses to run under a JAX trace. Shapes and
    dtypes are not in the key: `jax.jit` tells them apart itself.
    """
    if request.compiled is None or request.stream is not None:
        return None
    if "seed" in getattr(sampler, "__dict__", {}) and sampler.seed is None:
        return None
    key = (
        static,
        # A sampler instance is its own key (its attributes may hold more
        # than its config); a name is rebuilt from the same options.
        request.method,
        type(sampler),
        _frozen(sampler.get_config()),
        _frozen(request.options),
        request.end_token,
        request.pad_token,
        request.use_cache,
        request.return_attention_scores,
        _frozen(request.stop_sequences),
    )
    try:
        hash(key)
    except TypeError:  # an option that is not hashable: no reuse
        return None
    return key
