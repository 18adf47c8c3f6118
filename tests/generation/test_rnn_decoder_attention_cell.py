"""RNNDecoder driving `AttentionRNNCell` (the tfa `AttentionWrapper` port).

Runs once `keras_attn.layers.AttentionRNNCell` exists (it is developed on
another branch); the reference is a Python loop over the cell itself.
"""

import keras
import numpy as np
from keras import ops

from keras_attn import layers
from keras_attn.generation import RNNDecoder
from keras_attn.generation import gather_tree

V, S = 6, 5


def _np(x):
    return ops.convert_to_numpy(x)


def _decoder():
    keras.utils.set_random_seed(2)
    cell = layers.AttentionRNNCell(
        keras.layers.LSTMCell(8),
        layers.LuongAttention(),
        attention_layer_size=8,
    )
    memory = np.random.default_rng(0).normal(0, 1, (2, S, 8))
    memory = memory.astype("float32")
    cell.setup_memory(memory)
    decoder = RNNDecoder(
        cell, keras.layers.Embedding(V, 4), keras.layers.Dense(V)
    )
    return decoder, cell, memory


def test_greedy_matches_a_loop_over_the_cell():
    decoder, cell, memory = _decoder()
    cell.setup_memory(memory)
    state = cell.get_initial_state(batch_size=2)
    result = decoder.decode(initial_state=state, maximum_iterations=4)
    token, ids = np.zeros((2,), "int32") + 1, []
    states = list(state)
    for _ in range(4):
        output, states = cell(decoder.embedding(token), states)
        logits = decoder.output_layer(output)
        token = np.argmax(_np(logits), axis=-1).astype("int32")
        ids.append(token)
    np.testing.assert_array_equal(_np(result["ids"]), np.stack(ids, 1))


def test_beam_with_coverage_reads_the_cell_alignments():
    decoder, cell, memory = _decoder()
    cell.setup_memory(memory)
    state = cell.get_initial_state(batch_size=2)
    # The cell holds its memory: repeat it per beam (tfa's tile_batch).
    width = 3
    cell.setup_memory(np.repeat(memory, width, axis=0))
    beam = decoder.decode(
        initial_state=state,
        maximum_iterations=4,
        method="beam",
        beam_width=width,
        coverage_penalty=0.5,
        alignments_fn=lambda states: states[3],  # [h, c, attention, align]
    )
    beams = _np(gather_tree(beam["predicted_ids"], beam["parent_ids"]))
    np.testing.assert_array_equal(
        beams.transpose(0, 2, 1), _np(beam["beam_ids"])
    )
    # The final scores are those of the last step, best first.
    np.testing.assert_allclose(
        _np(beam["beam_scores"]), _np(beam["step_scores"])[:, -1], rtol=1e-6
    )
    assert np.all(np.diff(_np(beam["beam_scores"]), axis=1) <= 0)
