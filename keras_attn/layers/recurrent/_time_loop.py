"""The time loop of `AttentionRNN` (private): steps, masks, buffers."""

import keras
from keras import ops


def masked_time_loop(
    step_fn, inputs, state, mask, output_dim, aux_dim, dtype, per_step=None
):
    """Runs `step_fn` over the time axis of `inputs` in one compiled loop.

    `fori_loop` over preallocated buffers rather than `scan`: the TensorFlow
    `scan` of Keras needs per-step outputs shaped like the carry. Static
    bounds keep it reverse-differentiable on JAX. Steps where `mask` is
    False carry the state through unchanged and give zero outputs.

    Args:
        step_fn: `step_fn(x_t, state, extra_t) -> (output, state, aux)`
            with `x_t (B, D)`, `output (B, output_dim)`, `aux (B, aux_dim)`
            and `extra_t` the slice `t` of each tensor of `per_step` (None
            without it).
        inputs: `(B, T, D)`.
        state: the initial state, any structure of `(B, ...)` tensors.
        mask: optional `(B, T)` boolean mask of the steps.
        output_dim: int, size of each step's output.
        aux_dim: int or scalar tensor, size of each step's `aux`.
        dtype: dtype of the outputs and `aux`.
        per_step: optional structure of `(T, ...)` tensors, read at step
            `t`.

    Returns:
        `(outputs (B, T, output_dim), last_output (B, output_dim),
        final_state, aux (B, T, aux_dim))`; `last_output` is the output of
        the last unmasked step.
    """
    batch_size = ops.shape(inputs)[0]
    steps = inputs.shape[1]
    if steps is None:
        steps = ops.shape(inputs)[1]
    xs = ops.transpose(inputs, (1, 0, 2))  # (T, B, D)
    step_mask = None
    if mask is not None:
        step_mask = ops.transpose(ops.cast(mask, "bool"), (1, 0))  # (T, B)
    last_output = ops.zeros((batch_size, output_dim), dtype=dtype)
    outputs = ops.zeros((steps, batch_size, output_dim), dtype=dtype)
    auxes = ops.zeros((steps, batch_size, aux_dim), dtype=dtype)  # (T, B, S)
    time_index = ops.arange(steps, dtype="int32")  # (T,)

    def body(t, carry):
        state, last_output, outputs, auxes = carry
        x_t = ops.take(xs, t, axis=0)  # (B, D)
        extra = None
        if per_step is not None:
            extra = keras.tree.map_structure(
                lambda x: ops.take(x, t, axis=0), per_step
            )
        output, new_state, aux = step_fn(x_t, state, extra)
        output = ops.cast(output, dtype)
        aux = ops.cast(aux, dtype)
        if step_mask is not None:
            m = ops.take(step_mask, t, axis=0)[:, None]  # (B, 1)
            new_state = keras.tree.map_structure(
                lambda new, old: ops.where(m, new, old), new_state, state
            )
            output = ops.where(m, output, ops.zeros_like(output))
            aux = ops.where(m, aux, ops.zeros_like(aux))
            last_output = ops.where(m, output, last_output)
        else:
            last_output = output
        # A select rather than `slice_update`, which has no gradient on
        # TensorFlow; T is small next to B * A, so the O(T) cost is fine.
        here = ops.equal(time_index, t)[:, None, None]  # (T, 1, 1)
        outputs = ops.where(here, output[None], outputs)
        auxes = ops.where(here, aux[None], auxes)
        return (new_state, last_output, outputs, auxes)

    state, last_output, outputs, auxes = ops.fori_loop(
        0, steps, body, (state, last_output, outputs, auxes)
    )
    outputs = ops.transpose(outputs, (1, 0, 2))  # (B, T, A)
    auxes = ops.transpose(auxes, (1, 0, 2))  # (B, T, S)
    return outputs, last_output, state, auxes
