"""Text processing layers: a tokenizer that is saved with the model."""

from keras_attn.layers.text.tokenizer import Tokenizer

__all__ = ["Tokenizer"]
