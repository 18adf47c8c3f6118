"""keras-attn: attention and transformer layers for Keras 3.

Runs unchanged on the JAX, TensorFlow and PyTorch backends.
"""

from keras_attn import generation
from keras_attn import layers
from keras_attn import models
from keras_attn import ops

__version__ = "0.1.0.dev0"

__all__ = ["generation", "layers", "models", "ops", "__version__"]
