"""Tests of the monotonic attentions against the formulas in NumPy."""

import numpy as np
import pytest
from keras import ops

from keras_attn.layers import BahdanauMonotonicAttention
from keras_attn.layers import LuongMonotonicAttention
from tests.conformance import BadInput
from tests.conformance import run_layer_test

B, S, DQ, DM = 3, 6, 5, 7


def _w(x):
    return ops.convert_to_numpy(x).astype("float64")


def _data(rng, dm=DM):
    query = rng.standard_normal((B, DQ)).astype("float32")
    memory = rng.standard_normal((B, S, dm)).astype("float32")
    mask = np.ones((B, S), bool)
    mask[0, 4:] = False
    mask[1, 0] = False  # the initial alignment's position itself
    mask[1, 2] = False  # a hole: mass passes over it
    return query, memory, mask


def _np_energy(layer, query, memory):
    """Energy + score bias, (B, S), from the layer's weights."""
    if isinstance(layer, BahdanauMonotonicAttention):
        hidden = (query @ _w(layer.query_dense.kernel))[:, None] + (
            memory @ _w(layer.memory_dense.kernel)
        )
        v = _w(layer.attention_v)
        if layer.normalize:
            hidden = hidden + _w(layer.attention_b)
            v = float(_w(layer.attention_g)) * v / np.linalg.norm(v)
        energy = np.tanh(hidden) @ v
    else:  # Luong "general"
        keys = memory @ _w(layer.memory_dense.kernel)
        energy = np.einsum("bd,bsd->bs", query, keys)
        if layer.scale:
            energy = energy * float(_w(layer.attention_g))
    return energy + float(_w(layer.score_bias))


def _np_parallel(p, previous):
    """Raffel et al. (2017), eq. 14, with a plain exclusive cumprod."""
    cumprod = np.concatenate(
        [np.ones_like(p[:, :1]), np.cumprod(1 - p, axis=1)[:, :-1]], axis=1
    )
    return p * cumprod * np.cumsum(previous / np.clip(cumprod, 1e-10, 1), 1)


def _one_hot_first(b=B, s=S):
    first = np.zeros((b, s))
    first[:, 0] = 1
    return first


def _layers():
    return {
        "bahdanau": lambda **kw: BahdanauMonotonicAttention(8, **kw),
        "bahdanau_norm": lambda **kw: BahdanauMonotonicAttention(
            8, normalize=True, **kw
        ),
        "luong": lambda **kw: LuongMonotonicAttention(**kw),
        "luong_scale": lambda **kw: LuongMonotonicAttention(scale=True, **kw),
    }


def _bad_inputs(query, memory, mask):
    data = {"query": query, "memory": memory, "memory_mask": mask}
    return [
        BadInput("mode", init_kwargs={"mode": "serial"}),
        BadInput("sigmoid_noise", init_kwargs={"sigmoid_noise": -1.0}),
        BadInput("score_bias_init", init_kwargs={"score_bias_init": "big"}),
        BadInput("seed", init_kwargs={"seed": 1.5}),
        BadInput(
            "query",
            input_data={**data, "query": np.stack([query, query], 1)},
        ),
        BadInput("query", input_data={**data, "query": query[0]}),
        BadInput("memory", input_data={**data, "memory": memory[0]}),
        BadInput(
            "memory_mask", input_data={**data, "memory_mask": mask[:, :2]}
        ),
        BadInput(
            "previous_alignments",
            input_data={**data, "previous_alignments": np.ones((B, S + 1))},
        ),
        BadInput(
            "previous_alignments.dtype",
            input_data={
                **data,
                "previous_alignments": np.ones((B, S), "int32"),
            },
        ),
    ]


@pytest.mark.parametrize(
    "layer_cls, init_kwargs",
    [
        (
            BahdanauMonotonicAttention,
            {"units": 8, "normalize": True, "sigmoid_noise": 1.0, "seed": 3},
        ),
        (LuongMonotonicAttention, {"scale": True, "score_bias_init": -1.0}),
    ],
)
def test_conformance(rng, layer_cls, init_kwargs):
    query, memory, mask = _data(rng)
    previous = rng.uniform(size=(B, S)).astype("float32")
    previous /= previous.sum(-1, keepdims=True)
    run_layer_test(
        layer_cls,
        init_kwargs,
        {
            "query": query,
            "memory": memory,
            "memory_mask": mask,
            "previous_alignments": previous,
        },
        call_kwargs={"return_attention_scores": True},
        expected_output_shape=((B, DM), (B, S)),
        bad_inputs=_bad_inputs(query, memory, mask),
    )


@pytest.mark.parametrize(
    "name", ["bahdanau", "bahdanau_norm", "luong", "luong_scale"]
)
@pytest.mark.parametrize("with_mask", [False, True])
def test_parallel_matches_numpy(rng, name, with_mask):
    _, memory, mask = _data(rng)
    layer = _layers()[name](score_bias_init=-0.5)
    mask = mask if with_mask else np.ones_like(mask)
    layer(np.zeros((B, DQ), "float32"), memory)
    # Move the weights off their initial values so every one is exercised.
    layer.score_bias.assign(0.3)
    if getattr(layer, "normalize", False):
        layer.attention_g.assign(0.7)
        layer.attention_b.assign(rng.standard_normal(8).astype("float32"))
    if getattr(layer, "scale", False):
        layer.attention_g.assign(0.6)
    got = None
    ref = _one_hot_first()
    memory64 = memory.astype("float64")
    for _ in range(4):  # chained steps, each from the previous alignment
        query = rng.standard_normal((B, DQ)).astype("float32")
        context, got = layer(
            query,
            memory,
            memory_mask=mask,
            previous_alignments=got,
            return_attention_scores=True,
        )
        p = 1 / (1 + np.exp(-_np_energy(layer, query, memory64)))
        ref = _np_parallel(p * mask, ref)
        np.testing.assert_allclose(_w(got), ref, atol=1e-5)
        np.testing.assert_allclose(
            _w(context), np.einsum("bs,bsd->bd", ref, memory64), atol=1e-5
        )
    # The reference is not trivial: the mass has moved off position 0.
    assert np.abs(ref - _one_hot_first()).max() > 0.1


@pytest.mark.parametrize("name", ["bahdanau_norm", "luong_scale"])
def test_alignments_are_sub_probabilities(rng, name):
    _, memory, mask = _data(rng)
    layer = _layers()[name]()
    alignments = None
    for _ in range(6):
        query = 3 * rng.standard_normal((B, DQ)).astype("float32")
        _, alignments = layer(
            query,
            memory,
            memory_mask=mask,
            previous_alignments=alignments,
            return_attention_scores=True,
        )
        a = _w(alignments)
        assert np.all(a >= 0)
        assert np.all(a.sum(-1) <= 1 + 1e-6)
        assert np.all(a[~mask] == 0), "masked positions must be exactly 0"
        assert a.sum() > 0


@pytest.mark.parametrize("name", ["bahdanau", "luong_scale"])
def test_p_one_stays_on_first_position(rng, name):
    _, memory, _ = _data(rng)
    layer = _layers()[name](score_bias_init=100.0)
    alignments = None
    for _ in range(4):
        query = rng.standard_normal((B, DQ)).astype("float32")
        _, alignments = layer(
            query,
            memory,
            previous_alignments=alignments,
            return_attention_scores=True,
        )
        np.testing.assert_allclose(_w(alignments), _one_hot_first(), atol=1e-6)


def test_p_zero_attends_nothing(rng):
    # p = 0 everywhere: nothing is ever chosen, the alignment is 0.
    _, memory, _ = _data(rng)
    layer = LuongMonotonicAttention(score_bias_init=-100.0)
    context, alignments = layer(
        rng.standard_normal((B, DQ)).astype("float32"),
        memory,
        return_attention_scores=True,
    )
    assert np.all(_w(alignments) < 1e-30)
    assert np.all(np.abs(_w(context)) < 1e-30)


def test_hard_mode_hand_derived():
    # "dot" energy with Dq = Dm = 1 and no bias: p_i = [q * m_i > 0].
    memory = np.array([[-1, 1, -1, 1, 1]] * 2, "float32")[:, :, None]
    mask = np.ones((2, 5), bool)
    mask[1, 3] = False
    layer = LuongMonotonicAttention("dot", mode="hard")
    queries = [1.0, 1.0, -1.0, 1.0, -1.0, 1.0]
    # Row 0: p = [0,1,0,1,1] for q = 1 and [1,0,1,0,0] for q = -1. From
    # position 0: first chosen at or after it is 1; stays on 1; q = -1
    # moves to 2; q = 1 to 3; q = -1 finds nothing at or after 3: no
    # attention, and none after. Row 1 has position 3 masked: 4 not 3.
    expected = [
        [1, 1],
        [1, 1],
        [2, 2],
        [3, 4],
        [None, None],
        [None, None],
    ]
    alignments = None
    for q, positions in zip(queries, expected):
        query = np.full((2, 1), q, "float32")
        context, alignments = layer(
            query,
            memory,
            memory_mask=mask,
            previous_alignments=alignments,
            return_attention_scores=True,
        )
        want = np.zeros((2, 5))
        for row, pos in enumerate(positions):
            if pos is not None:
                want[row, pos] = 1
        np.testing.assert_array_equal(_w(alignments), want)
        np.testing.assert_array_equal(_w(context), want @ memory[0])


def test_hard_mode_first_choice(rng):
    # From the initial alignment, hard mode attends the first position with
    # p = 1: compare with NumPy over random energies.
    _, memory, mask = _data(rng)
    layer = BahdanauMonotonicAttention(8, mode="hard")
    query = rng.standard_normal((B, DQ)).astype("float32")
    _, got = layer(
        query, memory, memory_mask=mask, return_attention_scores=True
    )
    p = (_np_energy(layer, query, memory.astype("float64")) > 0) & mask
    want = np.zeros((B, S))
    for row in range(B):
        chosen = np.flatnonzero(p[row])
        if chosen.size:
            want[row, chosen[0]] = 1
    np.testing.assert_array_equal(_w(got), want)


def test_noise_only_in_training(rng):
    query, memory, mask = _data(rng)
    noisy = LuongMonotonicAttention(sigmoid_noise=2.0, seed=1)
    clean = LuongMonotonicAttention()
    kwargs = dict(memory_mask=mask, return_attention_scores=True)
    _, a_noisy = noisy(query, memory, **kwargs)
    clean(query, memory, **kwargs)
    for w_clean, w_noisy in zip(
        clean.trainable_weights, noisy.trainable_weights
    ):
        w_clean.assign(w_noisy)
    _, a_clean = clean(query, memory, **kwargs)
    np.testing.assert_allclose(_w(a_noisy), _w(a_clean), atol=1e-6)
    _, a_train = noisy(query, memory, training=True, **kwargs)
    assert not np.allclose(_w(a_train), _w(a_clean), atol=1e-3)


def test_precomputed_keys_equal(rng):
    query, memory, mask = _data(rng)
    layer = BahdanauMonotonicAttention(8)
    out = layer(query, memory, memory_mask=mask)
    out2 = layer(query, memory, memory_mask=mask, keys=layer.precompute(memory))
    np.testing.assert_allclose(_w(out), _w(out2), atol=1e-6)


def test_initial_alignments():
    layer = LuongMonotonicAttention()
    np.testing.assert_array_equal(
        _w(layer.initial_alignments(2, 4)), _one_hot_first(2, 4)
    )


def _np_recursive(p, previous):
    """The recursion of Raffel et al.: q_i = (1 - p_{i-1}) q_{i-1} + a'_i."""
    out = np.zeros_like(p)
    for b in range(p.shape[0]):
        q = 0.0
        for i in range(p.shape[1]):
            q = (1 - p[b, i - 1]) * q + previous[b, i] if i else previous[b, 0]
            out[b, i] = p[b, i] * q
    return out


@pytest.mark.parametrize("name", ["bahdanau_norm", "luong"])
def test_recursive_matches_numpy_recursion(rng, name):
    _, memory, mask = _data(rng)
    layer = _layers()[name](score_bias_init=-0.5, mode="recursive")
    got, ref = None, _one_hot_first()
    for _ in range(3):  # chained steps
        query = rng.standard_normal((B, DQ)).astype("float32")
        context, got = layer(
            query,
            memory,
            memory_mask=mask,
            previous_alignments=got,
            return_attention_scores=True,
        )
        p = 1 / (1 + np.exp(-_np_energy(layer, query, memory)))
        ref = _np_recursive(p * mask, ref)
        np.testing.assert_allclose(_w(got), ref, atol=1e-5)
        np.testing.assert_allclose(
            _w(context), np.einsum("bs,bsd->bd", ref, memory), atol=1e-5
        )
    assert np.abs(ref - _one_hot_first()).max() > 0.1


def test_recursive_stays_exact_where_parallel_floors(rng):
    """p near 1 early: the parallel form divides by a product below its
    1e-10 floor and loses the mass carried from later positions; the
    recursion keeps it."""
    _, memory, _ = _data(rng)
    previous = np.zeros((B, S), "float32")
    previous[:, 4] = 1.0  # attention already at position 4
    results = {}
    for mode in ("parallel", "recursive"):
        layer = BahdanauMonotonicAttention(8, mode=mode)
        query = np.zeros((B, DQ), "float32")
        layer(query, memory)
        layer.score_bias.assign(30.0)  # p = sigmoid(~30): 1 - p ~ 1e-13
        _, results[mode] = layer(
            query,
            memory,
            previous_alignments=previous,
            return_attention_scores=True,
        )
    p = 1 / (1 + np.exp(-_np_energy(layer, np.zeros((B, DQ)), memory)))
    ref = _np_recursive(p, previous.astype("float64"))
    np.testing.assert_allclose(_w(results["recursive"]), ref, atol=1e-5)
    assert np.abs(_w(results["parallel"]) - ref).max() > 0.5
