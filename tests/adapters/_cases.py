"""Tiny layers and models for the LoRA and quantization tests.

Each case gives the object that gets `enable_lora` / `quantize` (a layer or
a model), a Keras model around it (the model itself, or a functional model
calling the layer) to train and save, inputs and targets, and the names of
the projections that LoRA adapts by default, written out here.
"""

import keras
import numpy as np

from keras_attn import layers
from keras_attn import models

B, T, S, D = 2, 6, 5, 16
rng = np.random.RandomState(0)
SEQ = rng.normal(size=(B, T, D)).astype("float32")
MEMORY = rng.normal(size=(B, S, D)).astype("float32")
IDS = rng.randint(1, 24, (B, T))
SOURCE = rng.randint(1, 24, (B, S))
IMAGES = rng.uniform(size=(B, 8, 8, 3)).astype("float32")


def _wrap(layer, *inputs):
    """A functional model calling `layer` on `inputs` (arrays)."""
    symbolic = [keras.Input(x.shape[1:]) for x in inputs]
    if isinstance(layer, layers.MultiHeadAttention):
        out = layer(symbolic[0], symbolic[0])
    else:
        out = layer(*symbolic)
    return keras.Model(symbolic[0] if len(symbolic) == 1 else symbolic, out)


def mha():
    layer = layers.MultiHeadAttention(num_heads=4, key_dim=4)
    return layer, _wrap(layer, SEQ), [SEQ], SEQ, ["query", "value"]


def feed_forward():
    layer = layers.FeedForward(32, gated=True, activation="silu")
    return (
        layer,
        _wrap(layer, SEQ),
        [SEQ],
        SEQ,
        ["intermediate_dense", "gate_dense", "output_dense"],
    )


def encoder():
    layer = layers.TransformerEncoder(32, num_heads=4, num_key_value_heads=2)
    targets = ["self_attention_layer/query", "self_attention_layer/value"]
    return layer, _wrap(layer, SEQ), [SEQ], SEQ, targets


def decoder():
    layer = layers.TransformerDecoder(32, num_heads=4)
    targets = [
        f"{attention}/{projection}"
        for attention in ("self_attention", "cross_attention")
        for projection in ("query", "value")
    ]
    return layer, _wrap(layer, SEQ, MEMORY), [SEQ, MEMORY], SEQ, targets


def _ids_targets(ids):
    return np.roll(ids, -1, axis=1)


def lm():
    model = models.TransformerLM(
        vocabulary_size=24,
        max_sequence_length=12,
        num_layers=1,
        num_heads=4,
        hidden_dim=D,
        intermediate_dim=32,
        num_key_value_heads=2,
    )
    model.build((None, None))
    targets = ["block_0/self_attention/query", "block_0/self_attention/value"]
    return model, model, [IDS], _ids_targets(IDS), targets


def seq2seq():
    model = models.Transformer(
        vocabulary_size=24,
        max_sequence_length=12,
        num_layers=1,
        num_heads=4,
        hidden_dim=D,
        intermediate_dim=32,
    )
    model.build({"encoder_token_ids": (None, None), "token_ids": (None, None)})
    inputs = {"encoder_token_ids": SOURCE, "token_ids": IDS}
    targets = [
        f"{block}/{attention}/{projection}"
        for block, attention in (
            ("encoder_block_0", "self_attention_layer"),
            ("decoder_block_0", "self_attention"),
            ("decoder_block_0", "cross_attention"),
        )
        for projection in ("query", "value")
    ]
    return model, model, [inputs], _ids_targets(IDS), targets


def vit():
    model = models.VisionTransformer(
        image_size=8,
        patch_size=4,
        num_layers=1,
        num_heads=4,
        hidden_dim=D,
        intermediate_dim=32,
        num_classes=5,
    )
    targets = [
        "transformer_layer_0/self_attention_layer/query",
        "transformer_layer_0/self_attention_layer/value",
    ]
    return model, model, [IMAGES], np.array([1, 3]), targets


CASES = {
    "MultiHeadAttention": mha,
    "FeedForward": feed_forward,
    "TransformerEncoder": encoder,
    "TransformerDecoder": decoder,
    "TransformerLM": lm,
    "Transformer": seq2seq,
    "VisionTransformer": vit,
}


def loss_for(name):
    if name in ("TransformerLM", "Transformer", "VisionTransformer"):
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    return keras.losses.MeanSquaredError()


def model_inputs(inputs):
    """What a Keras model is called (or trained) on."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


def predict(model, inputs):
    """The model's inference outputs as one compiled program.

    Compiled, not eager: on JAX an eager call compiles each op of the
    model separately, several times the cost. Rebuilt on every call, since
    the weights may have been quantized or adapted since the last one
    (a traced function would keep the old ones).
    """
    model.make_predict_function(force=True)
    out = model.predict(model_inputs(inputs), verbose=0)
    return np.asarray(keras.ops.convert_to_numpy(out), dtype="float32")
