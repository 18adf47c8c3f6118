"""Recurrent layers."""

from keras_attn.layers.recurrent.attention_rnn import AttentionRNN
from keras_attn.layers.recurrent.attention_rnn_cell import AttentionRNNCell

__all__ = ["AttentionRNN", "AttentionRNNCell"]
