"""What `AttentionRNN` needs to know of the cell it wraps (private).

Its output size, and its dropout masks drawn before a compiled loop.
Keras' dropout cells (`LSTMCell(dropout=...)`, `GRUCell`, `SimpleRNNCell`)
draw their masks on the first step and cache them for the others. Inside a
compiled loop (`fori_loop` under JAX or TensorFlow) that first draw would
advance the seed generator and leave a traced value behind: the masks are
drawn here, before the loop, as `keras.layers.RNN` does, and reset after.
"""

import keras
from keras import ops


def cell_output_size(cell):
    """The size of a cell's output: `output_size`, else its first state."""
    size = getattr(cell, "output_size", None)
    if size is None:
        state_size = cell.state_size
        size = (
            state_size[0]
            if isinstance(state_size, (list, tuple))
            else state_size
        )
    return int(size)


def _first_state_size(cell):
    state_size = cell.state_size
    if isinstance(state_size, (list, tuple)):
        return int(state_size[0])
    return int(state_size)


def _cells_and_input_sizes(cell, input_dim):
    """Each dropout-capable cell with the size of its own input."""
    if isinstance(cell, keras.layers.StackedRNNCells):
        result = []
        for inner in cell.cells:
            result.extend(_cells_and_input_sizes(inner, input_dim))
            input_dim = cell_output_size(inner)
        return result
    if hasattr(cell, "get_dropout_mask") and hasattr(
        cell, "get_recurrent_dropout_mask"
    ):
        return [(cell, input_dim)]
    return []


def draw_dropout_masks(cell, batch_size, input_dim):
    """Makes `cell` (every cell of a stack) draw and cache its masks now.

    Args:
        cell: a Keras RNN cell or `StackedRNNCells`.
        batch_size: int or scalar tensor.
        input_dim: int, the size of the input the cell reads at each step.
    """
    for inner, size in _cells_and_input_sizes(cell, input_dim):
        dtype = inner.compute_dtype
        # Only the shapes and dtypes matter: the cell draws ones_like(x).
        inner.get_dropout_mask(ops.zeros((batch_size, size), dtype))
        inner.get_recurrent_dropout_mask(
            ops.zeros((batch_size, _first_state_size(inner)), dtype)
        )


def reset_dropout_masks(cell, input_dim=0):
    """Forgets the cached masks, so that the next sequence draws new ones."""
    for inner, _ in _cells_and_input_sizes(cell, input_dim):
        inner.reset_dropout_mask()
        inner.reset_recurrent_dropout_mask()
