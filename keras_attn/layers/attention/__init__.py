"""Attention layers."""

from keras_attn.layers.attention.bahdanau_attention import BahdanauAttention
from keras_attn.layers.attention.bahdanau_monotonic_attention import (
    BahdanauMonotonicAttention,
)
from keras_attn.layers.attention.location_sensitive_attention import (
    LocationSensitiveAttention,
)
from keras_attn.layers.attention.luong_attention import LuongAttention
from keras_attn.layers.attention.luong_monotonic_attention import (
    LuongMonotonicAttention,
)
from keras_attn.layers.attention.multi_head_attention import MultiHeadAttention

__all__ = [
    "BahdanauAttention",
    "BahdanauMonotonicAttention",
    "LocationSensitiveAttention",
    "LuongAttention",
    "LuongMonotonicAttention",
    "MultiHeadAttention",
]
