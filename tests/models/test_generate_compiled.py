"""`generate` called again at the same shapes (on JAX: a cached program).

On JAX, `generate` runs its device part as a `jax.jit` program cached on
the model, with the weights and the seed states as arguments; the other
backends run the loop as before. Whatever the backend, a second call must
see the model's new weights and the new encoder input (nothing baked into
a program), and seeds must behave as in the eager loop (a `stream`
callback makes the loop eager on every backend): an int seed repeats its
draws, a `keras.random.SeedGenerator` advances between calls.

The greedy reference is a loop written out here: the model's full forward
pass `model(...)` on a fixed-length buffer, then `np.argmax`.
"""

import logging

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import Transformer
from keras_attn.models import TransformerLM

B, VOCAB, MAX_LENGTH, PROMPT = 2, 17, 7, 2


def _np(x):
    return ops.convert_to_numpy(x)


def _randomize(model, seed):
    # Large random weights (unit norm scales): an untrained model repeats
    # one token, which would hide stale weights.
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            np.ones(w.shape, "float32")
            if w.path.endswith("gamma")
            else rng.standard_normal(w.shape).astype("float32")
            for w in model.weights
        ]
    )


@pytest.fixture(scope="module")
def lm():
    model = TransformerLM(
        VOCAB, MAX_LENGTH, num_heads=2, hidden_dim=8, tie_weights=False
    )
    model.build((None, None))
    return model


@pytest.fixture(scope="module")
def seq2seq():
    model = Transformer(
        VOCAB, MAX_LENGTH, num_layers=1, num_heads=2, hidden_dim=8
    )
    model.build({"encoder_token_ids": (None, None), "token_ids": (None, None)})
    return model


def _greedy_reference(model, prompt, source=None):
    # Causal decoder: the logits of position i - 1 on the whole buffer
    # (zeros after i) are those of the prefix.
    tokens = np.zeros((B, MAX_LENGTH), "int32")
    tokens[:, :PROMPT] = prompt
    for i in range(PROMPT, MAX_LENGTH):
        if source is None:
            logits = _np(model(tokens))  # (B, L, V)
        else:
            logits = _np(
                model({"encoder_token_ids": source, "token_ids": tokens})
            )
        tokens[:, i] = logits[:, i - 1].argmax(-1)
    return tokens


class _Compilations(logging.Handler):
    """The names JAX logs as "Compiling <name>" (`jax_log_compiles`)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.names = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Compiling "):
            self.names.append(message.split()[1])

    def __enter__(self):
        import jax

        self.logger = logging.getLogger("jax")
        self.level = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.DEBUG)
        jax.config.update("jax_log_compiles", True)
        return self

    def __exit__(self, *exc):
        import jax

        jax.config.update("jax_log_compiles", False)
        self.logger.setLevel(self.level)
        self.logger.removeHandler(self)


@pytest.mark.parametrize("name", ["TransformerLM", "Transformer"])
def test_second_call_sees_new_weights_and_inputs(name, request):
    model = request.getfixturevalue(
        "lm" if name == "TransformerLM" else "seq2seq"
    )
    rng = np.random.default_rng(0)
    for seed in (1, 2):  # the second call: new weights, prompt and source
        _randomize(model, seed)
        prompt = rng.integers(1, VOCAB, (B, PROMPT)).astype("int32")
        if name == "TransformerLM":
            source, inputs = None, prompt
        else:
            source = rng.integers(1, VOCAB, (B, 4)).astype("int32")
            inputs = {"encoder_token_ids": source, "token_ids": prompt}
        want = _greedy_reference(model, prompt, source)
        if seed == 2 and keras.backend.backend() == "jax":
            with _Compilations() as compiled:
                got = model.generate(inputs, max_length=MAX_LENGTH)
            # The program of the first call, run on the new values.
            assert not compiled.names, compiled.names
        else:
            got = model.generate(inputs, max_length=MAX_LENGTH)
        np.testing.assert_array_equal(_np(got), want, err_msg=f"{seed}")


def _sample(model, prompt, seed, stream=False):
    return _np(
        model.generate(
            prompt,
            max_length=MAX_LENGTH,
            method="sample",
            temperature=3.0,
            seed=seed,
            stream=(lambda token, index: None) if stream else None,
        )
    )


def test_seeds_behave_as_in_the_eager_loop(lm):
    _randomize(lm, 3)
    prompt = np.full((B, PROMPT), 1, "int32")
    # An int seed: the same draws at every call, compiled or eager.
    first = _sample(lm, prompt, 5)
    np.testing.assert_array_equal(_sample(lm, prompt, 5), first)
    np.testing.assert_array_equal(_sample(lm, prompt, 5, stream=True), first)
    # A SeedGenerator advances between calls, the same way in both loops.
    compiled = keras.random.SeedGenerator(7)
    eager = keras.random.SeedGenerator(7)
    draws = [_sample(lm, prompt, compiled) for _ in range(2)]
    assert not np.array_equal(draws[0], draws[1])
    for want in draws:
        np.testing.assert_array_equal(
            _sample(lm, prompt, eager, stream=True), want
        )
    np.testing.assert_array_equal(
        _np(compiled.state.value), _np(eager.state.value)
    )
