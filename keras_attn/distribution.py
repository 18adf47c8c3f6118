"""Layout maps that shard keras-attn's layers and models over a device mesh.

`keras.distribution` (JAX backend) trains a model over several devices:
`DataParallel` replicates every variable and splits the batch,
`ModelParallel` also splits variables, following a `LayoutMap` from
variable paths to shardings. `layout_map` gives the `LayoutMap` of the
standard (Megatron-style) tensor-parallel split for every block and model
of keras-attn: attention heads and the feed-forward's hidden units are
spread over the model-parallel axis, so that each device holds a slice of
every projection and the activations meet in one reduction per sublayer.

Example:

```python
import keras
from keras_attn import distribution
from keras_attn.models import TransformerLM

# keras.distribution is JAX-only; this needs an even number of devices.
if keras.backend.backend() == "jax":
    devices = keras.distribution.list_devices()
    if len(devices) % 2 == 0:
        mesh = keras.distribution.DeviceMesh(
            (len(devices) // 2, 2), ("batch", "model"), devices
        )
        strategy = keras.distribution.ModelParallel(
            layout_map=distribution.layout_map(mesh), batch_dim_name="batch"
        )
        with strategy.scope():
            model = TransformerLM(
                vocabulary_size=64, max_sequence_length=16, hidden_dim=32
            )
            model.build((None, None))
```
"""

import keras

from keras_attn._validation import check_positive_int

__all__ = ["layout_map"]


def _axis_size(device_mesh, name):
    return device_mesh.shape[device_mesh.axis_names.index(name)]


def _check(device_mesh, model_dim, batch_dim, num_heads, num_kv_heads):
    if not isinstance(device_mesh, keras.distribution.DeviceMesh):
        raise TypeError(
            "`device_mesh` must be a `keras.distribution.DeviceMesh`. "
            f"Received: device_mesh={device_mesh!r}"
        )
    for arg, name in (("model_dim", model_dim), ("batch_dim", batch_dim)):
        if name not in device_mesh.axis_names:
            raise ValueError(
                f"`{arg}` must be an axis name of `device_mesh` "
                f"{tuple(device_mesh.axis_names)}. Received: {arg}={name!r}"
            )
    check_positive_int("num_heads", num_heads, allow_none=True)
    check_positive_int("num_key_value_heads", num_kv_heads, allow_none=True)
    size = _axis_size(device_mesh, model_dim)
    if num_heads is not None and num_heads % size:
        raise ValueError(
            "`num_heads` must be a multiple of the size of the model-parallel "
            f"axis {model_dim!r} ({size}) to split heads over it. Received: "
            f"num_heads={num_heads}"
        )


def layout_map(
    device_mesh,
    model_dim="model",
    batch_dim="batch",
    num_heads=None,
    num_key_value_heads=None,
):
    """The tensor-parallel `LayoutMap` of keras-attn's blocks and models.

    Shards, over the mesh axis `model_dim`:

    - attention `query` and `gate` kernels `(D, N, H)`: over the heads;
    - attention `key` and `value` kernels `(D, K, H)`: over the heads
      (replicated when the model axis does not divide `K`, see below);
    - the attention output kernel `(N, H, D)`: over its input heads;
    - the feed-forward's first kernels (`intermediate_dense`,
      `gate_dense`) `(D, I)`: over their output units;
    - its second kernel (`output_dense`) `(I, D)`: over its input units;
    - token and position tables (`embeddings`, `position_embeddings`)
      `(rows, D)`: over the model width; an untied output projection
      (`reverse_embeddings`) `(D, V)` likewise;
    - the relative position bias table (`embeddings`, `(buckets, N)`):
      over the heads.

    The biases of the split outputs are split with them; every other
    variable (normalizations, output biases, the classifier, the ViT patch
    kernel and class token) is replicated. The paths match keras-attn's
    sublayer names (`.../query/kernel`, `.../feedforward/output_dense/kernel`)
    wherever the layers sit, so one map serves `MultiHeadAttention`, the
    blocks, `TransformerLM`, `Transformer` and `VisionTransformer`, and
    models of your own built from them.

    Grouped-query attention: with `num_key_value_heads=K` that the size of
    the model axis does not divide (for example `K=2` key/value heads on 4
    devices), the key and value kernels are replicated on every device
    instead, as Megatron-LM and MaxText do; each device then computes all
    `K` key/value heads and its own slice of the query heads.

    Batch inputs are split over `batch_dim` by
    `keras.distribution.ModelParallel(layout_map=..., batch_dim_name=...)`.
    `keras.distribution` runs on the JAX backend only.

    Args:
        device_mesh: a `keras.distribution.DeviceMesh` with the axes
            `batch_dim` and `model_dim`.
        model_dim: str, the mesh axis the variables are split over.
            Defaults to `"model"`.
        batch_dim: str, the mesh axis of the data. Defaults to `"batch"`.
        num_heads: optional int, the query heads of the model's attention;
            when given, checked to be a multiple of the model axis size.
        num_key_value_heads: optional int, the key/value heads (grouped
            query attention). Defaults to `num_heads`: split like queries.

    Returns:
        A `keras.distribution.LayoutMap` for `device_mesh`.

    Example:

    ```python
    import keras
    from keras_attn.distribution import layout_map

    if keras.backend.backend() == "jax":  # keras.distribution is JAX-only
        devices = keras.distribution.list_devices()
        mesh = keras.distribution.DeviceMesh(
            (1, len(devices)), ("batch", "model"), devices
        )
        layouts = layout_map(mesh)
        # (None, "model", None): the query kernel split over heads.
        layouts["block_0/self_attention/query/kernel"].axes
    ```

    References:
        - Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter
          Language Models Using Model Parallelism", 2019.
        - Xu et al., "GSPMD: General and Scalable Parallelization for ML
          Computation Graphs", 2021.
    """
    _check(device_mesh, model_dim, batch_dim, num_heads, num_key_value_heads)
    model = model_dim
    size = _axis_size(device_mesh, model_dim)
    split_kv = num_key_value_heads is None or num_key_value_heads % size == 0
    kv = model if split_kv else None

    layouts = keras.distribution.LayoutMap(device_mesh)
    # Paths end with `<sublayer>/<variable>`; `(?:.*/)?` lets them sit at
    # any depth. Patterns are anchored at a `/`, so no two of them match
    # the same path (LayoutMap refuses ambiguous matches).
    rules = {
        # Attention: (D, N, H) projections split over heads.
        "query/kernel": (None, model, None),
        "query/bias": (model, None),
        "gate/kernel": (None, model, None),
        "gate/bias": (model, None),
        "key/kernel": (None, kv, None),
        "key/bias": (kv, None),
        "value/kernel": (None, kv, None),
        "value/bias": (kv, None),
        # (N, H, D): split over its input heads; the partial sums of the
        # devices meet in one all-reduce.
        "attention_output/kernel": (model, None, None),
        # Feed-forward: first kernels over their outputs, the second over
        # its input.
        "intermediate_dense/kernel": (None, model),
        "intermediate_dense/bias": (model,),
        "gate_dense/kernel": (None, model),
        "gate_dense/bias": (model,),
        "output_dense/kernel": (model, None),
        # Embedding tables over the model width.
        "embeddings": (None, model),
        "position_embeddings": (None, model),
        "reverse_embeddings": (model, None),
    }
    for path, axes in rules.items():
        layouts[f"(?:.*/)?{path}"] = axes
    return layouts
