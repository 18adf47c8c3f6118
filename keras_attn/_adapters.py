"""LoRA and quantization for keras-attn's layers and models (private).

Keras implements both on its own `Dense`, `EinsumDense`, `Embedding` and
`ReversibleEmbedding` layers (`enable_lora`, `quantize`), and every
projection of keras-attn is one of those. Two things do not reach through
a custom layer on their own, and `AdapterMixin` supplies them:

- Walking the sublayers: a block is a `keras.layers.Layer`, which has no
  `quantize` of its own, and nothing in Keras enables LoRA on the query and
  value projections inside an attention layer.
- Saving: keras-attn's layers create their sublayers in `build()` from
  their own config, so the sublayers' quantized dtype policies and LoRA
  ranks would be lost on reload. The config records them instead: the
  quantized policies in a `keras.dtype_policies.DTypePolicyMap` under
  `"dtype"` (as keras-hub's backbones do), the LoRA settings under
  `"lora"`; the layer re-enables LoRA once its sublayers are built again.
"""

import keras

from keras_attn import _compat
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number

# keras-hub's default: LoRA on the query and value projections.
DEFAULT_LORA_TARGETS = ("query", "value")
_LORA_LAYERS = (keras.layers.Dense, keras.layers.EinsumDense)


def _sublayers(layer):
    # Keras' own walk over nested layers (what Model.quantize uses).
    return list(layer._flatten_layers(include_self=False))


def _is_leaf(layer):
    return len(list(layer._flatten_layers())) == 1


def _can_quantize(layer):
    # Keras' quantizable layers override `Layer.quantize`.
    return type(layer).quantize is not keras.layers.Layer.quantize


def quantized_policy_map(layer, default):
    """A `DTypePolicyMap` of the quantized sublayers, or None if none are.

    `default` is the policy of every other sublayer (the layer's own).
    """
    quantized = {
        sub.path: sub.dtype_policy
        for sub in _sublayers(layer)
        if sub.quantization_mode is not None and sub.path
    }
    if not quantized:
        return None
    if isinstance(default, keras.dtype_policies.DTypePolicyMap):
        default = default.default_policy
    policy_map = keras.dtype_policies.DTypePolicyMap(default)
    for path, sub_policy in quantized.items():
        policy_map[path] = sub_policy
    return policy_map


def _check_lora_args(rank, lora_alpha, target_names):
    check_positive_int("rank", rank)
    check_positive_number("lora_alpha", lora_alpha, allow_none=True)
    if isinstance(target_names, str) or not all(
        isinstance(name, str) for name in target_names
    ):
        raise ValueError(
            "`target_names` must be a list of sublayer names. Received: "
            f"target_names={target_names!r}"
        )


class AdapterMixin:
    """`enable_lora` and `quantize` for a layer or model of keras-attn.

    Put before the Keras base class. A class whose `build()` creates its
    sublayers calls `self._restore_lora()` at the end of it.
    """

    # The sublayers `enable_lora(rank)` adapts when no names are given.
    default_lora_target_names = DEFAULT_LORA_TARGETS

    def enable_lora(self, rank, lora_alpha=None, target_names=None):
        """Freezes the weights and adds LoRA adapters to some projections.

        Every weight of the layer (or model) stops being trainable, biases
        and normalizations included, and each `Dense` or `EinsumDense`
        sublayer named in `target_names` gets a trainable low-rank update
        of its kernel, `kernel + (lora_alpha / rank) * A @ B` with `B`
        zero at first (Keras' `enable_lora`), so the outputs are unchanged
        until training moves `B`. Recompile a model after enabling.

        The setting is saved with the layer: a `.keras` file reloads with
        LoRA enabled on the same sublayers. Keras saves each adapted
        kernel with its adapter merged in (`kernel + alpha/rank * A @ B`),
        so the reloaded layer has the same outputs and fresh zero
        adapters on top of the merged kernels.

        Args:
            rank: int, the rank of the adapters.
            lora_alpha: positive number, the scale numerator. Defaults to
                `rank` (a scale of 1).
            target_names: list of sublayer names to adapt: any of
                `"query"`, `"key"`, `"value"`, `"attention_output"` (the
                attention projections), `"intermediate_dense"`,
                `"gate_dense"`, `"output_dense"` (the feed-forward).
                Defaults to `default_lora_target_names` (`("query",
                "value")`, as keras-hub; the three feed-forward layers on
                `FeedForward`).

        Example:

        ```python
        import numpy as np
        import keras_attn

        block = keras_attn.layers.TransformerEncoder(64, num_heads=4)
        x = np.random.rand(2, 5, 32).astype("float32")
        block(x)  # build
        block.enable_lora(rank=4)
        [w.path for w in block.trainable_weights]
        # [".../self_attention_layer/query/lora_kernel_a", ...]: 4 weights
        ```
        """
        if target_names is None:
            target_names = self.default_lora_target_names
        target_names = tuple(target_names)
        _check_lora_args(rank, lora_alpha, target_names)
        if not self.built:
            raise ValueError(
                "`enable_lora` needs a built layer: call it on inputs or "
                f"`build()` it first. Received: {self.name} (not built)"
            )
        if getattr(self, "_lora", None):
            raise ValueError(
                f"LoRA is already enabled on {self.name} with "
                f"{self._lora}. Received: rank={rank}"
            )
        spec = {
            "rank": rank,
            "lora_alpha": lora_alpha if lora_alpha is not None else rank,
            "target_names": list(target_names),
        }
        self._apply_lora(spec)

    def _apply_lora(self, spec):
        targets = [
            sub
            for sub in _sublayers(self)
            if sub.name in spec["target_names"]
            and isinstance(sub, _LORA_LAYERS)
        ]
        if not targets:
            raise ValueError(
                f"{self.name} has no Dense or EinsumDense sublayer named "
                f"any of `target_names`. Received: "
                f"target_names={spec['target_names']}"
            )
        # Freeze variable by variable, not `layer.trainable = False`: a
        # non-trainable layer reports no trainable weights at all, and the
        # adapters live inside the frozen layers.
        for variable in self.weights:
            variable.trainable = False
        for sub in targets:
            sub.enable_lora(spec["rank"], lora_alpha=spec["lora_alpha"])
        self._lora = spec

    def _restore_lora(self):
        """Re-enables a LoRA setting read from the config (after build)."""
        spec = getattr(self, "_pending_lora", None)
        if spec:
            self._pending_lora = None
            self._apply_lora(spec)

    def quantize(self, mode=None, type_check=True, config=None, **kwargs):
        """Quantizes the weights of every quantizable sublayer.

        The projections (`Dense`, `EinsumDense`) and token embeddings are
        quantized by Keras' own `quantize`; normalization layers, position
        tables and bias tables keep their dtype. On a model this is
        `keras.Model.quantize` (which warns about each sublayer it cannot
        quantize); on a layer or block the same walk, without the
        warnings. The quantized layer or model saves and reloads
        (`.keras`) with its quantized weights.

        Args:
            mode: `"int8"`, `"float8"` or another mode of
                `keras.Model.quantize`.
            type_check: bool, passed to each sublayer's `quantize`.
            config: optional `keras.quantizers.QuantizationConfig`.
            **kwargs: other arguments of `keras.Model.quantize`
                (`filters`), models only.
        """
        if isinstance(self, keras.Model):
            return super().quantize(
                mode, config=config, type_check=type_check, **kwargs
            )
        if kwargs:
            raise ValueError(
                f"Unrecognized arguments of `quantize`. Received: {kwargs}"
            )
        for sub in _sublayers(self):
            if _is_leaf(sub) and _can_quantize(sub):
                sub.quantize(mode, type_check=type_check, config=config)
        _compat.retrack_variables(self)

    def get_config(self):
        return self._with_adapters(super().get_config())

    def _with_adapters(self, config):
        """`config` with the quantized policies and the LoRA setting."""
        # The policy the layer was made with (for a functional model, the
        # `dtype` of its config, not the Model's own).
        default = keras.dtype_policies.get(config.get("dtype"))
        policy_map = quantized_policy_map(self, default)
        if policy_map is not None:
            config["dtype"] = keras.dtype_policies.serialize(policy_map)
        if getattr(self, "_lora", None):
            config["lora"] = dict(self._lora)
        return config

    @classmethod
    def from_config(cls, config, **kwargs):
        config = dict(config)
        lora = config.pop("lora", None)
        layer = super().from_config(config, **kwargs)
        layer._pending_lora = lora
        if layer.built:
            # Functional models are built by their constructor.
            layer._restore_lora()
        return layer
