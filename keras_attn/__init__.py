"""keras-attn: attention and transformer layers for Keras 3.

Runs unchanged on the JAX, TensorFlow and PyTorch backends.

`keras_attn.plot` (needs matplotlib) and `keras_attn.interpret` load on
first use, so `import keras_attn` does not import matplotlib.
"""

import importlib

from keras_attn import distribution
from keras_attn import generation
from keras_attn import layers
from keras_attn import losses
from keras_attn import models
from keras_attn import ops

__version__ = "0.1.0.dev0"

_LAZY_SUBMODULES = ("interpret", "plot")

__all__ = [
    "distribution",
    "generation",
    "interpret",
    "layers",
    "losses",
    "models",
    "ops",
    "plot",
    "__version__",
]


def __getattr__(name):
    # PEP 562: `keras_attn.plot` imports matplotlib only when first used.
    if name in _LAZY_SUBMODULES:
        module = importlib.import_module(f"keras_attn.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'keras_attn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
