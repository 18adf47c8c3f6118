"""Recurrent layers."""

from keras_attn.layers.recurrent.attention_rnn import AttentionRNN

__all__ = ["AttentionRNN"]
