"""`generate`, written once for the sequence models (private)."""

import dataclasses

from keras_attn._compat import TokenModelSaveSignature
from keras_attn._compat import inference_mode


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


class GenerateMixin(TokenModelSaveSignature):
    """Gives a model the one `generate` of `keras_attn.models`' contract.

    A model implements `_generate(inputs, request)`: it parses its inputs
    into a prompt, builds its step function and runs the decoding loop
    (`keras_attn.models._decoding.generate`). The models that generate are
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
        )
        with inference_mode():
            return self._generate(inputs, request)
