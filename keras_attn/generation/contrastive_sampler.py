"""Contrastive search (keras-hub's `ContrastiveSampler`) as a sampler."""

import keras
from keras import ops

from keras_attn._validation import check_number
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn.generation._loop import as_cache
from keras_attn.generation._loop import check_stream
from keras_attn.generation._loop import check_tokens
from keras_attn.generation._loop import emit
from keras_attn.generation._loop import finish_rows
from keras_attn.generation._loop import forced_tokens
from keras_attn.generation._loop import from_cache
from keras_attn.generation._loop import index_tensor
from keras_attn.generation._loop import run_loop
from keras_attn.generation.logits_processors import check_stop_sequences
from keras_attn.generation.sampler import Sampler


def _cosine(history, candidate):
    """`(N, L)` cosine similarity of `history (N, L, D)` with `(N, D)`."""
    history = ops.cast(history, "float32")
    candidate = ops.cast(candidate, "float32")
    dots = ops.einsum("nld,nd->nl", history, candidate)
    norms = (
        ops.sqrt(ops.sum(ops.square(history), axis=-1))
        * ops.sqrt(ops.sum(ops.square(candidate), axis=-1))[:, None]
    )
    return dots / ops.maximum(norms, 1e-12)


@keras.saving.register_keras_serializable(package="keras_attn")
class ContrastiveSampler(Sampler):
    """Contrastive search: likely tokens unlike the context (`"contrastive"`).

    At each step the `k` most likely tokens are candidates; each is run
    through the model, and the candidate `v` with the highest score
    `(1 - alpha) * p(v) - alpha * max_j cos(h_v, h_j)` is kept, where `h_v`
    is the candidate's last hidden state and `h_j` those of the tokens
    before it (prompt included). Repetition, which gives a hidden state
    close to an earlier one, is penalized; `alpha = 0` is greedy search.
    The semantics of keras-hub's `ContrastiveSampler` (`p` is the softmax
    of the logits divided by `temperature`, after the processors of
    `Sampler`), as one `keras.ops.while_loop` that carries the chosen
    candidate's logits and cache to the next step, so each step costs one
    model call on `k * B` rows.

    The step function also returns the hidden state of the token it read:
    `next_fn(tokens, cache, index) -> (logits (B, V), hidden (B, D),
    cache)`, where `hidden` belongs to the token at `index - 1` (the
    models' `generate` builds such a function when given this sampler).
    It is called once before the loop and then with `index + 1` on the
    candidates placed at `index`, so it must accept `index == L`.

    Args:
        k: positive int, the number of candidates.
        alpha: float in `[0, 1]`, the weight of the similarity penalty.
        temperature: positive float.
        repetition_penalty: optional float > 0 (see `Sampler`).
        no_repeat_ngram_size: optional positive int (see `Sampler`).

    Call arguments:
        hidden_states: optional `(B, L, D)` hidden states of the prompt
            positions before `start_index - 1` (the loop's first call
            gives the one at `start_index - 1`); zeros when None, which
            suits `start_index == 1`. The other call arguments are those
            of `Sampler`.

    Example:

    ```python
    import numpy as np
    from keras import ops
    from keras_attn.generation import ContrastiveSampler

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((6, 4)).astype("float32")
    table = rng.standard_normal((6, 6)).astype("float32")

    def next_fn(tokens, cache, index):
        # A bigram "model" whose hidden state is the token's embedding.
        previous = ops.take(tokens, index - 1, axis=1)
        hidden = ops.take(ops.convert_to_tensor(embeddings), previous, 0)
        logits = ops.take(ops.convert_to_tensor(table), previous, 0)
        return logits, hidden, cache

    ContrastiveSampler(k=3, alpha=0.6)(next_fn, np.zeros((2, 6), "int32"))
    ```

    References:
        - Su et al., "A Contrastive Framework for Neural Text Generation",
          2022.
    """

    uses_hidden_states = True

    def __init__(
        self,
        k=5,
        alpha=0.6,
        temperature=1.0,
        repetition_penalty=None,
        no_repeat_ngram_size=None,
    ):
        super().__init__(
            repetition_penalty=repetition_penalty,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
        check_positive_int("k", k)
        check_number("alpha", alpha, minimum=0)
        if alpha > 1:
            raise ValueError(
                f"`alpha` must be in [0, 1]. Received: alpha={alpha!r}"
            )
        check_positive_number("temperature", temperature)
        self.k = k
        self.alpha = alpha
        self.temperature = temperature

    def __call__(
        self,
        next_fn,
        tokens,
        cache=None,
        start_index=1,
        end_token=None,
        pad_token=0,
        prompt_mask=None,
        stop_sequences=None,
        stream=None,
        return_cache=False,
        hidden_states=None,
    ):
        tokens = ops.convert_to_tensor(tokens)
        if prompt_mask is not None:
            prompt_mask = ops.convert_to_tensor(prompt_mask)
        check_tokens(tokens, start_index, prompt_mask)
        stop_sequences = check_stop_sequences(stop_sequences)
        check_stream(stream, tokens)
        batch_size, max_length = tokens.shape[0], tokens.shape[1]
        if batch_size is None:
            batch_size = ops.shape(tokens)[0]
        vocabulary_size = None
        k = self.k
        pad = ops.cast(pad_token, tokens.dtype)
        stops = end_token is not None or bool(stop_sequences)

        def beams(x):  # (B, ...) -> (B * k, ...), a row's candidates adjacent
            return ops.repeat(x, k, axis=0)

        def best_of(x, best):  # (B * k, ...) -> (B, ...) at `best (B,)`
            x = ops.reshape(x, (batch_size, k) + tuple(x.shape[1:]))
            rows = ops.arange(batch_size, dtype="int32") * k + ops.cast(
                best, "int32"
            )
            return ops.take(ops.reshape(x, (-1,) + tuple(x.shape[2:])), rows, 0)

        index = index_tensor(start_index)
        logits, hidden, cache = next_fn(tokens, as_cache(cache), index)
        vocabulary_size = logits.shape[-1]
        if vocabulary_size is not None and k > vocabulary_size:
            raise ValueError(
                "`k` must be at most the vocabulary size "
                f"({vocabulary_size}). Received: k={k}"
            )
        if hidden_states is None:
            hidden_states = ops.zeros(
                (batch_size, max_length, hidden.shape[-1]), "float32"
            )
        hidden_states = ops.slice_update(
            ops.cast(hidden_states, "float32"),
            [0, index - 1, 0],
            ops.cast(hidden, "float32")[:, None, :],
        )
        done = ops.zeros((batch_size,), "bool")

        def cond(index, tokens, cache, logits, hidden_states, done):
            return ops.logical_and(
                index < max_length, ops.logical_not(ops.all(done))
            )

        def body(index, tokens, cache, logits, hidden_states, done):
            logits = self.process_logits(logits, tokens, index)
            probs = ops.softmax(logits / self.temperature, axis=-1)
            top_probs, candidates = ops.top_k(probs, k=k)  # (B, k)
            candidates = ops.cast(candidates, tokens.dtype)
            forced, prompt_token = forced_tokens(tokens, prompt_mask, index)
            if forced is not None:
                candidates = ops.where(
                    forced[:, None], prompt_token[:, None], candidates
                )
            if stops:
                candidates = ops.where(done[:, None], pad, candidates)
            # Every candidate placed at `index`, run through the model.
            candidate_tokens = ops.slice_update(
                beams(tokens), [0, index], ops.reshape(candidates, (-1, 1))
            )  # (B * k, L)
            next_logits, next_hidden, next_cache = next_fn(
                candidate_tokens,
                keras.tree.map_structure(beams, cache),
                index + 1,
            )
            similarity = _cosine(beams(hidden_states), next_hidden)
            before = ops.arange(max_length)[None, :] < index  # (1, L)
            similarity = ops.where(before, similarity, -1.0)
            # (B, k): keras-hub's score.
            score = (1.0 - self.alpha) * top_probs - self.alpha * ops.reshape(
                ops.max(similarity, axis=-1), (batch_size, k)
            )
            best = ops.argmax(score, axis=-1)  # (B,)
            tokens = best_of(candidate_tokens, best)
            cache = keras.tree.map_structure(
                lambda x: best_of(x, best), next_cache
            )
            chosen_hidden = ops.cast(best_of(next_hidden, best), "float32")
            hidden_states = ops.slice_update(
                hidden_states, [0, index, 0], chosen_hidden[:, None, :]
            )
            token = ops.take(tokens, index, axis=1)  # (B,)
            if stops:
                done = finish_rows(
                    done,
                    token,
                    tokens,
                    index,
                    end_token,
                    stop_sequences,
                    forced,
                )
            emit(stream, token, index)
            return (
                index + 1,
                tokens,
                cache,
                best_of(next_logits, best),
                hidden_states,
                done,
            )

        _, tokens, cache, _, _, _ = run_loop(
            cond,
            body,
            (index, tokens, cache, logits, hidden_states, done),
            eager=stream is not None,
        )
        if not return_cache:
            return tokens
        return tokens, from_cache(cache)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"k": self.k, "alpha": self.alpha, "temperature": self.temperature}
        )
        return config


__all__ = ["ContrastiveSampler"]
