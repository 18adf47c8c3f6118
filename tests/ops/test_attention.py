"""`scaled_dot_product_attention` against attention written out in NumPy."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.ops import scaled_dot_product_attention
from tests._subprocess import ELEMENTAL_EMITTERS
from tests._subprocess import FAST_COMPILE
from tests.ops import numpy_reference as ref

IMPLEMENTATIONS = ["reference", "fused", "chunked", "auto"]


def _inputs(rng, batch, q_len, k_len, heads, kv_heads, head_dim, value_dim):
    q = rng.normal(size=(batch, q_len, heads, head_dim)).astype("float32")
    k = rng.normal(size=(batch, k_len, kv_heads, head_dim)).astype("float32")
    v = rng.normal(size=(batch, k_len, kv_heads, value_dim)).astype("float32")
    return q, k, v


def _np(x):
    return np.asarray(ops.convert_to_numpy(x), dtype="float64")


# (batch, T, S, N, K, H, Hv): T != S, GQA (K < N), MQA (K == 1), Hv != H.
SHAPES = [
    (2, 5, 5, 4, 4, 8, 8),
    (2, 7, 11, 4, 2, 8, 6),
    (1, 9, 4, 6, 1, 4, 4),
    (3, 1, 13, 2, 2, 16, 8),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_matches_numpy(rng, implementation, shape, is_causal):
    batch, q_len, k_len, heads, kv_heads, head_dim, value_dim = shape
    q, k, v = _inputs(rng, *shape)
    mask = rng.random((batch, 1, q_len, k_len)) > 0.3
    mask[0, 0, 0] = False  # one query row with no key at all
    bias = rng.normal(size=(1, heads, q_len, k_len)).astype("float32")
    # A chunk size smaller than T and S exercises several blocks.
    out = scaled_dot_product_attention(
        q,
        k,
        v,
        mask=mask,
        bias=bias,
        is_causal=is_causal,
        implementation=implementation,
        chunk_size=3,
    )
    expected, _ = ref.attention(q, k, v, mask, bias, is_causal)
    assert tuple(out.shape) == expected.shape
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
    # The row with every key masked is exactly zero.
    np.testing.assert_array_equal(_np(out)[0, 0], 0.0)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_no_mask_no_bias(rng, implementation):
    q, k, v = _inputs(rng, 2, 6, 6, 4, 2, 8, 8)
    for is_causal in (False, True):
        out = scaled_dot_product_attention(
            q, k, v, is_causal=is_causal, implementation=implementation
        )
        expected, _ = ref.attention(q, k, v, is_causal=is_causal)
        np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bias_without_mask(rng, implementation):
    q, k, v = _inputs(rng, 2, 6, 6, 4, 2, 8, 8)
    bias = rng.normal(size=(1, 4, 6, 6)).astype("float32")
    for is_causal in (False, True):
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            is_causal=is_causal,
            implementation=implementation,
        )
        expected, _ = ref.attention(q, k, v, bias=bias, is_causal=is_causal)
        np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_mask_shapes_broadcast(rng, implementation):
    q, k, v = _inputs(rng, 2, 4, 6, 4, 4, 8, 8)
    for mask_shape in [(6,), (4, 6), (2, 1, 1, 6), (1, 4, 4, 6), (2, 4, 1, 1)]:
        mask = rng.random(mask_shape) > 0.4
        out = scaled_dot_product_attention(
            q, k, v, mask=mask, implementation=implementation, chunk_size=4
        )
        expected, _ = ref.attention(q, k, v, mask=mask)
        np.testing.assert_allclose(
            _np(out), expected, atol=1e-5, rtol=1e-5, err_msg=str(mask_shape)
        )
    # A bias of one column, broadcast over the keys (with a mask, and alone):
    # PyTorch's CUDA kernels once rejected both (issue 17's GPU run).
    bias = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    for mask in (rng.random((2, 4, 1, 1)) > 0.4, None):
        out = scaled_dot_product_attention(
            q, k, v, mask=mask, bias=bias, implementation=implementation,
            chunk_size=4,
        )
        expected, _ = ref.attention(q, k, v, mask=mask, bias=bias)
        np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)


def test_chunked_queries_fewer_than_a_block(rng):
    # A decoding step (one query) or a short prompt against a longer cache:
    # the queries form one block of their own size, not a padded block of
    # `chunk_size` rows (issue 17: the query-block loop once padded one
    # query to a whole block, 64 times the work here).
    for q_len in (1, 3):
        q, k, v = _inputs(rng, 2, q_len, 200, 4, 2, 8, 8)
        out = scaled_dot_product_attention(
            q, k, v, is_causal=True, implementation="chunked", chunk_size=64
        )
        expected, _ = ref.attention(q, k, v, is_causal=True)
        np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
    if keras.backend.backend() != "jax":
        return
    import jax

    def flops(q_len):
        # XLA's cost analysis of the compiled call (deterministic).
        q, k = jax.numpy.ones((1, q_len, 2, 8)), jax.numpy.ones((1, 256, 2, 8))
        call = jax.jit(
            lambda q, k: scaled_dot_product_attention(
                q, k, k, is_causal=True, implementation="chunked",
                chunk_size=64,
            )
        )
        cost = call.lower(q, k).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    assert flops(1) <= flops(64) / 8


def test_scale_and_weights(rng):
    q, k, v = _inputs(rng, 2, 5, 7, 4, 2, 8, 8)
    mask = rng.random((2, 1, 5, 7)) > 0.3
    out, weights = scaled_dot_product_attention(
        q, k, v, mask=mask, scale=0.5, return_weights=True
    )
    expected, expected_w = ref.attention(q, k, v, mask=mask, scale=0.5)
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(_np(weights), expected_w, atol=1e-6)
    assert tuple(weights.shape) == (2, 4, 5, 7)


def test_causal_is_aligned_to_the_end(rng):
    # One decoding step against 6 cached keys sees all of them; the first of
    # 3 queries against 6 keys sees keys 0..3.
    q, k, v = _inputs(rng, 1, 3, 6, 2, 2, 4, 4)
    _, weights = scaled_dot_product_attention(
        q, k, v, is_causal=True, return_weights=True
    )
    visible = _np(weights)[0, 0] > 0
    np.testing.assert_array_equal(
        visible,
        [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]],
    )


def test_causal_more_queries_than_keys_gives_zero_rows(rng):
    q, k, v = _inputs(rng, 1, 5, 3, 4, 2, 4, 6)
    for implementation in IMPLEMENTATIONS:
        out = scaled_dot_product_attention(
            q, k, v, is_causal=True, implementation=implementation, chunk_size=2
        )
        expected, _ = ref.attention(q, k, v, is_causal=True)
        np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(_np(out)[0, :2], 0.0)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_fully_masked_rows_are_zero_not_nan(rng, dtype, implementation):
    q, k, v = (ops.cast(x, dtype) for x in _inputs(rng, 2, 4, 5, 2, 2, 8, 8))
    mask = np.ones((2, 1, 4, 5), bool)
    mask[:, :, 1] = False  # query 1 attends nothing
    mask[1] = False  # the second sequence attends nothing at all
    out = scaled_dot_product_attention(
        q, k, v, mask=mask, implementation=implementation
    )
    assert keras.backend.standardize_dtype(out.dtype) == dtype
    out = _np(ops.cast(out, "float32"))
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_array_equal(out[1], 0.0)
    expected, _ = ref.attention(
        *(_np(ops.cast(x, "float32")) for x in (q, k, v)), mask=mask
    )
    np.testing.assert_allclose(out, expected, atol=5e-2, rtol=5e-2)


def test_dropout_drops_and_rescales_weights(rng):
    # With the identity as values, each output row *is* the row of dropped
    # attention weights: every entry is 0 or weight / (1 - rate).
    rate, length = 0.5, 16
    q = rng.normal(size=(2, length, 2, 8)).astype("float32")
    k = rng.normal(size=(2, length, 2, 8)).astype("float32")
    eye = np.broadcast_to(
        np.eye(length, dtype="float32")[None, :, None, :],
        (2, length, 2, length),
    )
    out = scaled_dot_product_attention(
        q, k, eye, dropout_rate=rate, seed=7, training=True
    )
    _, weights = ref.attention(q, k, eye)
    dropped = _np(out).transpose(0, 2, 1, 3)  # (B, N, T, S)
    kept = dropped != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(
        dropped[kept], weights[kept] / (1 - rate), rtol=1e-5
    )
    # Same seed, same result; not training: no dropout.
    again = scaled_dot_product_attention(
        q, k, eye, dropout_rate=rate, seed=7, training=True
    )
    np.testing.assert_array_equal(_np(again), _np(out))
    plain = scaled_dot_product_attention(q, k, eye, dropout_rate=rate, seed=7)
    np.testing.assert_allclose(
        _np(plain).transpose(0, 2, 1, 3), weights, atol=1e-6
    )


def _gradients(fn, arrays):
    """Gradients of `fn(*arrays)` (a scalar) w.r.t. each array."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grads = jax.grad(fn, argnums=tuple(range(len(arrays))))(*arrays)
        return [np.asarray(g) for g in grads]
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            loss = fn(*tensors)
        return [g.numpy() for g in tape.gradient(loss, tensors)]
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("implementation", ["reference", "chunked", "auto"])
@pytest.mark.parametrize("is_causal", [False, True], ids=["full", "causal"])
def test_gradients_match_numpy(rng, implementation, is_causal):
    q, k, v = _inputs(rng, 2, 7, 9, 4, 2, 8, 8)
    mask = rng.random((2, 1, 7, 9)) > 0.3
    bias = rng.normal(size=(1, 4, 7, 9)).astype("float32")
    d_out = rng.normal(size=(2, 7, 4, 8)).astype("float32")

    def loss(q, k, v):
        out = scaled_dot_product_attention(
            q,
            k,
            v,
            mask=mask,
            bias=bias,
            is_causal=is_causal,
            implementation=implementation,
            chunk_size=4,
        )
        return ops.sum(ops.multiply(out, d_out))

    grads = _gradients(loss, [q, k, v])
    expected = ref.attention_grads(q, k, v, d_out, mask, bias, is_causal)
    for name, g, e in zip("qkv", grads, expected):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize("implementation", ["reference", "chunked", "auto"])
def test_jit_compiles(rng, implementation):
    q, k, v = _inputs(rng, 1, 6, 6, 2, 1, 4, 4)

    def fn(q, k, v):
        return scaled_dot_product_attention(
            q, k, v, is_causal=True, implementation=implementation, chunk_size=4
        )

    if keras.backend.backend() == "jax":
        import jax

        out = jax.jit(fn)(q, k, v)
    elif keras.backend.backend() == "torch":
        out = fn(q, k, v)  # no XLA on torch: the eager call
    else:
        import tensorflow as tf

        out = tf.function(fn, jit_compile=True)(q, k, v)
    expected, _ = ref.attention(q, k, v, is_causal=True)
    np.testing.assert_allclose(_np(out), expected, atol=1e-5, rtol=1e-5)


BAD_CASES = [
    # (query shape, key shape, value shape, kwargs, regex)
    ((2, 4, 4), (2, 4, 4, 8), (2, 4, 4, 8), {}, "`query` must have rank 4"),
    ((2, 4, 4, 8), (2, 4, 4, 6), (2, 4, 4, 8), {}, "same head size"),
    ((2, 4, 4, 8), (3, 4, 4, 8), (3, 4, 4, 8), {}, "same batch size"),
    ((2, 4, 4, 8), (2, 4, 3, 8), (2, 4, 3, 8), {}, "multiple of the number"),
    ((2, 4, 4, 8), (2, 5, 4, 8), (2, 6, 4, 8), {}, "same length"),
    ((2, 4, 4, 8), (2, 5, 2, 8), (2, 5, 4, 8), {}, "same number of heads"),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"mask": np.ones((2, 4, 4, 4), bool)},
        "`mask` must broadcast",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"mask": np.ones((4, 5), "float32")},
        "`mask` must be a boolean",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"bias": np.ones((3, 1, 4, 5), "float32")},
        "`bias` must broadcast",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"implementation": "flash"},
        "`implementation` must be one of",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"chunk_size": 0},
        "`chunk_size` must be a positive",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"dropout_rate": 1.0},
        "`dropout_rate` must be a float in",
    ),
    (
        (2, 4, 4, 8),
        (2, 5, 4, 8),
        (2, 5, 4, 8),
        {"implementation": "chunked", "return_weights": True},
        "can neither return",
    ),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda c: c[-1][:24])
def test_bad_input_raises_value_error(case):
    q_shape, k_shape, v_shape, kwargs, match = case
    q, k, v = (np.zeros(s, "float32") for s in (q_shape, k_shape, v_shape))
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(q, k, v, **kwargs)


_PEAK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from keras import ops
    from keras_attn.ops import scaled_dot_product_attention

    def status(field):  # kB -> MiB, from the kernel's view of this process
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) / 1024

    def peak_growth(fn):
        # Reset the peak RSS (VmHWM) to the current RSS, then run.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = status("VmRSS")
        out = ops.convert_to_numpy(fn())
        return out, status("VmHWM") - base

    # B=1, 8 heads, head size 64, 16,384 positions: the dense weight matrix
    # alone would be 8 GiB in float32.
    n = 16384
    rng = np.random.default_rng(0)
    q, k, v = (
        ops.convert_to_tensor(rng.normal(size=(1, n, 8, 64)).astype("float32"))
        for _ in range(3)
    )
    # Warm up the code path on a small input so that one-off allocations
    # (libraries, kernels) are not counted.
    small = ops.convert_to_tensor(np.ones((1, 1024, 8, 64), "float32"))
    for causal in (False, True):
        ops.convert_to_numpy(scaled_dot_product_attention(
            small, small, small, is_causal=causal, implementation="chunked"))
    qn, kn, vn = (ops.convert_to_numpy(x)[0] for x in (q, k, v))
    for causal in (False, True):
        out, growth = peak_growth(lambda: scaled_dot_product_attention(
            q, k, v, is_causal=causal, implementation="chunked"))
        assert np.all(np.isfinite(out)) and out.shape == (1, n, 8, 64)
        # Row `i` of the output against the same row computed in NumPy; the
        # causal row sees keys 0..i only.
        i = n // 2
        visible = i + 1 if causal else n
        logits = np.einsum("nh,snh->ns", qn[i], kn[:visible]) / 8.0
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        row = np.einsum("ns,snh->nh", w, vn[:visible])
        np.testing.assert_allclose(out[0, i], row, atol=1e-4)
        print("PEAK_GROWTH_MIB", causal, growth)
    """
)


@pytest.mark.large
def test_chunked_16k_positions_peak_memory_under_1_gib():
    # Full and causal self-attention over 16,384 positions, eagerly, each
    # in a fresh process so that the peak belongs to the call.
    env = dict(os.environ)
    # Heavy loops compiled once: XLA's default code generation, not the
    # suite's (tests/conftest.py), under which this took 2.4x as long.
    flags = env.pop("XLA_FLAGS", "").split()
    flags = [f for f in flags if f not in (FAST_COMPILE, ELEMENTAL_EMITTERS)]
    if flags:  # (an empty XLA_FLAGS would be read as a file name)
        env["XLA_FLAGS"] = " ".join(flags)
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = [x for x in proc.stdout.splitlines() if "PEAK_GROWTH_MIB" in x]
    assert len(lines) == 2, proc.stdout
    print("\n".join(lines))  # shown with pytest -s
    for line in lines:
        _, causal, growth = line.split()
        growth = float(growth)
        assert growth < 1024, f"causal={causal}: peak RSS grew {growth:.0f} MiB"
