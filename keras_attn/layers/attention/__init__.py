"""Attention layers."""

from keras_attn.layers.attention.multi_head_attention import MultiHeadAttention

__all__ = ["MultiHeadAttention"]
