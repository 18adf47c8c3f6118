"""`gather_tree`: the beams of a beam search, backtracked from its steps."""

from keras import ops

from keras_attn._validation import check_rank


def gather_tree(predicted_ids, parent_ids):
    """Follows the parent ids back from the last step to spell each beam.

    At step `t`, beam `k` took token `predicted_ids[:, t, k]` and extended
    beam `parent_ids[:, t, k]` of step `t - 1`. Starting from the beams of
    the last step, this walks the parents backwards and returns the token
    sequence of each final beam (as `tfa.seq2seq.gather_tree`, with the
    batch first; the steps of `beam_search(..., return_steps=True)` have
    this layout, and pad finished beams, so no end token fill is needed).

    Args:
        predicted_ids: `(B, T, W)` integer tensor.
        parent_ids: `(B, T, W)` integer tensor of beam indices in `[0, W)`.

    Returns:
        `(B, T, W)` tensor of the dtype of `predicted_ids`: column `k` is
        the sequence of final beam `k`.

    Example:

    ```python
    import numpy as np
    from keras_attn.generation import gather_tree

    # Two steps, two beams: at step 1 both beams extend beam 1 of step 0.
    predicted_ids = np.array([[[5, 6], [7, 8]]], "int32")  # (1, 2, 2)
    parent_ids = np.array([[[0, 1], [1, 1]]], "int32")
    gather_tree(predicted_ids, parent_ids)
    # beams [6, 7] and [6, 8]: [[[6, 6], [7, 8]]]
    ```
    """
    predicted_ids = ops.convert_to_tensor(predicted_ids)
    parent_ids = ops.convert_to_tensor(parent_ids)
    check_rank("predicted_ids", predicted_ids, 3, "(batch, steps, beams)")
    check_rank("parent_ids", parent_ids, 3, "(batch, steps, beams)")
    if tuple(predicted_ids.shape) != tuple(parent_ids.shape):
        raise ValueError(
            "`parent_ids` must have the shape of `predicted_ids`. Received: "
            f"predicted_ids.shape={tuple(predicted_ids.shape)}, "
            f"parent_ids.shape={tuple(parent_ids.shape)}"
        )
    steps = predicted_ids.shape[1]
    parent_ids = ops.cast(parent_ids, "int32")
    width = predicted_ids.shape[2]
    beams = ops.zeros_like(parent_ids[:, 0]) + ops.arange(width, dtype="int32")

    def body(i, carry):
        beams, out = carry  # beams (B, W): the beam of step t to read
        t = steps - 1 - i
        ids = ops.take_along_axis(ops.take(predicted_ids, t, axis=1), beams, 1)
        out = ops.slice_update(out, [0, t, 0], ids[:, None, :])
        beams = ops.take_along_axis(ops.take(parent_ids, t, axis=1), beams, 1)
        return beams, out

    _, out = ops.fori_loop(
        0, steps, body, (beams, ops.zeros_like(predicted_ids))
    )
    return out


__all__ = ["gather_tree"]
