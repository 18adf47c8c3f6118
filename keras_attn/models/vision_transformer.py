"""The Vision Transformer (ViT): an image classifier made of patch tokens."""

import keras
from keras import ops

from keras_attn._adapters import AdapterMixin
from keras_attn._validation import check_choice
from keras_attn._validation import check_heads_divide
from keras_attn._validation import check_pair
from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_ints
from keras_attn._validation import check_rate
from keras_attn.layers.embeddings.rotary_embedding_2d import RotaryEmbedding2D
from keras_attn.layers.transformer.transformer_encoder import TransformerEncoder
from keras_attn.layers.vision.patch_embedding import PatchEmbedding

POOLINGS = ("cls", "mean")
POSITIONS = ("learned", "sine", "rotary_2d")


@keras.saving.register_keras_serializable(package="keras_attn")
class VisionTransformer(AdapterMixin, keras.Model):
    """The Vision Transformer (ViT) image classifier.

    The image is cut into `patch_size` patches, each patch linearly embedded
    (`keras_attn.layers.PatchEmbedding`, with a class token for
    `pooling="cls"` and learned positions), and the sequence of patch
    tokens runs through `num_layers` pre-norm transformer encoder blocks
    (`keras_attn.layers.TransformerEncoder` with `normalize_first=True` and
    a GELU feed-forward of `intermediate_dim` units). A final layer norm is
    followed by pooling (the class token, or the mean of all tokens) and a
    dense classification head returning logits. With `num_classes=None` the
    model is a feature extractor returning the pooled, normalized features
    `(B, hidden_dim)`.

    A functional model: `summary()`, `fit()`, `.keras` saving and
    `get_config()` work as for any Keras model. `attention_scores(images)`
    returns each block's attention weights, for attention rollout
    (`keras_attn.interpret.attention_rollout`). `from_architecture` builds
    the ViT-Ti/S/B/L architectures of `ARCHITECTURES` (untrained: no
    weights are downloaded).

    Args:
        image_size: int or pair of ints `(height, width)`.
        patch_size: int or pair of ints; must divide `image_size`.
        num_layers: int, the number of encoder blocks.
        num_heads: int, the attention heads per block.
        hidden_dim: int, the token size (divisible by `num_heads`).
        intermediate_dim: int, the hidden units of each block's
            feed-forward network (`mlp_dim` is accepted as an alias).
        num_classes: int, the number of logits, or `None` (the default)
            for a headless feature extractor.
        dropout: float, the dropout rate after the embedding and inside the
            blocks. Defaults to `0.0`.
        pooling: `"cls"` (the class token's final state) or `"mean"` (the
            mean of the patch tokens, no class token). Defaults to `"cls"`.
        num_channels: int, the image channels. Defaults to `3`.
        position: `"learned"` or `"sine"` patch positions added to the
            tokens (see `PatchEmbedding`), or `"rotary_2d"`: no added
            positions, each block rotating queries and keys by the patch's
            (row, column) (`keras_attn.layers.RotaryEmbedding2D`, the class
            token unrotated; `hidden_dim / num_heads` divisible by 4).
            Defaults to `"learned"`.
        layer_norm_epsilon: float. Defaults to `1e-6`, as in ViT.
        classifier_activation: activation of the head (`None` for logits,
            `"softmax"` for probabilities). Defaults to `None`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        dtype: the dtype policy of every layer (for example
            `"mixed_bfloat16"`). Defaults to the global policy.
        mlp_dim: int, an alias of `intermediate_dim` (ViT's name).
        **kwargs: other arguments of `keras.Model`, such as `name`.

    Call arguments:
        images: `(B, height, width, num_channels)` (channels first with
            `data_format="channels_first"`).
        training: bool, whether dropout is active.

    Returns:
        Logits `(B, num_classes)`, or features `(B, hidden_dim)` when
        `num_classes` is `None`.

    Example:

    ```python
    import keras
    import keras_attn

    model = keras_attn.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        num_classes=10,
    )
    images = keras.random.uniform((4, 32, 32, 3))
    logits = model(images)  # (4, 10)
    scores = model.attention_scores(images)  # 2 x (4, 2, 17, 17)

    # ViT-S/16 architecture (untrained) for 100 classes.
    vit_s = keras_attn.models.VisionTransformer.from_architecture(
        "vit_small", image_size=224, num_classes=100
    )
    ```

    References:
        - An Image is Worth 16x16 Words: Transformers for Image Recognition
          at Scale (Dosovitskiy et al., 2021).
        - Training data-efficient image transformers & distillation through
          attention (Touvron et al., 2021).
    """

    #: The standard sizes `from_architecture` builds, untrained (no weights
    #: are downloaded): ViT-B and ViT-L of Dosovitskiy et al. and ViT-Ti
    #: and ViT-S of DeiT, all with 16 x 16 patches.
    ARCHITECTURES = {
        "vit_tiny": dict(
            patch_size=16,
            num_layers=12,
            num_heads=3,
            hidden_dim=192,
            intermediate_dim=768,
        ),
        "vit_small": dict(
            patch_size=16,
            num_layers=12,
            num_heads=6,
            hidden_dim=384,
            intermediate_dim=1536,
        ),
        "vit_base": dict(
            patch_size=16,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            intermediate_dim=3072,
        ),
        "vit_large": dict(
            patch_size=16,
            num_layers=24,
            num_heads=16,
            hidden_dim=1024,
            intermediate_dim=4096,
        ),
    }

    def __init__(
        self,
        image_size,
        patch_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim=None,
        num_classes=None,
        dropout=0.0,
        pooling="cls",
        num_channels=3,
        position="learned",
        layer_norm_epsilon=1e-6,
        classifier_activation=None,
        data_format=None,
        dtype=None,
        mlp_dim=None,
        **kwargs,
    ):
        # Checks before any layer or backend op.
        intermediate_dim = _intermediate_dim(intermediate_dim, mlp_dim)
        image_size = check_pair("image_size", image_size)
        patch_size = check_pair("patch_size", patch_size)
        if image_size[0] % patch_size[0] or image_size[1] % patch_size[1]:
            raise ValueError(
                f"`patch_size` must divide `image_size`. Received: "
                f"patch_size={patch_size}, image_size={image_size}"
            )
        check_positive_ints(
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            num_channels=num_channels,
        )
        check_positive_int("num_classes", num_classes, allow_none=True)
        check_heads_divide(hidden_dim, num_heads)
        check_choice("pooling", pooling, POOLINGS)
        check_rate("dropout", dropout)
        check_choice("position", position, POSITIONS)
        if position == "rotary_2d" and (hidden_dim // num_heads) % 4:
            raise ValueError(
                "`position='rotary_2d'` needs a head size `hidden_dim / "
                "num_heads` divisible by 4. Received: hidden_dim="
                f"{hidden_dim}, num_heads={num_heads}"
            )
        data_format = data_format or keras.config.image_data_format()
        grid = (
            image_size[0] // patch_size[0],
            image_size[1] // patch_size[1],
        )
        block_position = None
        if position == "rotary_2d":
            block_position = RotaryEmbedding2D(
                grid_size=grid, num_prefix_tokens=int(pooling == "cls")
            )

        # === Layers ===
        patch_embedding = PatchEmbedding(
            patch_size,
            hidden_dim,
            use_class_token=pooling == "cls",
            position=None if position == "rotary_2d" else position,
            data_format=data_format,
            dtype=dtype,
            name="patch_embedding",
        )
        embedding_dropout = keras.layers.Dropout(
            dropout, dtype=dtype, name="embedding_dropout"
        )
        encoder_layers = [
            TransformerEncoder(
                intermediate_dim=intermediate_dim,
                num_heads=num_heads,
                dropout=dropout,
                activation="gelu",
                layer_norm_epsilon=layer_norm_epsilon,
                normalize_first=True,
                position=block_position,
                dtype=dtype,
                name=f"transformer_layer_{i}",
            )
            for i in range(num_layers)
        ]
        final_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="layer_norm"
        )
        head = None
        if num_classes is not None:
            head = keras.layers.Dense(
                num_classes,
                activation=classifier_activation,
                dtype=dtype,
                name="classifier",
            )

        # === Functional model ===
        if data_format == "channels_last":
            shape = (*image_size, num_channels)
        else:
            shape = (num_channels, *image_size)
        images = keras.Input(shape=shape, name="images")
        x = patch_embedding(images)  # (B, [1 +] N, D)
        x = embedding_dropout(x)
        for layer in encoder_layers:
            x = layer(x)
        x = final_norm(x)
        if pooling == "cls":
            x = x[:, 0, :]  # (B, D): the class token.
        else:
            x = ops.mean(x, axis=1)  # (B, D)
        outputs = x if head is None else head(x)
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        # === Config ===
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_classes = num_classes
        self.dropout = dropout
        self.pooling = pooling
        self.num_channels = num_channels
        self.position = position
        self.layer_norm_epsilon = layer_norm_epsilon
        self.classifier_activation = keras.activations.get(
            classifier_activation
        )
        self.data_format = data_format
        self._dtype_arg = dtype
        self.patch_embedding = patch_embedding
        self.embedding_dropout = embedding_dropout
        self.encoder_layers = encoder_layers
        self.final_norm = final_norm
        self.head = head

    @property
    def mlp_dim(self):
        """The alias of `intermediate_dim` (ViT's name)."""
        return self.intermediate_dim

    @property
    def grid_size(self):
        """The patch grid `(rows, columns)`."""
        return (
            self.image_size[0] // self.patch_size[0],
            self.image_size[1] // self.patch_size[1],
        )

    def attention_scores(self, images):
        """The attention weights of every encoder block, in inference mode.

        Args:
            images: a batch of images, as for `call`.

        Returns:
            A list of `num_layers` tensors `(B, num_heads, T, T)`, `T` the
            number of tokens (the class token first with `pooling="cls"`).
        """
        x = self.patch_embedding(images)
        x = self.embedding_dropout(x, training=False)
        scores = []
        for layer in self.encoder_layers:
            x, layer_scores = layer(
                x, training=False, return_attention_scores=True
            )
            scores.append(layer_scores)
        return scores

    @classmethod
    def from_architecture(
        cls, name, image_size=224, num_classes=None, **kwargs
    ):
        """An untrained ViT of a standard size (no weights are loaded).

        Args:
            name: `"vit_tiny"`, `"vit_small"`, `"vit_base"` or
                `"vit_large"`, a key of `VisionTransformer.ARCHITECTURES`.
            image_size: int or pair of ints. Defaults to `224`.
            num_classes: int or `None` (headless). Defaults to `None`.
            **kwargs: other constructor arguments, overriding the
                architecture's (for example `patch_size=32` for ViT-B/32).

        Returns:
            A `VisionTransformer` with fresh weights.
        """
        check_choice("name", name, sorted(cls.ARCHITECTURES))
        config = {**cls.ARCHITECTURES[name], **kwargs}
        return cls(image_size=image_size, num_classes=num_classes, **config)

    def get_config(self):
        dtype = self._dtype_arg
        if isinstance(dtype, keras.DTypePolicy):
            dtype = keras.dtype_policies.serialize(dtype)
        return self._with_adapters(
            {
                "name": self.name,
                "trainable": self.trainable,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_classes": self.num_classes,
                "dropout": self.dropout,
                "pooling": self.pooling,
                "num_channels": self.num_channels,
                "position": self.position,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "classifier_activation": keras.activations.serialize(
                    self.classifier_activation
                ),
                "data_format": self.data_format,
                "dtype": dtype,
            }
        )

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        # AdapterMixin's: re-enables LoRA after the constructor's build.
        return super().from_config(config)


def _intermediate_dim(intermediate_dim, mlp_dim):
    """`intermediate_dim`, or its alias `mlp_dim`; one of them required."""
    if mlp_dim is not None and intermediate_dim not in (None, mlp_dim):
        raise ValueError(
            "`mlp_dim` is an alias of `intermediate_dim`: give one. Received: "
            f"intermediate_dim={intermediate_dim!r}, mlp_dim={mlp_dim!r}"
        )
    value = mlp_dim if intermediate_dim is None else intermediate_dim
    if value is None:
        raise ValueError(
            "`intermediate_dim` (or its alias `mlp_dim`) is required. "
            "Received: intermediate_dim=None"
        )
    return check_positive_int("intermediate_dim", value)
