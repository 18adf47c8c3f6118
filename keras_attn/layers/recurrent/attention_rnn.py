"""An attentional RNN decoder: the Keras 3 form of tfa's AttentionWrapper."""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase
from keras_attn.layers.attention._rnn_attention_base import (
    check_per_memory_position,
)
from keras_attn.layers.recurrent._cells import cell_output_size
from keras_attn.layers.recurrent._cells import draw_dropout_masks
from keras_attn.layers.recurrent._cells import reset_dropout_masks
from keras_attn.layers.recurrent._time_loop import masked_time_loop


@keras.saving.register_keras_serializable(package="keras_attn")
class AttentionRNN(keras.layers.Layer):
    """Runs an RNN cell with attention over a memory, step by step.

    The Keras 3 successor of `tensorflow_addons.seq2seq.AttentionWrapper`
    with `keras.layers.RNN` built in. At each decoder step `t`:

    1. input feeding: the cell reads `concat([x_t, a_{t-1}])`, the step's
       input and the previous attention vector (zeros at the first step);
    2. the cell runs: `h_t, state_t = cell(..., state_{t-1})`;
    3. `attention` scores the memory with `h_t` as query, giving the
       alignment `alpha_t` `(B, S)` and the context `c_t` `(B, Dm)`;
    4. the attention vector is `a_t = W_c [h_t; c_t]` (a bias-free `Dense`
       of `attention_layer_size` units, the `tanh`-free form of tfa), or
       `a_t = c_t` when `attention_layer_size` is None;
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
    memory position 0.

    Dropout inside the cell (`LSTMCell(64, dropout=0.2,
    recurrent_dropout=0.2)`) works as in `keras.layers.RNN`: the cell's
    masks are drawn once per sequence, before the loop, and the same masks
    apply at every step (variational dropout), in training only.

    The layer asks of its `attention` only what `RNNAttentionBase`
    declares: `precompute`, `needs_previous_alignments` with
    `initial_alignments`, and `draw_step_noise`.

    Args:
        cell: a Keras RNN cell (`LSTMCell`, `GRUCell`, `SimpleRNNCell`,
            `StackedRNNCells` or any layer with `state_size` and
            `call(inputs, states) -> (output, new_states)`).
        attention: a `BahdanauAttention` or `LuongAttention` layer, or one
            of their monotonic forms.
        attention_layer_size: positive int or None, units of the attention
            vector `W_c [h_t; c_t]`; None uses the context itself.
        output_attention: bool, output the attention vector (True) or the
            cell output (False) at each step.
        return_sequences: bool, return all steps `(B, T, .)` or the last
            one `(B, .)`.
        return_state: bool, also return the final state
            `(cell_state, attention_vector)` (with `alignments` last for a
            monotonic attention).
        return_alignments: bool, also return the alignment history
            `(B, T, S)`.
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
        where `A` is `attention_layer_size`, `Dm` or the cell's output size;
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
        **kwargs,
    ):
        if isinstance(cell, dict):
            cell = keras.saving.deserialize_keras_object(cell)
        if isinstance(attention, dict):
            attention = keras.saving.deserialize_keras_object(attention)
        if not isinstance(cell, keras.layers.Layer) or not hasattr(
            cell, "state_size"
        ):
            raise ValueError(
                "`cell` must be a Keras RNN cell (a layer with `state_size`)"
                f". Received: cell={cell!r}"
            )
        if not isinstance(attention, RNNAttentionBase):
            raise ValueError(
                "`attention` must be a BahdanauAttention or LuongAttention "
                "layer (or a monotonic one). Received: "
                f"attention={attention!r}"
            )
        attention_layer_size = _validation.check_positive_int(
            "attention_layer_size", attention_layer_size, allow_none=True
        )
        super().__init__(**kwargs)
        self.cell = cell
        self.attention = attention
        self.attention_layer_size = attention_layer_size
        self.output_attention = bool(output_attention)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.return_alignments = bool(return_alignments)
        self.supports_masking = True
        self._memory_dim = None  # known once built

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
        self._input_dim = int(inputs_shape[-1])
        self._memory_dim = int(memory_shape[-1])
        # Input feeding: the cell reads the input and the previous attention.
        if not self.cell.built:
            self.cell.build((None, self._cell_input_dim))
        self._cell_output_dim = cell_output_size(self.cell)
        if not self.attention.built:
            self.attention.build(
                (None, self._cell_output_dim), tuple(memory_shape)
            )
        self.attention_layer = None
        if self.attention_layer_size is not None:
            self.attention_layer = keras.layers.Dense(
                self.attention_layer_size,
                use_bias=False,
                dtype=self.dtype_policy,
                name="attention_layer",
            )
            self.attention_layer.build(
                (None, self._cell_output_dim + self._memory_dim)
            )
        self.built = True

    @property
    def attention_dim(self):
        """Size of the attention vector: `attention_layer_size`, else `Dm`."""
        if self.attention_layer_size is not None:
            return self.attention_layer_size
        if self._memory_dim is None:
            raise ValueError(
                "The attention vector has the memory's size when "
                "`attention_layer_size` is None, and this AttentionRNN has "
                "not seen a memory yet: call it once, or "
                "`build(inputs_shape, memory_shape)`, before asking for its "
                "initial state or sizes (or set `attention_layer_size`). "
                "Received: attention_layer_size=None"
            )
        return self._memory_dim

    @property
    def _cell_input_dim(self):
        return self._input_dim + self.attention_dim

    @property
    def output_size(self):
        """Size of each step's output (needs the layer built)."""
        if self.output_attention:
            return self.attention_dim
        return self._cell_output_dim

    def precompute(self, memory):
        """The attention's key projection of `memory`, once per sequence."""
        return self.attention.precompute(memory)

    def get_initial_state(
        self, batch_size, cell_state=None, memory_length=None, dtype=None
    ):
        """The state before the first step: `(cell_state, zeros (B, A))`.

        With a monotonic attention, the state has a third item, the
        alignments `(B, S)`, one-hot on memory position 0. Works before
        the layer is built when `attention_layer_size` is set (the
        attention vector's size is then known); otherwise the layer must
        have been called or built first (a `ValueError` says so).

        Args:
            batch_size: int or scalar tensor.
            cell_state: optional cell state to start from (e.g. the
                encoder's final state); zeros by default.
            memory_length: int or scalar tensor, `S`; needed by a
                monotonic attention only.
            dtype: optional dtype of the state (tfa's argument); defaults
                to the cell's compute dtype for the cell state and the
                layer's for the rest.
        """
        attention_dim = self.attention_dim
        if cell_state is None:
            cell_state = self.cell.get_initial_state(batch_size=batch_size)
        # The cell keeps its own dtype policy; its state lives in it.
        cell_dtype = dtype or self.cell.compute_dtype
        cell_state = keras.tree.map_structure(
            lambda x: ops.cast(x, cell_dtype), cell_state
        )
        dtype = dtype or self.compute_dtype
        attention = ops.zeros((batch_size, attention_dim), dtype=dtype)
        if not self.attention.needs_previous_alignments:
            return (cell_state, attention)
        if memory_length is None:
            raise ValueError(
                "A monotonic attention needs `memory_length` for its initial "
                f"alignments. Received: memory_length={memory_length!r}"
            )
        alignments = ops.cast(
            self.attention.initial_alignments(batch_size, memory_length),
            dtype,
        )
        return (cell_state, attention, alignments)

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
            state: `(cell_state, attention_vector)` (and `alignments`
                last for a monotonic attention), from `get_initial_state`
                or the previous step.
            memory: `(B, S, Dm)`.
            keys: optional `precompute(memory)` (computed here if None).
            memory_mask: optional `(B, S)` boolean mask.
            training: bool, passed to the cell; with a dropout cell, the
                step draws its own masks (one step is a sequence of one).

        Returns:
            `(output, new_state, alignments)`: output `(B, A)`, the state
            for the next step, alignments `(B, S)`.
        """
        if not self.built:
            self.build((None, None, inputs.shape[-1]), tuple(memory.shape))
        if training:
            # Fresh masks for this step only (nothing stays cached).
            draw_dropout_masks(
                self.cell, ops.shape(inputs)[0], self._cell_input_dim
            )
        try:
            return self._step(
                inputs, state, memory, keys, memory_mask, training
            )
        finally:
            reset_dropout_masks(self.cell)

    def _step(
        self,
        inputs,
        state,
        memory,
        keys,
        memory_mask,
        training,
        energy_noise=None,
    ):
        cell_state, attention = state[0], state[1]
        inputs = ops.cast(inputs, self.compute_dtype)
        cell_inputs = ops.concatenate([inputs, attention], axis=-1)
        cell_output, new_cell_state = self.cell(
            cell_inputs, cell_state, training=training
        )
        # Cells return lists or bare tensors depending on their input; keep
        # the structure of the incoming state so the loop carry is stable.
        new_cell_state = keras.tree.pack_sequence_as(
            cell_state, keras.tree.flatten(new_cell_state)
        )
        extra = {}
        if self.attention.needs_previous_alignments:
            extra = {"previous_alignments": state[2], "training": training}
        if energy_noise is not None:
            extra["energy_noise"] = energy_noise
        context, alignments = self.attention(
            cell_output,
            memory,
            memory_mask=memory_mask,
            keys=keys,
            return_attention_scores=True,
            **extra,
        )
        if self.attention_layer is not None:
            attention = self.attention_layer(
                ops.concatenate([cell_output, context], axis=-1)
            )
        else:
            attention = context
        attention = ops.cast(attention, self.compute_dtype)
        output = attention if self.output_attention else cell_output
        output = ops.cast(output, self.compute_dtype)
        new_state = (new_cell_state, attention)
        if self.attention.needs_previous_alignments:
            alignments = ops.cast(alignments, self.compute_dtype)
            new_state = new_state + (alignments,)
        return output, new_state, alignments

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
        noise = self.attention.draw_step_noise(
            steps, batch_size, memory_length, training
        )  # (T, B, S) or None
        draw_dropout_masks(self.cell, batch_size, self._cell_input_dim)

        def step_fn(x_t, state, noise_t):
            return self._step(
                x_t, state, memory, keys, memory_mask, training, noise_t
            )

        try:
            outputs, last_output, state, alignments = masked_time_loop(
                step_fn,
                inputs,
                state,
                mask,
                self.output_size,
                memory_length,
                self.compute_dtype,
                per_step=noise,
            )
        finally:
            reset_dropout_masks(self.cell)
        result = [outputs if self.return_sequences else last_output]
        if self.return_state:
            result.append(state)
        if self.return_alignments:
            result.append(alignments)
        return result[0] if len(result) == 1 else tuple(result)

    def compute_mask(self, inputs, mask=None, **kwargs):
        if not self.return_sequences or mask is None:
            return None
        if self.return_state or self.return_alignments:
            return None
        return mask

    def _state_shapes(self, batch, memory_length):
        # The structure of the cell's own initial state (lists nest
        # differently for LSTM, GRU and stacked cells), with batch `batch`.
        example = self.cell.get_initial_state(batch_size=1)
        cell_shapes = keras.tree.map_structure(
            lambda x: (batch,) + tuple(x.shape[1:]), example
        )
        shapes = (cell_shapes, (batch, self.attention_dim))
        if self.attention.needs_previous_alignments:
            shapes = shapes + ((batch, memory_length),)
        return shapes

    def compute_output_shape(
        self,
        inputs_shape,
        memory_shape,
        memory_mask_shape=None,
        initial_state_shape=None,
        mask_shape=None,
    ):
        if not self.built:
            self.build(inputs_shape, memory_shape)
        batch, steps = inputs_shape[0], inputs_shape[1]
        if self.return_sequences:
            outputs = (batch, steps, self.output_size)
        else:
            outputs = (batch, self.output_size)
        result = [outputs]
        if self.return_state:
            result.append(self._state_shapes(batch, memory_shape[1]))
        if self.return_alignments:
            result.append((batch, steps, memory_shape[1]))
        return result[0] if len(result) == 1 else tuple(result)

    def compute_output_spec(
        self,
        inputs,
        memory,
        memory_mask=None,
        initial_state=None,
        mask=None,
        training=None,
    ):
        self._validate(inputs, memory, mask, memory_mask)
        # Keras turns `compute_output_shape` into the output structure.
        return super().compute_output_spec(
            inputs,
            memory,
            memory_mask=memory_mask,
            initial_state=initial_state,
            mask=mask,
            training=training,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cell": keras.saving.serialize_keras_object(self.cell),
                "attention": keras.saving.serialize_keras_object(
                    self.attention
                ),
                "attention_layer_size": self.attention_layer_size,
                "output_attention": self.output_attention,
                "return_sequences": self.return_sequences,
                "return_state": self.return_state,
                "return_alignments": self.return_alignments,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cell"] = keras.saving.deserialize_keras_object(config["cell"])
        config["attention"] = keras.saving.deserialize_keras_object(
            config["attention"]
        )
        return cls(**config)
