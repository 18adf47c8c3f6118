"""`RNNSeq2Seq.generate` under the models' one `generate` contract.

The reference is a plain Python loop over teacher-forced calls of the model
and `np.argmax`, independent of `keras_attn.generation`.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import RNNSeq2Seq

VOCAB = 12
START = 1


def _np(x):
    return ops.convert_to_numpy(x)


def _model(rng, **kwargs):
    model = RNNSeq2Seq(
        vocabulary_size=VOCAB, embedding_dim=8, hidden_dim=12, **kwargs
    )
    source = rng.integers(2, VOCAB, (1, 5))
    model((source, source))
    # Large random weights: an untrained model otherwise repeats a token.
    model.set_weights(
        [rng.standard_normal(w.shape).astype("float32") for w in model.weights]
    )
    return model


def _greedy_reference(model, source, prompts, max_length):
    """Each row's own prompt continued by teacher-forced full passes."""
    rows = []
    for b, prompt in enumerate(prompts):
        tokens = list(prompt)
        while len(tokens) < max_length:
            logits = _np(model((source[b : b + 1], np.array([tokens]))))
            tokens.append(int(logits[0, -1].argmax()))
        rows.append(tokens)
    return np.array(rows)


def test_ragged_decoder_prompts(rng):
    model = _model(rng)
    source = rng.integers(2, VOCAB, (3, 5))
    prompts = [[START], [START, 7, 3], [START, 4]]
    token_ids = np.zeros((3, 3), "int32")
    for b, p in enumerate(prompts):
        token_ids[b, : len(p)] = p
    inputs = {
        "encoder_token_ids": source,
        "token_ids": token_ids,
        "padding_mask": token_ids != 0,
    }
    expected = _greedy_reference(model, source, prompts, 8)
    generated = model.generate(inputs, 8)
    assert keras.backend.standardize_dtype(generated.dtype) == "int32"
    np.testing.assert_array_equal(_np(generated), expected)
    # Beam search of width 1 is greedy search, through the same prompts.
    np.testing.assert_array_equal(
        _np(model.generate(inputs, 8, "beam", beam_width=1)), expected
    )


def test_end_token_pad_and_scores(rng):
    model = _model(rng, padding_token=0)
    source = rng.integers(2, VOCAB, (2, 5))
    source[1, 3:] = 0
    free = _greedy_reference(model, source, [[START]] * 2, 7)
    end = int(free[0, 3])
    tokens, scores = model.generate(
        source,
        7,
        start_token=START,
        end_token=end,
        pad_token=0,
        return_attention_scores=True,
    )
    tokens, scores = _np(tokens), _np(scores)
    for b in range(2):
        stop = list(free[b]).index(end, 1) if end in free[b, 1:] else 7
        np.testing.assert_array_equal(
            tokens[b, : stop + 1], free[b, : stop + 1]
        )
        assert np.all(tokens[b, stop + 1 :] == 0)
    assert scores.shape == (2, 7, 5)
    np.testing.assert_allclose(scores[:, 0], 0.0)  # the start token's row
    # Teacher-forced alignments of the generated tokens (row i: token i).
    _, alignments = model((source, free[:, :-1]), return_alignments=True)
    stop = list(free[0]).index(end, 1)  # rows after it are not produced
    np.testing.assert_allclose(
        scores[0, 1 : stop + 1], _np(alignments)[0, :stop], atol=1e-5
    )
    assert np.all(scores[1, :, 3:] == 0)  # padded source positions


def test_sampling_is_seeded(rng):
    model = _model(rng)
    source = rng.integers(2, VOCAB, (2, 5))
    first = model.generate(source, 6, "sample", start_token=START, seed=4)
    again = model.generate(source, 6, "sample", start_token=START, seed=4)
    np.testing.assert_array_equal(_np(first), _np(again))
    assert np.all(_np(first)[:, 0] == START)


def test_no_autograd_on_torch(rng):
    # Defect 6: generate recorded the autograd graph on torch.
    if keras.backend.backend() != "torch":
        pytest.skip("autograd recording is a PyTorch matter")
    model = _model(rng)
    source = rng.integers(2, VOCAB, (2, 5))
    tokens, scores = model.generate(
        source, 5, start_token=START, return_attention_scores=True
    )
    assert not scores.requires_grad
    assert not tokens.requires_grad
    import torch

    with torch.enable_grad():  # not silenced by the caller's context
        _, scores = model.generate(
            source, 5, start_token=START, return_attention_scores=True
        )
    assert not scores.requires_grad and scores.grad_fn is None


def test_needs_start_token_or_prompt(rng):
    model = _model(rng)
    with pytest.raises(ValueError, match="start_token"):
        model.generate(np.ones((1, 3), "int32"), 4)
