"""The plan of a chunked attention call: its blocks and its loops.

Private to `attention_chunked.py` and `_chunked_blocks.py`: which (query
block, key block) pairs a call computes, and the loop structure that runs
them on each backend (see `Blocks`).
"""

from keras import ops

from keras_attn import _compat


class Blocks:
    """The static plan of one call: lengths, block size, modifiers.

    Query blocks have `rows` rows: `chunk`, or all the queries where there
    are fewer (a decoding step has one). The caller pads the queries to
    `padded_q_len`, whole query blocks, so that every block has the same
    shape and one loop body serves them all.

    Where loops are compiled (JAX; TensorFlow in a graph) and autodiff
    does not go through them (no `score_mod`), every loop has a static
    length and keeps one block's buffers alive at a time (see
    `structure`):

    - "nested" where every query block sees the same key blocks
      (non-causal, or a single query block): one loop over the query
      blocks, whose body runs the block's key loops, its rows'
      online-softmax state in their carry, and writes its rows of the
      result once. That state and the block's query rows stay alive
      through its key loop: up to two more (t, H) blocks of rows in XLA's
      temp memory than the flat loops (3% of a training step's).
    - "pairs" where they differ (causal): the visible (query block, key
      block) pairs in two flat loops, one over the pairs that need no
      position mask and one over the edge pairs, carrying the state of
      every row, O(T), whose block rows are sliced and written back at
      every pair.

    On an H100 (JAX, N=8,192 and 16,384, forward and training step) the
    flat pairs took 0.75-0.8x the time of nested loops whose causal key
    bounds were tensors read from a table (a trip count that most likely
    goes back to the host at every iteration), but 1.11-1.15x that of the
    nested loops of static bounds non-causal: hence both. Unrolled query
    blocks are no option there: XLA scheduled them side by side (at
    N=2,048 in blocks of 256, causal, some twenty (8, 256, 256) float32
    blocks of logits at once: 88 MiB of temp memory for a training step
    against 25 MiB non-causal).

    Elsewhere ("rows") the query blocks are unrolled, each with its own
    key loops: eager loops (PyTorch's, and TensorFlow's outside a graph)
    run op by op, nothing is scheduled ahead, and a carry's slice update
    copies all of it; and autodiff through a `score_mod` would keep a
    loop's carry of every row at every iteration (and TensorFlow has no
    gradient for a dynamic update at all).
    """

    def __init__(self, q_len, k_len, chunk, causal_offset, score_mod, cap):
        self.q_len, self.k_len, self.chunk = q_len, k_len, chunk
        # Causal: query i sits at key position i + causal_offset; else None.
        self.causal_offset = causal_offset
        self.score_mod, self.cap = score_mod, cap
        self.num_key_blocks = -(-k_len // chunk)
        self.rows = max(1, min(chunk, q_len))
        self.padded_q_len = -(-q_len // self.rows) * self.rows

    def key_blocks(self):
        """`(num_whole, num_blocks)` for each query block, in order.

        Key blocks `[0, num_whole)` are seen whole by every row of the
        block (no padding, no causal cut): they need no position mask.
        Blocks `[num_whole, num_blocks)` (at most two) do; later blocks are
        hidden by the causal mask and never computed.
        """
        plan = []
        whole_keys = self.k_len // self.chunk
        for q_start in range(0, self.q_len, self.rows):
            num_blocks, num_whole = self.num_key_blocks, whole_keys
            if self.causal_offset is not None:
                first = q_start + self.causal_offset  # first row's last key
                last = q_start + self.rows - 1 + self.causal_offset
                num_blocks = max(0, min(num_blocks, last // self.chunk + 1))
                num_whole = max(0, min(whole_keys, (first + 1) // self.chunk))
            plan.append((min(num_whole, num_blocks), num_blocks))
        return plan

    def structure(self):
        """How the blocks run: "rows", "nested" or "pairs" (see the class)."""
        if self.score_mod is not None or not _compat.loops_are_compiled():
            return "rows"
        return "nested" if len(set(self.key_blocks())) == 1 else "pairs"

    def run(self, query_block, pair, carry):
        """Runs every visible block in the plan's `structure`.

        Args:
            query_block: `carry = query_block(q_start, num_whole,
                num_blocks, carry)`, for one query block and its key blocks
                (see `key_blocks`), Python ints; `q_start` is an int32
                scalar in the nested loop.
            pair: `carry = pair(q_start, k_start, edge, carry)`, for one
                (query block, key block) pair, int32 scalars: the pairs
                that need no position mask first (`edge` False), then the
                edge pairs, each set in one loop of static length whose
                body reads the pair's starts from a table.
            carry: the initial carry.
        """
        bounds = self.key_blocks()
        structure = self.structure()
        if structure == "nested" and len(bounds) > 1:
            return ops.fori_loop(
                0,
                len(bounds),
                lambda i, c: query_block(i * self.rows, *bounds[0], c),
                carry,
            )
        if structure != "pairs":  # unrolled, or a single query block
            for index, (num_whole, num_blocks) in enumerate(bounds):
                carry = query_block(
                    index * self.rows, num_whole, num_blocks, carry
                )
            return carry
        whole, edge = [], []
        for index, (num_whole, num_blocks) in enumerate(bounds):
            for block in range(num_blocks):
                pairs = edge if block >= num_whole else whole
                pairs.append((index * self.rows, block * self.chunk))
        carry = _loop_over(whole, lambda q, k, c: pair(q, k, False, c), carry)
        return _loop_over(edge, lambda q, k, c: pair(q, k, True, c), carry)


def _loop_over(starts, body, carry):
    """`carry = body(q_start, k_start, carry)` for each pair of `starts`.

    A single pair (one query block's edge, mostly) is run unrolled, with
    Python ints.
    """
    if len(starts) <= 1:
        return body(*starts[0], carry) if starts else carry
    table = ops.convert_to_tensor(starts, "int32")  # (P, 2)
    return ops.fori_loop(
        0,
        len(starts),
        lambda i, c: body(table[i, 0], table[i, 1], c),
        carry,
    )


def static_loop(start, stop, body, carry):
    """`body(i, carry)` for `i` in `[start, stop)`, Python ints.

    A single iteration (the edge blocks, mostly) is unrolled: a second
    loop per query block would make XLA keep the buffers of both loops
    alive at once.
    """
    if stop - start == 1:
        return body(start, carry)
    if stop > start:
        carry = ops.fori_loop(start, stop, body, carry)
    return carry
