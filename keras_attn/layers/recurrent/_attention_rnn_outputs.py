"""The output structure of `AttentionRNN` (private): shapes and masks."""

import keras


class AttentionRNNOutputs:
    """What `AttentionRNN` returns, without running it.

    A mixin of `AttentionRNN`: it needs `return_sequences`, `return_state`,
    `return_alignments`, `output_size`, `attention_dim`, `cell`,
    `build` and `_validate` from the layer, and the alignment structure
    (`_multi`, `_mechanisms`, `_carried`, `_carry_alignments`) from
    `AttentionCore`.
    """

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
        carried = tuple((batch, memory_length) for _ in self._carried())
        if self._carry_alignments:
            shapes = shapes + (carried,)
        elif carried:
            shapes = shapes + carried
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
            alignments = (batch, steps, memory_shape[1])
            if self._multi:
                alignments = tuple(alignments for _ in self._mechanisms)
            result.append(alignments)
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
