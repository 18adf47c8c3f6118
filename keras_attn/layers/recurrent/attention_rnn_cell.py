"""The cell form of `AttentionRNN`, for `keras.layers.RNN` and stacks."""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn.layers.attention._rnn_attention_base import (
    check_per_memory_position,
)
from keras_attn.layers.recurrent._attention_core import AttentionCore


@keras.saving.register_keras_serializable(package="keras_attn")
class AttentionRNNCell(AttentionCore, keras.layers.Layer):
    """An RNN cell with attention over a memory, for any Keras RNN loop.

    The step of `AttentionRNN` (input feeding, the wrapped cell, one or
    several attention mechanisms, the attention layer) as a Keras RNN cell,
    as `tensorflow_addons.seq2seq.AttentionWrapper` was: it goes inside
    `keras.layers.RNN`, first in a `keras.layers.StackedRNNCells` (the
    attention then sits on the first layer of the stack and the layers
    above read its output), or in a hand-written decoding loop. It has
    `state_size`, `output_size` and `get_initial_state(batch_size)` as
    Keras expects.

    The memory is not an input of a cell: give it with
    `setup_memory(memory, memory_mask)` before the RNN runs, in the same
    `call` (or traced function) as the RNN that uses it, so that gradients
    reach the encoder. The mechanisms' key projections of the memory are
    computed once per sequence, by `setup_memory` and again by
    `get_initial_state` (which `keras.layers.RNN` calls at the start of
    each sequence unless given `initial_state`): after changing weights
    (`set_weights`, a training step) without either, call `setup_memory`
    again.

    The state is a flat list: the wrapped cell's state (flattened, e.g.
    `[h, c]` for an `LSTMCell`), the attention vector `(B, A)`, then one
    alignment state `(B, S)` per mechanism (this step's alignments; the
    running sum for `LocationSensitiveAttention(cumulative=True)`). The
    memory length `S` must be static.

    Dropout inside the wrapped cell draws its masks at the first step, and
    a monotonic attention with `sigmoid_noise` draws noise at each training
    step, which a compiled JAX loop does not allow: train those with
    `AttentionRNN`, which draws them before its loop.

    Args:
        cell: a Keras RNN cell (`LSTMCell`, `GRUCell`, `SimpleRNNCell`,
            `StackedRNNCells` or any layer with `state_size` and
            `call(inputs, states) -> (output, new_states)`).
        attention: an attention layer (`BahdanauAttention`,
            `LuongAttention`, `LocationSensitiveAttention` or a monotonic
            one), or a list of them (their attention vectors concatenated).
        attention_layer_size: positive int (a list of them, one per
            mechanism, with a list of mechanisms) or None: units of each
            attention vector `W_c [h_t; c_t]`; None uses the contexts.
        attention_layer: instead of `attention_layer_size`, a Keras layer
            (a list, one per mechanism) applied to `[h_t; c_t]`.
        cell_input_fn: callable `(inputs, attention) -> cell_inputs`, or
            None for `concatenate([inputs, attention], -1)`. A registered
            function or a layer, to be saved in a `.keras` file.
        output_attention: bool, output the attention vector (True) or the
            wrapped cell's output (False).
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: `(B, D)`, this step's input.
        states: the flat state list (see above).
        training: bool, passed to the wrapped cell.

    Returns:
        `(output, new_states)`: output `(B, output_size)` and the flat
        state list of the next step.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_attn.layers import AttentionRNNCell, BahdanauAttention

    memory = np.random.rand(2, 6, 12).astype("float32")
    targets = np.random.rand(2, 4, 8).astype("float32")
    cell = AttentionRNNCell(
        keras.layers.LSTMCell(16), BahdanauAttention(8),
        attention_layer_size=16,
    )
    cell.setup_memory(memory)
    outputs = keras.layers.RNN(cell, return_sequences=True)(targets)
    # outputs: (2, 4, 16)

    stack = keras.layers.StackedRNNCells([cell, keras.layers.GRUCell(10)])
    outputs = keras.layers.RNN(stack, return_sequences=True)(targets)
    # outputs: (2, 4, 10)
    ```

    References:
        - [Luong et al., 2015. Effective Approaches to Attention-based Neural
          Machine Translation](https://arxiv.org/abs/1508.04025)
    """

    def __init__(
        self,
        cell,
        attention,
        attention_layer_size=None,
        attention_layer=None,
        cell_input_fn=None,
        output_attention=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._init_core(
            cell,
            attention,
            attention_layer_size,
            attention_layer,
            cell_input_fn,
            output_attention,
            carry_alignments=True,
        )
        self._memory = None
        self._memory_mask = None
        self._keys = None

    def setup_memory(self, memory, memory_mask=None):
        """Sets the memory the cell attends to (tfa's `setup_memory`).

        Args:
            memory: `(B, S, Dm)` encoder states, `S` static.
            memory_mask: optional `(B, S)` boolean mask, True where the
                memory may be attended.
        """
        _validation.check_rank(
            "memory", memory, 3, "(batch, memory_length, memory_dim)"
        )
        if memory.shape[1] is None or memory.shape[2] is None:
            raise ValueError(
                "`memory` needs a static length and size (the cell's "
                f"`state_size` holds them). Received: memory.shape="
                f"{tuple(memory.shape)}"
            )
        if self.built:
            _validation.check_last_dim("memory", memory, self._memory_dim)
        check_per_memory_position("memory_mask", memory_mask, memory.shape)
        self._memory = ops.cast(memory, self.compute_dtype)
        self._memory_mask = memory_mask
        self._keys = self.precompute(self._memory) if self.built else None

    def _require_memory(self):
        if self._memory is None:
            raise ValueError(
                "AttentionRNNCell has no memory: call "
                "`cell.setup_memory(memory, memory_mask)` before running it. "
                "Received: memory=None"
            )

    def build(self, inputs_shape):
        self._require_memory()
        self._build_core(inputs_shape[-1], tuple(self._memory.shape))
        self._keys = self.precompute(self._memory)
        self.built = True

    @property
    def state_size(self):
        """Flat list: the wrapped cell's sizes, `A`, then `S` per mechanism.

        Complete once `setup_memory` has run. Before (`keras.layers.RNN`
        reads it when constructed, for its output shapes only), the sizes
        that need the memory are None.
        """
        cell_sizes = keras.tree.flatten(self.cell.state_size)
        length = None
        if self._memory is not None:
            length = int(self._memory.shape[1])
        try:
            attention_dim = self.attention_dim
        except ValueError:  # it is the memory's size, not known yet
            attention_dim = None
        return cell_sizes + [attention_dim] + [length] * len(self._mechanisms)

    def get_initial_state(self, batch_size=None, cell_state=None):
        """The flat initial state (zeros, one-hot 0 for monotonic ones).

        Args:
            batch_size: int or scalar tensor.
            cell_state: optional state of the wrapped cell to start from.
        """
        self._require_memory()
        if self.built:
            # Fresh keys for the sequence that starts: the weights may have
            # changed since `setup_memory`.
            self._keys = self.precompute(self._memory)
        state = self._initial_state(
            batch_size, cell_state, int(self._memory.shape[1]), None
        )
        return keras.tree.flatten(state)

    def _unflatten(self, states):
        # Flat list -> (cell_state, attention, (alignments per mechanism)).
        states = list(states)
        structure = self.cell.get_initial_state(batch_size=1)
        size = len(keras.tree.flatten(structure))
        cell_state = keras.tree.pack_sequence_as(structure, states[:size])
        return (cell_state, states[size], tuple(states[size + 1 :]))

    def call(self, inputs, states, training=None):
        self._require_memory()
        output, new_state, _ = self._step(
            inputs,
            self._unflatten(states),
            self._memory,
            self._keys,
            self._memory_mask,
            training,
        )
        return output, keras.tree.flatten(new_state)

    def get_config(self):
        config = super().get_config()
        config.update(self._core_config())
        return config
