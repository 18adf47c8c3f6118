"""An attentional RNN decoder: the Keras 3 form of tfa's AttentionWrapper."""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn.layers.attention._rnn_attention_base import (
    check_per_memory_position,
)
from keras_attn.layers.recurrent._attention_core import AttentionCore
from keras_attn.layers.recurrent._attention_rnn_outputs import (
    AttentionRNNOutputs,
)
from keras_attn.layers.recurrent._cells import draw_dropout_masks
from keras_attn.layers.recurrent._cells import reset_dropout_masks
from keras_attn.layers.recurrent._time_loop import masked_time_loop


@keras.saving.register_keras_serializable(package="keras_attn")
class AttentionRNN(AttentionRNNOutputs, AttentionCore, keras.layers.Layer):
    """Runs an RNN cell with attention over a memory, step by step.

    The Keras 3 successor of `tensorflow_addons.seq2seq.AttentionWrapper`
    with `keras.layers.RNN` built in. At each decoder step `t`:

    1. input feeding: the cell reads `concat([x_t, a_{t-1}])`, the step's
       input and the previous attention vector (zeros at the first step),
       or `cell_input_fn(x_t, a_{t-1})`;
    2. the cell runs: `h_t, state_t = cell(..., state_{t-1})`;
    3. `attention` scores the memory with `h_t` as query, giving the
       alignment `alpha_t` `(B, S)` and the context `c_t` `(B, Dm)`;
    4. the attention vector is `a_t = W_c [h_t; c_t]` (a bias-free `Dense`
       of `attention_layer_size` units, the `tanh`-free form of tfa), the
       user's `attention_layer([h_t; c_t])`, or `a_t = c_t` when neither
       is given;
    5. the step's output is `a_t` (`output_attention=True`, Luong style) or
       `h_t` (`output_attention=False`, Bahdanau style).

    The memory's key projection (`attention.precompute`) runs once per
    sequence. The recurrence is a `keras.ops.fori_loop`, so the layer runs
    under XLA on JAX and TensorFlow. Decoder steps where `mask` is False
    carry the state (and the attention vector) through unchanged and output
    zeros (outputs and alignments). `step` runs one step for inference.

    A monotonic attention (`BahdanauMonotonicAttention`,
    `LuongMonotonicAttention`) needs the previous step's alignment: the
    state then carries it as a third item,
    `(cell_state, attention_vector, alignments)`, starting one-hot on
    memory position 0. A `LocationSensitiveAttention` carries its
    cumulative alignments there, starting at zeros.

    Several mechanisms (a list, as tfa's `AttentionWrapper` took) all
    attend over the same memory with the same query `h_t`; each has its
    own attention vector (its own `attention_layer_size` or
    `attention_layer`, lists with one item per mechanism), and `a_t` is
    their concatenation. The state's third item is then a tuple of one
    `(B, S)` alignment state per mechanism, and `return_alignments` gives
    a tuple of `(B, T, S)` alignments. `AttentionRNNCell` is the same step
    as a Keras RNN cell.

    Dropout inside the cell (`LSTMCell(64, dropout=0.2,
    recurrent_dropout=0.2)`) works as in `keras.layers.RNN`: the cell's
    masks are drawn once per sequence, before the loop, and the same masks
    apply at every step (variational dropout), in training only.

    The layer asks of its `attention` only the hooks that the RNN
    attentions all declare: `precompute(memory)`,
    `needs_previous_alignments` with `initial_alignments(batch, length)`
    and `next_alignment_state(previous, alignments)`, and
    `draw_step_noise(steps, batch, length, training)`.

    Args:
        cell: a Keras RNN cell (`LSTMCell`, `GRUCell`, `SimpleRNNCell`,
            `StackedRNNCells` or any layer with `state_size` and
            `call(inputs, states) -> (output, new_states)`).
        attention: a `BahdanauAttention`, `LuongAttention` or
            `LocationSensitiveAttention` layer, or a monotonic one; or a
            list of them (see above).
        attention_layer_size: positive int or None, units of the attention
            vector `W_c [h_t; c_t]`; None uses the context itself. With a
            list of mechanisms, a list of ints (one per mechanism) or None.
        output_attention: bool, output the attention vector (True) or the
            cell output (False) at each step.
        return_sequences: bool, return all steps `(B, T, .)` or the last
            one `(B, .)`.
        return_state: bool, also return the final state
            `(cell_state, attention_vector)` (with `alignments` last for a
            monotonic attention).
        return_alignments: bool, also return the alignment history
            `(B, T, S)` (a tuple of them with a list of mechanisms).
        attention_layer: instead of `attention_layer_size`, a Keras layer
            applied to `[h_t; c_t]` (a list, one per mechanism, with a list
            of mechanisms), e.g. `Dense(units, activation="tanh")`.
        cell_input_fn: callable `(inputs, attention) -> cell_inputs`, the
            cell's input at each step; None is
            `concatenate([inputs, attention], -1)`. Use a registered
            function (`keras.saving.register_keras_serializable`) or a
            layer, so that `.keras` files load in safe mode.
        **kwargs: base layer arguments (`name`, `dtype`, `trainable`).

    Call arguments:
        inputs: `(B, T, D)` decoder inputs (e.g. embedded target tokens).
        memory: `(B, S, Dm)` encoder states to attend over.
        memory_mask: optional `(B, S)` boolean mask, True where the memory
            may be attended.
        initial_state: optional initial state of the cell (the structure
            of `cell.get_initial_state`, e.g. `[h, c]` for an `LSTMCell`);
            the attention vector always starts at zero.
        mask: optional `(B, T)` boolean mask of the decoder steps (set by
            Keras mask propagation, e.g. `Embedding(mask_zero=True)`).
        training: bool, passed to the cell (and to a monotonic attention,
            for its noise).

    Returns:
        `outputs` `(B, T, A)` (or `(B, A)` with `return_sequences=False`),
        where `A` is the attention vector's size (summed over mechanisms)
        or the cell's output size;
        then, if asked, `state = (cell_state, attention_vector)` and the
        `alignments` `(B, T, S)`, in that order, as a tuple.

    Example:

    ```python
    import keras
    import numpy as np
    from keras_attn.layers import AttentionRNN, LuongAttention

    decoder = AttentionRNN(
        keras.layers.LSTMCell(16),
        LuongAttention(score_mode="general"),
        attention_layer_size=16,
        return_alignments=True,
    )
    targets = np.random.rand(2, 4, 8).astype("float32")
    memory = np.random.rand(2, 6, 12).astype("float32")
    outputs, alignments = decoder(targets, memory)
    # outputs: (2, 4, 16); alignments: (2, 4, 6).

    # Two mechanisms over the same memory, each with its attention layer.
    decoder = AttentionRNN(
        keras.layers.GRUCell(16),
        [LuongAttention("general"), LuongAttention("general", scale=True)],
        attention_layer=[
            keras.layers.Dense(8, activation="tanh"),
            keras.layers.Dense(4),
        ],
        return_alignments=True,
    )
    outputs, (first, second) = decoder(targets, memory)
    # outputs: (2, 4, 12); first, second: (2, 4, 6).
    ```

    References:
        - [Bahdanau et al., 2015. Neural Machine Translation by Jointly
          Learning to Align and Translate](https://arxiv.org/abs/1409.0473)
        - [Luong et al., 2015. Effective Approaches to Attention-based Neural
          Machine Translation](https://arxiv.org/abs/1508.04025)
    """

    def __init__(
        self,
        cell,
        attention,
        attention_layer_size=None,
        output_attention=True,
        return_sequences=True,
        return_state=False,
        return_alignments=False,
        attention_layer=None,
        cell_input_fn=None,
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
            carry_alignments=False,
        )
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.return_alignments = bool(return_alignments)
        self.supports_masking = True

    # -- validation -------------------------------------------------------

    def _validate(self, inputs, memory, mask=None, memory_mask=None):
        # Tensors, or KerasTensors made from the shapes `build` receives.
        _validation.check_rank("inputs", inputs, 3, "(batch, steps, features)")
        _validation.check_rank(
            "memory", memory, 3, "(batch, memory_length, memory_dim)"
        )
        for name, x in (("inputs", inputs), ("memory", memory)):
            if x.shape[-1] is None:
                raise ValueError(
                    f"`{name}` must have a known last dimension. Received: "
                    f"{name}.shape={tuple(x.shape)}"
                )
        if _validation.dims_differ(inputs.shape[0], memory.shape[0]):
            raise ValueError(
                "`inputs` and `memory` must have the same batch size. "
                f"Received: inputs.shape={tuple(inputs.shape)}, "
                f"memory.shape={tuple(memory.shape)}"
            )
        if self.built:
            _validation.check_last_dim("inputs", inputs, self._input_dim)
            _validation.check_last_dim("memory", memory, self._memory_dim)
        if mask is not None:
            _validation.check_shape(
                "mask", mask, inputs.shape[:2], "(batch, steps)"
            )
            _validation.check_mask_dtype("mask", mask)
        check_per_memory_position("memory_mask", memory_mask, memory.shape)

    # -- Keras layer API ---------------------------------------------------

    def build(
        self,
        inputs_shape,
        memory_shape,
        memory_mask_shape=None,
        initial_state_shape=None,
        mask_shape=None,
    ):
        self._validate(
            keras.KerasTensor(inputs_shape), keras.KerasTensor(memory_shape)
        )
        self._build_core(inputs_shape[-1], memory_shape)
        self.built = True

    def get_initial_state(
        self, batch_size, cell_state=None, memory_length=None, dtype=None
    ):
        """The state before the first step: `(cell_state, zeros (B, A))`.

        With a monotonic or location-sensitive attention, the state has a
        third item, the alignment state `(B, S)` (one-hot on memory
        position 0 for a monotonic attention, zeros for a location one).
        With a list of mechanisms, the third item is a tuple of one `(B, S)`
        alignment state per mechanism (the last alignments, or what the
        mechanism carries). Works before the layer is built when the
        attention vector's size is known (`attention_layer_size` set);
        otherwise the layer must have been called or built first (a
        `ValueError` says so).

        Args:
            batch_size: int or scalar tensor.
            cell_state: optional cell state to start from (e.g. the
                encoder's final state); zeros by default.
            memory_length: int or scalar tensor, `S`; needed when the state
                carries alignments.
            dtype: optional dtype of the state (tfa's argument); defaults
                to the cell's compute dtype for the cell state and the
                layer's for the rest.
        """
        return self._initial_state(batch_size, cell_state, memory_length, dtype)

    def step(
        self,
        inputs,
        state,
        memory,
        keys=None,
        memory_mask=None,
        training=None,
    ):
        """Runs one decoder step.

        Args:
            inputs: `(B, D)`, this step's input.
            state: from `get_initial_state` or the previous step.
            memory: `(B, S, Dm)`.
            keys: optional `precompute(memory)` (computed here if None).
            memory_mask: optional `(B, S)` boolean mask.
            training: bool, passed to the cell; with a dropout cell, the
                step draws its own masks (one step is a sequence of one).

        Returns:
            `(output, new_state, alignments)`: output `(B, A)`, the state
            for the next step, alignments `(B, S)` (a tuple of them, one
            per mechanism, for a list of mechanisms). The layer is built on
            first use.
        """
        if not self.built:
            self.build((None, None, inputs.shape[-1]), tuple(memory.shape))
        if keys is None:
            keys = self.precompute(memory)
        if training:
            # Fresh masks for this step only (nothing stays cached).
            draw_dropout_masks(
                self.cell, ops.shape(inputs)[0], self._cell_input_dim()
            )
        try:
            output, state, alignments = self._step(
                inputs, state, memory, keys, memory_mask, training
            )
        finally:
            reset_dropout_masks(self.cell)
        if self._multi:
            alignments = tuple(
                ops.split(alignments, len(self._mechanisms), axis=-1)
            )
        return output, state, alignments

    def call(
        self,
        inputs,
        memory,
        memory_mask=None,
        initial_state=None,
        mask=None,
        training=None,
    ):
        self._validate(inputs, memory, mask, memory_mask)
        memory = ops.cast(memory, self.compute_dtype)
        batch_size = ops.shape(inputs)[0]
        keys = self.precompute(memory)  # once per sequence
        memory_length = memory.shape[1] or ops.shape(memory)[1]
        steps = inputs.shape[1] or ops.shape(inputs)[1]
        state = self.get_initial_state(batch_size, initial_state, memory_length)
        # Random draws before the loop: a seed generator cannot advance its
        # state from inside a compiled JAX loop.
        noise = self._draw_noise(
            steps, batch_size, memory_length, training
        )  # {mechanism index: (T, B, S)} or None
        draw_dropout_masks(self.cell, batch_size, self._cell_input_dim())

        def step_fn(x_t, state, noise_t):
            return self._step(
                x_t, state, memory, keys, memory_mask, training, noise_t
            )

        count = len(self._mechanisms)
        try:
            outputs, last_output, state, alignments = masked_time_loop(
                step_fn,
                inputs,
                state,
                mask,
                self.output_size,
                count * memory_length,
                self.compute_dtype,
                per_step=noise,
            )  # alignments (B, T, K * S)
        finally:
            reset_dropout_masks(self.cell)
        result = [outputs if self.return_sequences else last_output]
        if self.return_state:
            result.append(state)
        if self.return_alignments:
            if self._multi:
                # One (B, T, S) per mechanism.
                alignments = tuple(ops.split(alignments, count, axis=-1))
            result.append(alignments)
        return result[0] if len(result) == 1 else tuple(result)

    def get_config(self):
        config = super().get_config()
        config.update(self._core_config())
        config.update(
            {
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "return_alignments": self.return_alignments,
            }
        )
        return config
