"""The memory-efficient backward pass of the chunked attention.

The chunked path keeps only the output and each row's log-sum-exp from the
forward and recomputes the weights block by block in the backward pass
(`keras_attn/ops/_chunked_blocks.py`). Its gradients (queries, keys,
values, bias, sinks) are checked against central differences of the
float64 NumPy oracle `tests/ops/numpy_reference.py`, eagerly and compiled;
its peak memory in a training step against the dense path's, in a
subprocess.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.ops import scaled_dot_product_attention
from tests.ops import numpy_reference as ref
from tests.ops.test_attention import _gradients
from tests.ops.test_score_mods import _numeric_grads

# (B, T, S, N, K, H, Hv): grouped-query heads, T != S, and S not a multiple
# of the block size 2, so that the last key block is padded.
SHAPE = (2, 3, 5, 4, 2, 3, 2)
NAMES = ["query", "key", "value", "bias", "sinks"]


def _case(seed=0):
    rng = np.random.default_rng(seed)
    batch, q_len, k_len, heads, kv_heads, head_dim, value_dim = SHAPE
    arrays = [
        rng.normal(size=(batch, q_len, heads, head_dim)),
        rng.normal(size=(batch, k_len, kv_heads, head_dim)),
        rng.normal(size=(batch, k_len, kv_heads, value_dim)),
        rng.normal(size=(1, heads, q_len, k_len)),  # bias, broadcast over B
        rng.normal(size=(heads,)),  # sinks
    ]
    arrays = [a.astype("float32") for a in arrays]
    mask = rng.random((batch, 1, q_len, k_len)) > 0.25
    mask[0, 0, 1] = False  # a fully masked row: no gradient from it
    d_out = rng.normal(size=(batch, q_len, heads, value_dim))
    return arrays, mask, d_out.astype("float32")


def _expected(arrays, mask, d_out, is_causal, cap, use_sinks):
    def np_loss(q, k, v, bias, sinks=None):
        out, _ = ref.attention(
            q,
            k,
            v,
            mask,
            bias,
            is_causal,
            None,
            cap,
            sinks if use_sinks else None,
        )
        return float((out * d_out).sum())

    return _numeric_grads(np_loss, [a.astype("float64") for a in arrays])


def _loss_fn(mask, d_out, is_causal, cap, use_sinks):
    def loss(q, k, v, bias, sinks=None):
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            logit_soft_cap=cap,
            sinks=sinks,
            implementation="chunked",
            chunk_size=2,
        )
        return ops.sum(ops.multiply(out, d_out))

    return loss


@pytest.mark.parametrize(
    "is_causal, cap, use_sinks",
    [(False, None, False), (True, None, True), (True, 1.5, False)],
    ids=["plain", "causal-sinks", "causal-softcap"],
)
def test_chunked_gradients_match_numpy(is_causal, cap, use_sinks):
    arrays, mask, d_out = _case()
    if not use_sinks:
        arrays = arrays[:4]
    grads = _gradients(_loss_fn(mask, d_out, is_causal, cap, use_sinks), arrays)
    expected = _expected(arrays, mask, d_out, is_causal, cap, use_sinks)
    for name, g, e in zip(NAMES, grads, expected):
        assert np.abs(e).max() > 1e-3, name  # the check can fail
        np.testing.assert_allclose(g, e, atol=3e-5, rtol=1e-4, err_msg=name)
    # The fully masked row gives nothing to its queries.
    np.testing.assert_array_equal(grads[0][0, 1], 0.0)


@pytest.mark.parametrize("is_causal", [True, False], ids=["causal", "full"])
def test_chunked_gradients_compiled_match_numpy(is_causal):
    # The compiled function (XLA on JAX and TensorFlow) takes the same
    # custom backward pass; here with every option at once. Its two query
    # blocks see the same key blocks without the causal mask (a loop over
    # them), different ones with it (flat loops over the pairs).
    arrays, mask, d_out = _case(seed=1)
    loss = _loss_fn(mask, d_out, is_causal, 2.0, True)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad = jax.jit(jax.grad(loss, argnums=tuple(range(5))))
        grads = [np.asarray(g) for g in grad(*arrays)]
    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def grad(*tensors):
            with tf.GradientTape() as tape:
                tape.watch(tensors)
                value = loss(*tensors)
            return tape.gradient(value, tensors)

        grads = [g.numpy() for g in grad(*map(tf.constant, arrays))]
    else:
        grads = _gradients(loss, arrays)  # torch runs eagerly
    expected = _expected(arrays, mask, d_out, is_causal, 2.0, True)
    for name, g, e in zip(NAMES, grads, expected):
        np.testing.assert_allclose(g, e, atol=3e-5, rtol=1e-4, err_msg=name)


_TRAIN_PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    from keras import ops
    from keras_attn.ops import scaled_dot_product_attention

    n = int(sys.argv[1])
    backend = keras.backend.backend()

    def status(field):  # kB -> MiB, from the kernel's view of this process
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    def train_step(implementation, d_out):
        # Gradients of sum(attention * d_out) w.r.t. q, k, v: a training
        # step's attention, compiled on JAX and TensorFlow.
        def loss(q, k, v):
            out = scaled_dot_product_attention(
                q, k, v, is_causal=True, logit_soft_cap=30.0,
                implementation=implementation, chunk_size=256)
            return ops.sum(ops.multiply(out, d_out))

        if backend == "jax":
            import jax
            return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        if backend == "tensorflow":
            import tensorflow as tf

            @tf.function(jit_compile=True)
            def step(q, k, v):
                with tf.GradientTape() as tape:
                    tape.watch([q, k, v])
                    value = loss(q, k, v)
                return tape.gradient(value, [q, k, v])
            return step

        def step(q, k, v):
            q, k, v = (x.clone().requires_grad_() for x in (q, k, v))
            loss(q, k, v).backward()
            return q.grad, k.grad, v.grad
        return step

    def peak_growth(implementation, n):
        rng = np.random.default_rng(0)
        q, k, v, d_out = (
            ops.convert_to_tensor(
                rng.normal(size=(1, n, 8, 64)).astype("float32"))
            for _ in range(4)
        )
        step = train_step(implementation, d_out)
        step(q, k, v)  # compiles
        # Reset the peak RSS (VmHWM) to the current RSS, then run again.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = status("VmRSS")
        grads = [ops.convert_to_numpy(g) for g in step(q, k, v)]
        assert all(np.all(np.isfinite(g)) for g in grads)
        return status("VmHWM") - base

    # Warm up the libraries on a small input, then chunked before dense so
    # that what the dense step leaves behind cannot hide the chunked peak.
    peak_growth("chunked", 128)
    peak_growth("reference", 128)
    print("PEAK_MIB", peak_growth("chunked", n), peak_growth("reference", n))
    """
)


@pytest.mark.large
def test_chunked_training_step_peak_memory_under_tenth_of_dense():
    # B=1, 8 heads, head size 64, 2,048 causal positions in blocks of 256
    # (8 x 8 blocks), with a soft cap so that torch takes the block loop
    # too: the dense step holds several (8, 2048, 2048) float32 matrices
    # (128 MiB each), the chunked one O(N) state per head (the ratio only
    # improves with N). The peak is that of a second call (compilation not
    # counted), with freed buffers handed back to the system at once.
    if keras.backend.backend() == "tensorflow":
        pytest.skip(
            "TensorFlow's XLA runtime keeps its buffers between calls, so "
            "a second call's peak does not show in the RSS (and the first "
            "one's is mostly compilation)"
        )
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN_PEAK_SCRIPT, "2048"],
        capture_output=True,
        text=True,
        env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = [x for x in proc.stdout.splitlines() if "PEAK_MIB" in x]
    assert len(line) == 1, proc.stdout
    print(line[0])  # shown with pytest -s
    chunked, dense = (float(x) for x in line[0].split()[1:])
    assert dense > 100, f"the dense step should grow by >100 MiB: {dense}"
    assert chunked <= dense / 10, (
        f"chunked {chunked:.0f} MiB, dense {dense:.0f}"
    )


@pytest.mark.large
def test_causal_training_step_plans_one_block_at_a_time_under_xla():
    # XLA's buffer plan of a compiled step (temp bytes, known before it
    # runs, so unaffected by the machine's load). The causal step computes
    # about half the blocks of the non-causal one and should need no more
    # memory: one (8, 32, 32) block at a time. With its query blocks
    # unrolled, XLA scheduled the causal blocks side by side: 1.35x the
    # non-causal temp memory at this size (3.6x at N=2,048, blocks of 256).
    if keras.backend.backend() != "jax":
        pytest.skip("the compiled buffer plan is read through JAX's API")
    import jax

    def temp_bytes(is_causal):
        def loss(q, k, v, d_out):
            out = scaled_dot_product_attention(
                q,
                k,
                v,
                is_causal=is_causal,
                implementation="chunked",
                chunk_size=32,
            )
            return ops.sum(ops.multiply(out, d_out))

        # B=1, N=256 (8 x 8 blocks of 32), 8 heads, head size 64.
        spec = jax.ShapeDtypeStruct((1, 256, 8, 64), "float32")
        step = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        compiled = step.lower(spec, spec, spec, spec).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    causal, full = temp_bytes(True), temp_bytes(False)
    assert causal <= 1.15 * full, (causal, full)
