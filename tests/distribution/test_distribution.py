"""`keras_attn.distribution.layout_map` under keras.distribution (JAX).

The matrix (three models x DataParallel / ModelParallel on 8 virtual CPU
devices) runs in one subprocess, `_run_distributed.py`, since the device
count must be fixed before JAX is imported. The expected shardings are
written out here from the tensor-parallel rule, not read from the code.
"""

import json
import pathlib
import subprocess
import sys

import keras
import pytest

from tests._subprocess import backend_env
from tests._subprocess import single_thread_xla_flags

SCRIPT = pathlib.Path(__file__).with_name("_run_distributed.py")
ROOT = SCRIPT.parents[2]
M = "model"

# The Megatron split, by the end of the variable path; anything not listed
# is replicated. Key/value: 2 key/value heads on a 4-way model axis in the
# language model are replicated; 4 heads in the other models are split.
EXPECTED = {
    "query/kernel": [None, M, None],
    "query/bias": [M, None],
    "attention_output/kernel": [M, None, None],
    "intermediate_dense/kernel": [None, M],
    "intermediate_dense/bias": [M],
    "output_dense/kernel": [M, None],
    "token_embedding/embeddings": [None, M],
    "position_embedding/embeddings": [None, M],
    "position_embeddings": [None, M],
    "reverse_embeddings": [M, None],
}
SPLIT_KV = {
    "key/kernel": [None, M, None],
    "key/bias": [M, None],
    "value/kernel": [None, M, None],
    "value/bias": [M, None],
}
# TransformerLM with position="rotary": its token table is the bare
# ReversibleEmbedding named "embedding".
LM_EXTRA = {"embedding/embeddings": [None, M]}

pytestmark = [
    pytest.mark.skipif(
        keras.backend.backend() != "jax",
        reason="keras.distribution runs on the JAX backend only",
    ),
    # The subprocess behind `report` takes about a minute.
    pytest.mark.large,
]


def _expected(name, path):
    rules = dict(EXPECTED)
    if name != "TransformerLM":
        rules.update(SPLIT_KV)
    else:
        rules.update(LM_EXTRA)
    matches = [
        axes
        for suffix, axes in rules.items()
        if path == suffix or path.endswith("/" + suffix)
    ]
    assert len(matches) <= 1, path
    return matches[0] if matches else None


@pytest.fixture(scope="module")
def report():
    # The suite's compile flags, with XLA's matmuls on one thread; the
    # script appends the device count to them.
    env = backend_env(XLA_FLAGS=single_thread_xla_flags())
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")]
    assert lines, result.stdout[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])


MODELS = ("TransformerLM", "Transformer", "VisionTransformer")
STRATEGIES = ("DataParallel", "ModelParallel")


def test_eight_virtual_devices(report):
    assert report["devices"] == 8


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", MODELS)
def test_one_sgd_step_matches_the_single_device_step(report, name, strategy):
    entry = report[name][strategy]
    assert abs(entry["loss"] - report[name]["single"]["loss"]) < 1e-5
    assert entry["max_weight_diff"] < 1e-5
    # The step did move the weights (by far more than the tolerance).
    assert entry["weights_changed"] > 1e-2


@pytest.mark.parametrize("name", MODELS)
def test_data_parallel_replicates_every_variable(report, name):
    shardings = report[name]["DataParallel"]["shardings"]
    assert shardings
    for path, spec in shardings.items():
        assert all(axis is None for axis in spec), (path, spec)


@pytest.mark.parametrize("name", MODELS)
def test_model_parallel_shards_as_the_layout_asks(report, name):
    shardings = report[name]["ModelParallel"]["shardings"]
    split = set()
    for path, spec in shardings.items():
        expected = _expected(name, path)
        if expected is None:
            expected = [None] * len(spec)
        else:
            split.add("/".join(path.split("/")[-2:]))
        assert spec == expected, (path, spec, expected)
    # Every kind of kernel of the model was found and split.
    kernels = {"query/kernel", "attention_output/kernel"}
    kernels |= {"intermediate_dense/kernel", "output_dense/kernel"}
    if name != "TransformerLM":
        kernels |= {"key/kernel", "value/kernel"}
    assert kernels <= split, split


@pytest.mark.parametrize("name", ("TransformerLM", "Transformer"))
def test_model_parallel_generation_equals_single_device(report, name):
    assert report[name]["ModelParallel"]["same_tokens"] is True


def test_layout_map_rejects_bad_arguments():
    from keras_attn.distribution import layout_map

    devices = keras.distribution.list_devices()[:1]
    mesh = keras.distribution.DeviceMesh((1, 1), ("batch", "model"), devices)
    with pytest.raises(TypeError, match="device_mesh='mesh'"):
        layout_map("mesh")
    with pytest.raises(ValueError, match="model_dim='x'"):
        layout_map(mesh, model_dim="x")
    with pytest.raises(ValueError, match="batch_dim='data'"):
        layout_map(mesh, batch_dim="data")
    with pytest.raises(ValueError, match="num_key_value_heads=0"):
        layout_map(mesh, num_key_value_heads=0)
    # A 1-device model axis divides any head count.
    assert layout_map(mesh, num_heads=3)["x/query/kernel"].axes == (
        None,
        "model",
        None,
    )
