"""Draws the figures of docs/guides/vision.md from a ViT trained on digits.

Run from the repository root on any backend (about a minute on a laptop
CPU with TensorFlow or JAX; needs scikit-learn for the data set):

    python docs/scripts/make_vision_figures.py

Trains a small Vision Transformer on scikit-learn's 8 x 8 digits, upsampled
to 32 x 32 so that 4 x 4 patches make an 8 x 8 grid of tokens, then writes

- docs/images/vit_filters.png: the top principal components of the
  patch-embedding filters;
- docs/images/vit_position_similarity.png: the cosine similarity of each
  patch's learned position embedding with all others;
- docs/images/vit_rollout.png: attention rollout maps over test digits.
"""

import os

import keras
import numpy as np
from keras import ops
from sklearn.datasets import load_digits

from keras_attn import plot
from keras_attn.interpret import attention_rollout
from keras_attn.models import VisionTransformer

IMAGES = os.path.join(os.path.dirname(__file__), os.pardir, "images")
SIZE = 32
EPOCHS = 30


def load_data():
    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]  # (N, 8, 8, 1)
    images = ops.convert_to_numpy(
        ops.image.resize(images, (SIZE, SIZE), interpolation="bilinear")
    )
    order = np.random.default_rng(0).permutation(len(images))
    return images[order], data.target[order]


def main():
    os.makedirs(IMAGES, exist_ok=True)
    keras.utils.set_random_seed(0)
    images, labels = load_data()
    train, test = slice(0, 1500), slice(1500, None)
    model = VisionTransformer(
        image_size=SIZE,
        patch_size=4,
        num_layers=4,
        num_heads=4,
        hidden_dim=64,
        intermediate_dim=128,
        num_classes=10,
        num_channels=1,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(2e-3, weight_decay=0.05),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # Random shifts of up to 4 pixels: the model must learn where patches
    # are relative to each other, which shapes the position embeddings.
    augment = keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant")
    for _ in range(EPOCHS):
        shifted = ops.convert_to_numpy(augment(images[train], training=True))
        model.fit(shifted, labels[train], batch_size=64, epochs=1, verbose=0)
    _, accuracy = model.evaluate(images[test], labels[test], verbose=0)
    print(f"test accuracy: {accuracy:.3f}")

    plot.plot_patch_filters(
        model.patch_embedding,
        num_filters=28,
        path=os.path.join(IMAGES, "vit_filters.png"),
        title="Patch-embedding filters: top principal components",
    )
    plot.plot_position_similarity(
        model.patch_embedding,
        path=os.path.join(IMAGES, "vit_position_similarity.png"),
        title="Position embedding similarity",
    )
    examples = images[test][:8]
    scores = model.attention_scores(examples)
    rollout = attention_rollout(scores, grid_size=model.grid_size)
    plot.plot_attention_rollout(
        examples,
        rollout,
        path=os.path.join(IMAGES, "vit_rollout.png"),
        title="Attention rollout: where the class token looks",
    )


if __name__ == "__main__":
    main()
