"""Ready models built from keras-attn layers."""

from keras_attn.models.rnn_seq2seq import RNNSeq2Seq
from keras_attn.models.transformer import Transformer
from keras_attn.models.transformer_lm import TransformerLM
from keras_attn.models.vision_transformer import VisionTransformer

__all__ = ["RNNSeq2Seq", "Transformer", "TransformerLM", "VisionTransformer"]
