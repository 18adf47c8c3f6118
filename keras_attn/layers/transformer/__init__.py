"""Transformer layers: the feed-forward network, encoder and decoder blocks."""

from keras_attn.layers.transformer.feed_forward import FeedForward
from keras_attn.layers.transformer.transformer_decoder import TransformerDecoder
from keras_attn.layers.transformer.transformer_encoder import TransformerEncoder

__all__ = ["FeedForward", "TransformerDecoder", "TransformerEncoder"]
