"""Keras layers of keras-attn, re-exported from their topic packages.

Each topic package lists its public layers in `__all__`.
"""

from keras_attn.layers.attention import *  # noqa: F403
from keras_attn.layers.embeddings import *  # noqa: F403
from keras_attn.layers.recurrent import *  # noqa: F403
from keras_attn.layers.text import *  # noqa: F403
from keras_attn.layers.transformer import *  # noqa: F403
from keras_attn.layers.vision import *  # noqa: F403
