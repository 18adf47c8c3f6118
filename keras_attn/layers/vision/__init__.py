"""Vision layers."""

from keras_attn.layers.vision.patch_embedding import PatchEmbedding

__all__ = ["PatchEmbedding"]
