"""Draws the figures of docs/guides/positions.md.

Run from the repository root on any backend:

    python docs/scripts/make_position_figures.py

Writes docs/images/positions_sine.png (the sinusoid table) and
docs/images/positions_similarity.png (dot products between positions).
"""

import os

from keras_attn import plot

IMAGES = os.path.join(os.path.dirname(__file__), os.pardir, "images")


def main():
    os.makedirs(IMAGES, exist_ok=True)
    common = dict(sequence_length=128, hidden_dim=128)
    plot.plot_position_encoding(
        kind="table",
        path=os.path.join(IMAGES, "positions_sine.png"),
        title="Sinusoidal position encoding (128 positions x 128 channels)",
        **common,
    )
    plot.plot_position_encoding(
        kind="similarity",
        path=os.path.join(IMAGES, "positions_similarity.png"),
        title="Similarity of sinusoidal encodings",
        **common,
    )


if __name__ == "__main__":
    main()
