"""Ready models built from keras-attn layers."""

from keras_attn.models.rnn_seq2seq import RNNSeq2Seq

__all__ = ["RNNSeq2Seq"]
