"""An attentional RNN decoder: the Keras 3 form of tfa's AttentionWrapper."""

import keras
from keras import ops

from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase
from keras_attn.layers.attention._rnn_attention_base import _check_positive
from keras_attn.layers.attention._rnn_attention_base import _dim_mismatch


def _cell_output_size(cell):
    size = getattr(cell, "output_size", None)
    if size is None:
        state_size = cell.state_size
        size = (
            state_size[0]
            if isinstance(state_size, (list, tuple))
            else (state_size)
        )
    return int(size)


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

    Dropout inside the cell (`LSTMCell(dropout=...)`) is not supported in
    the loop; regularise around the layer instead.

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
        _check_positive(
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

    # -- validation -------------------------------------------------------

    def _validate(self, inputs_shape, memory_shape, mask=None):
        inputs_shape = tuple(inputs_shape)
        memory_shape = tuple(memory_shape)
        if len(inputs_shape) != 3 or inputs_shape[-1] is None:
            raise ValueError(
                "`inputs` must have rank 3 (batch, steps, features) with a "
                f"known last dimension. Received: inputs.shape={inputs_shape}"
            )
        if len(memory_shape) != 3 or memory_shape[-1] is None:
            raise ValueError(
                "`memory` must have rank 3 (batch, memory_length, "
                "memory_dim) with a known last dimension. Received: "
                f"memory.shape={memory_shape}"
            )
        if _dim_mismatch(inputs_shape[0], memory_shape[0]):
            raise ValueError(
                "`inputs` and `memory` must have the same batch size. "
                f"Received: inputs.shape={inputs_shape}, "
                f"memory.shape={memory_shape}"
            )
        if self.built:
            if inputs_shape[-1] != self._input_dim:
                raise ValueError(
                    f"`inputs` must have last dimension {self._input_dim} "
                    "(the layer was built with it). Received: "
                    f"inputs.shape={inputs_shape}"
                )
            if memory_shape[-1] != self._memory_dim:
                raise ValueError(
                    f"`memory` must have last dimension {self._memory_dim} "
                    "(the layer was built with it). Received: "
                    f"memory.shape={memory_shape}"
                )
        if mask is not None:
            mask_shape = tuple(mask.shape)
            if len(mask_shape) != 2 or any(
                _dim_mismatch(a, b) for a, b in zip(mask_shape, inputs_shape)
            ):
                raise ValueError(
                    "`mask` must have shape (batch, steps) = "
                    f"{inputs_shape[:2]}. Received: mask.shape={mask_shape}"
                )
            dtype = keras.backend.standardize_dtype(mask.dtype)
            if dtype != "bool" and "int" not in dtype:
                raise ValueError(
                    "`mask` must be boolean or integer. Received: "
                    f"mask.dtype={dtype}"
                )

    # -- Keras layer API ---------------------------------------------------

    def build(
        self,
        inputs_shape,
        memory_shape,
        memory_mask_shape=None,
        initial_state_shape=None,
        mask_shape=None,
    ):
        self._validate(inputs_shape, memory_shape)
        self._input_dim = int(inputs_shape[-1])
        self._memory_dim = int(memory_shape[-1])
        self._attention_dim = self.attention_layer_size or self._memory_dim
        # Input feeding: the cell reads the input and the previous attention.
        if not self.cell.built:
            self.cell.build((None, self._input_dim + self._attention_dim))
        self._cell_output_dim = _cell_output_size(self.cell)
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
    def output_size(self):
        """Size of each step's output (needs the layer built)."""
        if self.output_attention:
            return self._attention_dim
        return self._cell_output_dim

    def precompute(self, memory):
        """The attention's key projection of `memory`, once per sequence."""
        return self.attention.precompute(memory)

    @property
    def _carries_alignments(self):
        return getattr(self.attention, "needs_previous_alignments", False)

    def get_initial_state(
        self, batch_size, cell_state=None, memory_length=None
    ):
        """The state before the first step: `(cell_state, zeros (B, A))`.

        With a monotonic attention, the state has a third item, the
        alignments `(B, S)`, one-hot on memory position 0.

        Args:
            batch_size: int or scalar tensor.
            cell_state: optional cell state to start from (e.g. the
                encoder's final state); zeros by default.
            memory_length: int or scalar tensor, `S`; needed by a
                monotonic attention only.
        """
        if cell_state is None:
            cell_state = self.cell.get_initial_state(batch_size=batch_size)
        # The cell keeps its own dtype policy; its state lives in it.
        cell_state = keras.tree.map_structure(
            lambda x: ops.cast(x, self.cell.compute_dtype), cell_state
        )
        attention = ops.zeros(
            (batch_size, self._attention_dim), dtype=self.compute_dtype
        )
        if not self._carries_alignments:
            return (cell_state, attention)
        if memory_length is None:
            raise ValueError(
                "A monotonic attention needs `memory_length` for its initial "
                f"alignments. Received: memory_length={memory_length!r}"
            )
        alignments = ops.cast(
            self.attention.initial_alignments(batch_size, memory_length),
            self.compute_dtype,
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
            training: bool, passed to the cell.

        Returns:
            `(output, new_state, alignments)`: output `(B, A)`, the state
            for the next step, alignments `(B, S)`.
        """
        return self._step(inputs, state, memory, keys, memory_mask, training)

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
        if self._carries_alignments:
            extra = {
                "previous_alignments": state[2],
                "energy_noise": energy_noise,
                "training": training,
            }
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
        if self._carries_alignments:
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
        self._validate(inputs.shape, memory.shape, mask)
        self.attention._validate_mask(memory_mask, tuple(memory.shape))
        memory = ops.cast(memory, self.compute_dtype)
        batch_size = ops.shape(inputs)[0]
        keys = self.precompute(memory)  # once per sequence
        memory_length = memory.shape[1] or ops.shape(memory)[1]
        state = self.get_initial_state(batch_size, initial_state, memory_length)
        last_output = ops.zeros(
            (batch_size, self.output_size), dtype=self.compute_dtype
        )

        # `fori_loop` over preallocated buffers rather than `scan`: the
        # TensorFlow `scan` of Keras needs per-step outputs shaped like the
        # carry. Static bounds keep it reverse-differentiable on JAX.
        steps = inputs.shape[1]
        if steps is None:
            steps = ops.shape(inputs)[1]
        xs = ops.transpose(inputs, (1, 0, 2))  # (T, B, D)
        step_mask = None
        if mask is not None:
            step_mask = ops.transpose(ops.cast(mask, "bool"), (1, 0))  # (T, B)
        outputs = ops.zeros(
            (steps, batch_size, self.output_size), dtype=self.compute_dtype
        )  # (T, B, A)
        alignments = ops.zeros(
            (steps, batch_size, memory_length), dtype=self.compute_dtype
        )  # (T, B, S)

        time_index = ops.arange(steps, dtype="int32")  # (T,)
        noise = None
        if training and getattr(self.attention, "sigmoid_noise", 0) > 0:
            # Every step's noise drawn here: a seed generator cannot advance
            # its state from inside a compiled JAX loop.
            noise = keras.random.normal(
                (steps, batch_size, memory_length),
                seed=self.attention.seed_generator,
            )  # (T, B, S)

        def body(t, carry):
            state, last_output, outputs, alignments = carry
            x_t = ops.take(xs, t, axis=0)  # (B, D)
            noise_t = None if noise is None else ops.take(noise, t, axis=0)
            output, new_state, alignment = self._step(
                x_t, state, memory, keys, memory_mask, training, noise_t
            )
            alignment = ops.cast(alignment, self.compute_dtype)
            if step_mask is not None:
                m = ops.take(step_mask, t, axis=0)[:, None]  # (B, 1)
                new_state = keras.tree.map_structure(
                    lambda new, old: ops.where(m, new, old), new_state, state
                )
                output = ops.where(m, output, ops.zeros_like(output))
                alignment = ops.where(m, alignment, ops.zeros_like(alignment))
                last_output = ops.where(m, output, last_output)
            else:
                last_output = output
            # A select rather than `slice_update`, which has no gradient on
            # TensorFlow; T is small next to B * A, so the O(T) cost is fine.
            here = ops.equal(time_index, t)[:, None, None]  # (T, 1, 1)
            outputs = ops.where(here, output[None], outputs)
            alignments = ops.where(here, alignment[None], alignments)
            return (new_state, last_output, outputs, alignments)

        state, last_output, outputs, alignments = ops.fori_loop(
            0, steps, body, (state, last_output, outputs, alignments)
        )
        outputs = ops.transpose(outputs, (1, 0, 2))  # (B, T, A)
        alignments = ops.transpose(alignments, (1, 0, 2))  # (B, T, S)
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
        shapes = (cell_shapes, (batch, self._attention_dim))
        if self._carries_alignments:
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
        self._validate(inputs.shape, memory.shape, mask)
        self.attention._validate_mask(memory_mask, tuple(memory.shape))
        shapes = self.compute_output_shape(
            tuple(inputs.shape), tuple(memory.shape)
        )

        def is_shape(x):
            return isinstance(x, tuple) and all(
                isinstance(d, (int, type(None))) for d in x
            )

        return (
            keras.tree.map_shape_structure(
                lambda s: keras.KerasTensor(s, dtype=self.compute_dtype), shapes
            )
            if not is_shape(shapes)
            else keras.KerasTensor(shapes, dtype=self.compute_dtype)
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
