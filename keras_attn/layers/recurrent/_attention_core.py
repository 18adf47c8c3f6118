"""The step of an attentional RNN (private).

Shared by `AttentionRNN` (which loops over a sequence) and
`AttentionRNNCell` (which `keras.layers.RNN` loops). It holds the wrapped
cell, one or several attention mechanisms, the attention layers and the
cell input function, and runs one decoder step.

The state is `(cell_state, attention_vector)`, with the mechanism's
alignment state last for a single mechanism that needs it (a monotonic or
location-sensitive attention). With `carry_alignments` (several
mechanisms, or the cell form) it is always
`(cell_state, attention_vector, alignments)` with `alignments` a tuple of
one `(B, S)` alignment state per mechanism.
"""

import keras
from keras import ops

from keras_attn import _validation
from keras_attn.layers.attention._rnn_attention_base import RNNAttentionBase
from keras_attn.layers.recurrent._cells import cell_output_size


def _deserialize(x):
    if isinstance(x, dict):
        return keras.saving.deserialize_keras_object(x)
    return x


def _per_mechanism(name, value, count, multi):
    """`value` as a list of `count` items (None stays None)."""
    if value is None:
        return None
    if not multi:
        return [value]
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise ValueError(
            f"With {count} attention mechanisms, `{name}` must be a list of "
            f"{count} items (one per mechanism). Received: {name}={value!r}"
        )
    return list(value)


class AttentionCore:
    """Mixin of `AttentionRNN` and `AttentionRNNCell` (not public)."""

    def _init_core(
        self,
        cell,
        attention,
        attention_layer_size,
        attention_layer,
        cell_input_fn,
        output_attention,
        carry_alignments,
    ):
        cell = _deserialize(cell)
        multi = isinstance(attention, (list, tuple))
        mechanisms = [
            _deserialize(a) for a in (attention if multi else [attention])
        ]
        if not isinstance(cell, keras.layers.Layer) or not hasattr(
            cell, "state_size"
        ):
            raise ValueError(
                "`cell` must be a Keras RNN cell (a layer with `state_size`)"
                f". Received: cell={cell!r}"
            )
        if not mechanisms or not all(
            isinstance(m, RNNAttentionBase) for m in mechanisms
        ):
            raise ValueError(
                "`attention` must be a BahdanauAttention, LuongAttention or "
                "LocationSensitiveAttention layer (or a monotonic one), or a "
                f"non-empty list of them. Received: attention={attention!r}"
            )
        if attention_layer_size is not None and attention_layer is not None:
            raise ValueError(
                "Pass `attention_layer_size` or `attention_layer`, not both. "
                f"Received: attention_layer_size={attention_layer_size!r}, "
                f"attention_layer={attention_layer!r}"
            )
        count = len(mechanisms)
        sizes = _per_mechanism(
            "attention_layer_size", attention_layer_size, count, multi
        )
        if sizes is not None:
            sizes = [
                _validation.check_positive_int("attention_layer_size", s)
                for s in sizes
            ]
        layers = _per_mechanism(
            "attention_layer", attention_layer, count, multi
        )
        if layers is not None:
            layers = [_deserialize(x) for x in layers]
            for x in layers:
                if not isinstance(x, keras.layers.Layer):
                    raise ValueError(
                        "`attention_layer` must be a Keras layer (or a list "
                        f"of layers, one per mechanism). Received: {x!r}"
                    )
        cell_input_fn = _deserialize(cell_input_fn)
        if cell_input_fn is not None and not callable(cell_input_fn):
            raise ValueError(
                "`cell_input_fn` must be a callable `(inputs, attention) -> "
                f"cell_inputs`. Received: cell_input_fn={cell_input_fn!r}"
            )
        self.cell = cell
        # As given (a layer or a list), so that `get_config` round-trips.
        self.attention = mechanisms if multi else mechanisms[0]
        self._multi = multi
        self.attention_layer_size = (
            None if sizes is None else (sizes if multi else sizes[0])
        )
        # The layers, the user's or (in `build`) bias-free `Dense`s.
        self._custom_attention_layer = layers is not None
        self.attention_layer = (
            None if layers is None else (layers if multi else layers[0])
        )
        self.cell_input_fn = cell_input_fn
        self.output_attention = bool(output_attention)
        self._carry_alignments = bool(carry_alignments or multi)
        self._input_dim = None
        self._memory_dim = None  # known once built

    # -- structure ----------------------------------------------------------

    @property
    def _mechanisms(self):
        return self.attention if self._multi else [self.attention]

    def _attention_layers(self):
        if self.attention_layer is None:
            return [None] * len(self._mechanisms)
        if self._multi:
            return list(self.attention_layer)
        return [self.attention_layer]

    def _sizes(self):
        size = self.attention_layer_size
        if size is None:
            return [None] * len(self._mechanisms)
        return list(size) if self._multi else [size]

    def _carried(self):
        """Indices of the mechanisms whose alignment state is carried."""
        if self._carry_alignments:
            return list(range(len(self._mechanisms)))
        if self.attention.needs_previous_alignments:
            return [0]
        return []

    def _needs_memory_dim(self, reason):
        raise ValueError(
            f"{reason} the memory's size, and this {type(self).__name__} has "
            "not seen a memory yet: call or build it first (or set "
            "`attention_layer_size`). Received: attention_layer_size=None"
        )

    def _mechanism_dims(self):
        """Size of each mechanism's attention vector."""
        dims = []
        sizes = self._sizes()
        for size, layer in zip(sizes, self._attention_layers()):
            if size is not None:
                dims.append(size)
            elif layer is not None and getattr(layer, "units", None):
                dims.append(int(layer.units))
            elif self._memory_dim is None:
                self._needs_memory_dim("The attention vector's size needs")
            elif layer is not None:
                shape = layer.compute_output_shape(
                    (None, cell_output_size(self.cell) + self._memory_dim)
                )
                dims.append(int(shape[-1]))
            else:
                dims.append(self._memory_dim)
        return dims

    @property
    def attention_dim(self):
        """Size of the attention vector (all mechanisms concatenated)."""
        return sum(self._mechanism_dims())

    @property
    def output_size(self):
        """Size of each step's output."""
        if self.output_attention:
            return self.attention_dim
        return cell_output_size(self.cell)

    def _cell_input_dim(self):
        if self.cell_input_fn is None:
            return self._input_dim + self.attention_dim
        # Traced on symbolic tensors: only the output's shape is needed.
        out = self.cell_input_fn(
            keras.KerasTensor((1, self._input_dim), dtype=self.compute_dtype),
            keras.KerasTensor(
                (1, self.attention_dim), dtype=self.compute_dtype
            ),
        )
        return int(out.shape[-1])

    # -- build ----------------------------------------------------------------

    def _build_core(self, input_dim, memory_shape):
        self._input_dim = int(input_dim)
        self._memory_dim = int(memory_shape[-1])
        cell_input_dim = self._cell_input_dim()
        if not self.cell.built:
            self.cell.build((None, cell_input_dim))
        cell_dim = cell_output_size(self.cell)
        for mechanism in self._mechanisms:
            if not mechanism.built:
                mechanism.build((None, cell_dim), tuple(memory_shape))
        if not self._custom_attention_layer and self.attention_layer_size:
            dense = [
                keras.layers.Dense(
                    size,
                    use_bias=False,
                    dtype=self.dtype_policy,
                    name="attention_layer" + (f"_{k}" if self._multi else ""),
                )
                for k, size in enumerate(self._sizes())
            ]
            self.attention_layer = dense if self._multi else dense[0]
        for layer in self._attention_layers():
            if layer is not None and not layer.built:
                layer.build((None, cell_dim + self._memory_dim))
        return cell_input_dim

    # -- state and step ------------------------------------------------------

    def precompute(self, memory):
        """The mechanisms' key projections of `memory`, once per sequence.

        Returns one tensor for a single mechanism, a tuple for a list.
        """
        keys = tuple(m.precompute(memory) for m in self._mechanisms)
        return keys if self._multi else keys[0]

    def _initial_state(self, batch_size, cell_state, memory_length, dtype):
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
        carried = self._carried()
        if not carried:
            return (cell_state, attention)
        if memory_length is None:
            raise ValueError(
                "The state carries alignments over the memory, so it needs "
                "`memory_length`. Received: memory_length=None"
            )
        alignments = []
        for k in carried:
            mechanism = self._mechanisms[k]
            if mechanism.needs_previous_alignments:
                first = mechanism.initial_alignments(batch_size, memory_length)
            else:
                first = ops.zeros((batch_size, memory_length))
            alignments.append(ops.cast(first, dtype))
        if self._carry_alignments:
            return (cell_state, attention, tuple(alignments))
        return (cell_state, attention, alignments[0])

    def _cell_inputs(self, inputs, attention):
        if self.cell_input_fn is None:
            return ops.concatenate([inputs, attention], axis=-1)
        return self.cell_input_fn(inputs, attention)

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
        """One step: `(output, new_state, alignments (B, K * S))`."""
        cell_state, attention = state[0], state[1]
        inputs = ops.cast(inputs, self.compute_dtype)
        cell_output, new_cell_state = self.cell(
            self._cell_inputs(inputs, attention), cell_state, training=training
        )
        # Cells return lists or bare tensors depending on their input; keep
        # the structure of the incoming state so the loop carry is stable.
        new_cell_state = keras.tree.pack_sequence_as(
            cell_state, keras.tree.flatten(new_cell_state)
        )
        mechanisms = self._mechanisms
        keys = list(keys) if self._multi else [keys]
        previous = [None] * len(mechanisms)
        carried = self._carried()
        if self._carry_alignments:
            previous = list(state[2])
        elif carried:
            previous = [state[2]]
        noise = energy_noise or {}
        vectors, all_alignments, new_alignments = [], [], []
        for k, mechanism in enumerate(mechanisms):
            extra = {}
            if mechanism.needs_previous_alignments:
                extra = {
                    "previous_alignments": previous[k],
                    "training": training,
                }
            if k in noise:
                extra["energy_noise"] = noise[k]
            context, alignments = mechanism(
                cell_output,
                memory,
                memory_mask=memory_mask,
                keys=keys[k],
                return_attention_scores=True,
                **extra,
            )  # (B, Dm), (B, S)
            layer = self._attention_layers()[k]
            if layer is not None:
                vector = layer(ops.concatenate([cell_output, context], -1))
            else:
                vector = context
            vectors.append(ops.cast(vector, self.compute_dtype))
            alignments = ops.cast(alignments, self.compute_dtype)
            all_alignments.append(alignments)
            if k in carried:
                if mechanism.needs_previous_alignments:
                    # e.g. the cumulative alignments of a location attention
                    alignments = ops.cast(
                        mechanism.next_alignment_state(previous[k], alignments),
                        self.compute_dtype,
                    )
                new_alignments.append(alignments)
        attention = (
            ops.concatenate(vectors, axis=-1) if self._multi else vectors[0]
        )  # (B, A)
        output = attention if self.output_attention else cell_output
        output = ops.cast(output, self.compute_dtype)
        new_state = (new_cell_state, attention)
        if self._carry_alignments:
            new_state = new_state + (tuple(new_alignments),)
        elif carried:
            new_state = new_state + (new_alignments[0],)
        aux = (
            ops.concatenate(all_alignments, axis=-1)
            if self._multi
            else all_alignments[0]
        )  # (B, K * S)
        return output, new_state, aux

    def _draw_noise(self, steps, batch_size, memory_length, training):
        """Each mechanism's noise for all steps: `{k: (T, B, S)}` or None."""
        noise = {}
        for k, mechanism in enumerate(self._mechanisms):
            drawn = mechanism.draw_step_noise(
                steps, batch_size, memory_length, training
            )
            if drawn is not None:
                noise[k] = drawn
        return noise or None

    # -- config ---------------------------------------------------------------

    def _core_config(self):
        serialize = keras.saving.serialize_keras_object
        attention_layer = None
        if self._custom_attention_layer:
            attention_layer = (
                [serialize(x) for x in self.attention_layer]
                if self._multi
                else serialize(self.attention_layer)
            )
        return {
            "cell": serialize(self.cell),
            "attention": (
                [serialize(m) for m in self.attention]
                if self._multi
                else serialize(self.attention)
            ),
            "attention_layer_size": self.attention_layer_size,
            "attention_layer": attention_layer,
            "cell_input_fn": (
                None
                if self.cell_input_fn is None
                else serialize(self.cell_input_fn)
            ),
            "output_attention": self.output_attention,
        }
