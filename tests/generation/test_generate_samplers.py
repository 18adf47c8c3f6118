"""The models' `generate` with the samplers: contrastive search against
brute force on full passes, stop sequences and streaming."""

import numpy as np
import pytest
from keras import ops

from keras_attn.generation import ContrastiveSampler
from keras_attn.models import RNNSeq2Seq
from keras_attn.models import Transformer
from keras_attn.models import TransformerLM
from tests.generation.test_samplers import np_contrastive


def _lm():
    model = TransformerLM(
        vocabulary_size=11,
        max_sequence_length=10,
        hidden_dim=8,
        num_layers=2,
        num_heads=2,
        intermediate_dim=16,
    )
    model.build((None, None))
    return model


@pytest.mark.parametrize("use_cache", [True, False])
def test_lm_contrastive_matches_brute_force(use_cache):
    model = _lm()
    embeddings = ops.convert_to_numpy(model.token_embedding.embeddings)

    def hidden_fn(ids):
        hidden = model._hidden(ops.convert_to_tensor(ids[None], "int32"))[0]
        hidden = ops.convert_to_numpy(hidden)[0]
        return hidden, hidden @ embeddings.T  # tied weights: the head

    prompt = np.array([[1, 5, 7], [1, 2, 0]], "int32")
    mask = np.array([[True, True, True], [True, True, False]])
    out = model.generate(
        {"token_ids": prompt, "padding_mask": mask},
        max_length=8,
        method="contrastive",
        k=3,
        alpha=0.5,
        use_cache=use_cache,
    )
    tokens = np.zeros((2, 8), "int32")
    tokens[:, :3] = prompt * mask
    expected = np_contrastive(hidden_fn, tokens, mask.sum(1), 3, 0.5)
    np.testing.assert_array_equal(ops.convert_to_numpy(out), expected)


def test_seq2seq_contrastive_matches_brute_force():
    model = Transformer(
        vocabulary_size=9,
        max_sequence_length=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
    )
    source = np.array([[3, 4, 5, 0], [6, 7, 0, 0]], "int32")
    model({"encoder_token_ids": source, "token_ids": source})
    memory = model.encode(source)
    memory_mask = ops.ones(source.shape, "bool")  # no padding_token set
    embeddings = ops.convert_to_numpy(
        model.decoder_embedding.token_embedding.embeddings
    )

    def hidden_fn_for(b):
        def hidden_fn(ids):
            hidden = model._decode_hidden(
                ops.convert_to_tensor(ids[None], "int32"),
                memory[b : b + 1],
                memory_mask[b : b + 1],
                None,
                False,
                None,
            )[0]
            hidden = ops.convert_to_numpy(hidden)[0]
            return hidden, hidden @ embeddings.T

        return hidden_fn

    sampler = ContrastiveSampler(k=4, alpha=0.7)
    out = ops.convert_to_numpy(
        model.generate(source, max_length=6, start_token=1, method=sampler)
    )
    tokens = np.zeros((1, 6), "int32")
    tokens[:, 0] = 1
    for b in range(2):
        expected = np_contrastive(
            hidden_fn_for(b), tokens, np.array([1]), 4, 0.7
        )
        np.testing.assert_array_equal(out[b : b + 1], expected)


def test_rnn_contrastive_alpha_zero_is_greedy():
    model = RNNSeq2Seq(vocabulary_size=9, embedding_dim=6, hidden_dim=8)
    source = np.array([[3, 4, 5], [6, 7, 8]], "int32")
    greedy = model.generate(source, max_length=6, start_token=1)
    contrastive = model.generate(
        source, max_length=6, start_token=1, method="contrastive", alpha=0.0
    )
    np.testing.assert_array_equal(
        ops.convert_to_numpy(contrastive), ops.convert_to_numpy(greedy)
    )
    # With a penalty, it still runs and keeps the start token.
    out = model.generate(
        source, max_length=6, start_token=1, method="contrastive"
    )
    assert (ops.convert_to_numpy(out)[:, 0] == 1).all()


def test_generate_stop_sequences_and_stream():
    model = _lm()
    prompt = np.array([[1, 5], [1, 2]], "int32")
    plain = ops.convert_to_numpy(model.generate(prompt, max_length=10))
    # Stop at the first bigram that greedy produces in row 0.
    stop = [int(plain[0, 3]), int(plain[0, 4])]
    seen = []
    out = ops.convert_to_numpy(
        model.generate(
            prompt,
            max_length=10,
            stop_sequences=[stop],
            stream=lambda tokens, index: seen.append(tokens),
        )
    )
    expected = plain.copy()
    for row in expected:
        for i in range(2, 10):  # the match may start in the prompt
            if list(row[i - 1 : i + 1]) == stop:
                row[i + 1 :] = 0
                break
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(np.stack(seen, 1), out[:, 2 : 2 + len(seen)])
    with pytest.raises(ValueError, match="stream"):
        model.generate(prompt, max_length=6, method="beam", stream=print)
    with pytest.raises(ValueError, match="method='topk'"):
        model.generate(prompt, max_length=6, method="topk")
