"""Position encodings and embeddings: sinusoid, learned, rotary, ALiBi, T5."""

from keras_attn.layers.embeddings.alibi_bias import AlibiBias
from keras_attn.layers.embeddings.position_embedding import PositionEmbedding
from keras_attn.layers.embeddings.relative_position_bias import (
    RelativePositionBias,
)
from keras_attn.layers.embeddings.rotary_embedding import RotaryEmbedding
from keras_attn.layers.embeddings.rotary_embedding_2d import RotaryEmbedding2D
from keras_attn.layers.embeddings.sine_position_encoding import (
    SinePositionEncoding,
)
from keras_attn.layers.embeddings.token_and_position_embedding import (
    TokenAndPositionEmbedding,
)

__all__ = [
    "AlibiBias",
    "PositionEmbedding",
    "RelativePositionBias",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "SinePositionEncoding",
    "TokenAndPositionEmbedding",
]
