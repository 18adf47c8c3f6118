import math
import numbers

import keras
from keras import ops

from keras_attn._validation import check_positive_int
from keras_attn._validation import check_positive_number
from keras_attn.ops import positions as position_ops

_POSITIONS = ("learned", "sine", None)
_INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


def _check_patch_size(patch_size):
    """`patch_size` as a tuple of 1 or 2 positive ints (an int gives 1)."""
    sizes = (
        (patch_size,)
        if isinstance(patch_size, numbers.Integral)
        else patch_size
    )
    if (
        not isinstance(sizes, (tuple, list))
        or len(sizes) not in (1, 2)
        or not all(
            isinstance(s, numbers.Integral)
            and not isinstance(s, bool)
            and s > 0
            for s in sizes
        )
    ):
        raise ValueError(
            "`patch_size` must be a positive integer or a tuple of one or "
            f"two positive integers. Received: patch_size={patch_size!r}"
        )
    return tuple(int(s) for s in sizes)


def resize_position_grid(table, old_grid, new_grid, interpolation="bilinear"):
    """Resizes a table of patch positions to another patch grid.

    The rows of `table` are the positions of a row-major grid of patches
    (`old_grid`, one or two sizes). The table is reshaped to an image of the
    grid with one channel per embedding dimension, resized with
    `keras.ops.image.resize` (half-pixel centers, no antialiasing) and
    flattened back. The math runs in float32.

    Args:
        table: tensor `(prod(old_grid), D)`.
        old_grid: tuple of one or two ints, the grid of `table`.
        new_grid: tuple of one or two ints, the grid to resize to.
        interpolation: `"bilinear"`, `"bicubic"` or `"nearest"`. Bicubic uses
            the backend's cubic kernel (`a = -0.5` on JAX and TensorFlow,
            `-0.75` on PyTorch), so it differs slightly between backends.

    Returns:
        A float32 tensor `(prod(new_grid), D)`.
    """
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(
            "`interpolation` must be one of 'bilinear', 'bicubic', "
            f"'nearest'. Received: interpolation={interpolation!r}"
        )
    old_grid = (1,) * (2 - len(old_grid)) + tuple(old_grid)
    new_grid = (1,) * (2 - len(new_grid)) + tuple(new_grid)
    dim = table.shape[-1]
    # (gh * gw, D) -> (1, gh, gw, D)
    image = ops.reshape(ops.cast(table, "float32"), (1, *old_grid, dim))
    image = ops.image.resize(
        image,
        new_grid,
        interpolation=interpolation,
        antialias=False,
        data_format="channels_last",
    )
    # (1, gh', gw', D) -> (gh' * gw', D)
    return ops.reshape(image, (new_grid[0] * new_grid[1], dim))


@keras.saving.register_keras_serializable(package="keras_attn")
class PatchEmbedding(keras.layers.Layer):
    """Splits images or signals into patches and embeds each patch linearly.

    The tokenizer of the Vision Transformer: the input is cut into
    non-overlapping patches, each patch is flattened and mapped by one
    learned linear map (the same for all patches) to `hidden_dim` channels,
    optionally a learned class token is put in front, and position
    information is added. The output is a sequence of tokens for a
    transformer encoder.

    Two kinds of input, picked by the length of `patch_size` (or, for an
    int, by the input's rank):

    - images `(B, H, W, C)` with a 2-D patch size `(ph, pw)` give
      `(H / ph) * (W / pw)` patches in row-major order;
    - signals or spectrogram frames `(B, T, C)` with a 1-D patch size
      `(p,)` give `T / p` patches.

    With `data_format="channels_first"` the channels come first:
    `(B, C, H, W)` and `(B, C, T)`. The patch size must divide the input
    size.

    The projection has a `kernel` of shape `(ph, pw, C, hidden_dim)` (images)
    or `(p, C, hidden_dim)` (signals), the layout of a Keras `Conv2D`/`Conv1D`
    kernel in either data format, and a `bias` `(hidden_dim,)`. Patch `(i,
    j)` maps to `patch.reshape(-1) @ kernel.reshape(-1, hidden_dim) + bias`,
    with the patch taken channels-last, `x[i*ph:(i+1)*ph, j*pw:(j+1)*pw, :]`,
    and flattened in (row, column, channel) order. When the input size is
    known the layer computes this as a reshape and one matrix product (as
    fast as a strided convolution on CPU on all three backends, with no
    layout transposes on PyTorch); for inputs
    of unknown size it runs the strided convolution `keras.ops.conv` with
    the same kernel. Both give the same result.

    Positions:

    - `"learned"`: a trainable table `position_embeddings` of shape
      `(num_patches [+ 1], hidden_dim)` (row 0 for the class token when
      there is one). It needs the input size at build time.
    - `"sine"`: the fixed 2-D sin-cos table of MAE
      (`keras_attn.ops.sincos_2d_positions`; `sincos_1d` for signals), zero
      for the class token. `hidden_dim` must be divisible by 4 (images) or
      2 (signals).
    - `None`: no positions, for example with rotary positions inside the
      attention (`keras_attn.layers.RotaryEmbedding2D`).

    When the input at call time has a different size than at build time,
    the grid of patch positions is resized to the new grid
    (`interpolation`, see `resize_position_grid`), the class token's
    position unchanged: a model trained at one resolution runs at another.

    Args:
        patch_size: int or tuple of one or two ints, the patch size.
        hidden_dim: int, the size of each token.
        use_class_token: bool, whether to prepend a learned class token.
            Defaults to `False`.
        position: `"learned"`, `"sine"` or `None`. Defaults to `"learned"`.
        interpolation: how the position grid is resized for another input
            size: `"bilinear"`, `"bicubic"` or `"nearest"`. Defaults to
            `"bilinear"`, the same on every backend.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        kernel_initializer: initializer of the projection kernel. Defaults to
            `"glorot_uniform"`.
        bias_initializer: initializer of the projection bias. Defaults to
            `"zeros"`.
        class_token_initializer: initializer of the class token. Defaults to
            `"zeros"`.
        position_initializer: initializer of the learned positions. Defaults
            to a normal distribution with standard deviation 0.02.
        max_wavelength: number, the longest wavelength of `"sine"`
            positions. Defaults to `10000`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`, `dtype` and `trainable`.

    Call arguments:
        inputs: images `(B, H, W, C)` or signals `(B, T, C)` (channels first
            with `data_format="channels_first"`).

    Returns:
        Tokens `(B, num_patches, hidden_dim)`, or
        `(B, 1 + num_patches, hidden_dim)` with the class token first.

    Example:

    ```python
    import keras
    import keras_attn

    images = keras.random.uniform((2, 32, 32, 3))
    layer = keras_attn.layers.PatchEmbedding(
        patch_size=8, hidden_dim=64, use_class_token=True
    )
    tokens = layer(images)  # (2, 1 + 16, 64)

    # 1-D: 100 spectrogram frames of 40 mel bins, 10 frames per patch.
    frames = keras.random.normal((2, 100, 40))
    tokens = keras_attn.layers.PatchEmbedding(10, 64)(frames)  # (2, 10, 64)
    ```

    References:
        - An Image is Worth 16x16 Words: Transformers for Image Recognition
          at Scale (Dosovitskiy et al., 2021).
        - Masked Autoencoders Are Scalable Vision Learners (He et al., 2022).
    """

    def __init__(
        self,
        patch_size,
        hidden_dim,
        use_class_token=False,
        position="learned",
        interpolation="bilinear",
        data_format=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        class_token_initializer="zeros",
        position_initializer=None,
        max_wavelength=10000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.patch_size = _check_patch_size(patch_size)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        if not isinstance(use_class_token, bool):
            raise ValueError(
                "`use_class_token` must be a bool. Received: "
                f"use_class_token={use_class_token!r}"
            )
        self.use_class_token = use_class_token
        if position not in _POSITIONS:
            raise ValueError(
                "`position` must be 'learned', 'sine' or None. Received: "
                f"position={position!r}"
            )
        self.position = position
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(
                "`interpolation` must be one of 'bilinear', 'bicubic', "
                f"'nearest'. Received: interpolation={interpolation!r}"
            )
        self.interpolation = interpolation
        data_format = data_format or keras.config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                "`data_format` must be 'channels_last' or 'channels_first'. "
                f"Received: data_format={data_format!r}"
            )
        self.data_format = data_format
        check_positive_number("max_wavelength", max_wavelength)
        self.max_wavelength = max_wavelength
        if position == "sine" and len(self.patch_size) == 2 and hidden_dim % 4:
            raise ValueError(
                "`hidden_dim` must be divisible by 4 for 2-D 'sine' "
                f"positions. Received: hidden_dim={hidden_dim}"
            )
        if position == "sine" and hidden_dim % 2:
            raise ValueError(
                "`hidden_dim` must be even for 'sine' positions. Received: "
                f"hidden_dim={hidden_dim}"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.class_token_initializer = keras.initializers.get(
            class_token_initializer
        )
        if position_initializer is None:
            position_initializer = keras.initializers.RandomNormal(stddev=0.02)
        self.position_initializer = keras.initializers.get(position_initializer)
        # Set in build(): the patch grid of the build-time input (None where
        # the input size was unknown) and the number of input channels.
        self.grid_size = None
        self.num_channels = None

    # -- shapes ------------------------------------------------------------

    def _split_shape(self, input_shape, name="inputs"):
        """Checks `input_shape`; returns (patch_size, spatial, channels)."""
        input_shape = tuple(input_shape)
        rank = len(input_shape)
        patch_size = self.patch_size
        if len(patch_size) == 1 and rank == 4:
            patch_size = patch_size * 2  # An int patch size on images.
        if rank != len(patch_size) + 2:
            raise ValueError(
                f"`{name}` must have rank {len(patch_size) + 2} for a "
                f"{len(patch_size)}-D patch_size={self.patch_size}: "
                "(batch, height, width, channels) for images or (batch, "
                "time, channels) for signals. Received: "
                f"{name}.shape={input_shape}"
            )
        if self.data_format == "channels_last":
            spatial, channels = input_shape[1:-1], input_shape[-1]
        else:
            spatial, channels = input_shape[2:], input_shape[1]
        if channels is None:
            raise ValueError(
                f"`{name}` must have a known number of channels. Received: "
                f"{name}.shape={input_shape}"
            )
        if any(s is not None and s % p for s, p in zip(spatial, patch_size)):
            raise ValueError(
                f"The patch_size={patch_size} must divide the input size "
                f"{tuple(spatial)}. Received: {name}.shape={input_shape}"
            )
        return patch_size, tuple(spatial), int(channels)

    def build(self, input_shape):
        patch_size, spatial, channels = self._split_shape(input_shape)
        self.num_channels = channels
        if all(s is not None for s in spatial):
            self.grid_size = tuple(s // p for s, p in zip(spatial, patch_size))
        # An int `patch_size` is 2-D only on images: checked here, not in
        # `__init__`.
        if self.position == "sine" and len(patch_size) == 2:
            if self.hidden_dim % 4:
                raise ValueError(
                    "`hidden_dim` must be divisible by 4 for 2-D 'sine' "
                    f"positions. Received: hidden_dim={self.hidden_dim}"
                )
        if self.position == "learned" and self.grid_size is None:
            raise ValueError(
                "Learned positions need the input size at build time. "
                f"Received: inputs.shape={tuple(input_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(*patch_size, channels, self.hidden_dim),
            initializer=self.kernel_initializer,
        )
        self.bias = self.add_weight(
            name="bias",
            shape=(self.hidden_dim,),
            initializer=self.bias_initializer,
        )
        if self.use_class_token:
            self.class_token = self.add_weight(
                name="class_token",
                shape=(1, 1, self.hidden_dim),
                initializer=self.class_token_initializer,
            )
        if self.position == "learned":
            num_positions = math.prod(self.grid_size) + int(
                self.use_class_token
            )
            self.position_embeddings = self.add_weight(
                name="position_embeddings",
                shape=(num_positions, self.hidden_dim),
                initializer=self.position_initializer,
            )
        self.built = True

    def compute_output_shape(self, input_shape):
        patch_size, spatial, _ = self._split_shape(input_shape)
        num_patches = 1
        for s, p in zip(spatial, patch_size):
            if s is None:
                num_patches = None
                break
            num_patches *= s // p
        if num_patches is not None:
            num_patches += int(self.use_class_token)
        return (input_shape[0], num_patches, self.hidden_dim)

    # -- call --------------------------------------------------------------

    def _project(self, inputs, patch_size, grid):
        """The linear map of every patch: (B, ...) -> (B, num_patches, D)."""
        kernel = ops.convert_to_tensor(self.kernel)
        channels = self.num_channels
        # Known sizes: patches by reshape and one matmul; unknown ones (a
        # None height, width or length): a strided convolution.
        static = all(g is not None for g in grid)
        if static and len(patch_size) == 2:
            gh, gw = grid
            ph, pw = patch_size
            if self.data_format == "channels_last":
                # (B, H, W, C) -> (B, gh, ph, gw, pw, C)
                x = ops.reshape(inputs, (-1, gh, ph, gw, pw, channels))
                x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
            else:
                # (B, C, H, W) -> (B, C, gh, ph, gw, pw)
                x = ops.reshape(inputs, (-1, channels, gh, ph, gw, pw))
                x = ops.transpose(x, (0, 2, 4, 3, 5, 1))
            # (B, gh, gw, ph, pw, C) -> (B, gh * gw, ph * pw * C)
            x = ops.reshape(x, (-1, gh * gw, ph * pw * channels))
        elif static:
            (g,), (p,) = grid, patch_size
            if self.data_format == "channels_first":
                inputs = ops.transpose(inputs, (0, 2, 1))  # (B, T, C)
            # (B, T, C) -> (B, g, p * C)
            x = ops.reshape(inputs, (-1, g, p * channels))
        else:
            # Unknown size: a strided convolution, the same linear map.
            x = ops.conv(
                inputs,
                kernel,
                strides=patch_size,
                padding="valid",
                data_format=self.data_format,
            )
            if self.data_format == "channels_first":
                x = ops.moveaxis(x, 1, -1)
            # (B, g..., D) -> (B, num_patches, D)
            x = ops.reshape(x, (ops.shape(x)[0], -1, self.hidden_dim))
            return x + self.bias
        # (B, N, P) @ (P, D) -> (B, N, D)
        x = ops.matmul(x, ops.reshape(kernel, (-1, self.hidden_dim)))
        return x + self.bias

    def position_table(self, grid=None):
        """The position embeddings added to the patches, one row a patch.

        Args:
            grid: the patch grid, `(rows, columns)` or `(frames,)`. Defaults
                to the built grid; another grid resizes the table as a call
                at that input size does.

        Returns:
            A float32 `(num_patches [+ 1], hidden_dim)`; row 0 is the class
            token's position when `use_class_token` (zeros for sine).
        """
        if self.position is None or not self.built:
            raise ValueError(
                "`position_table` needs a built layer with positions. "
                f"Received: position={self.position!r}, built={self.built}"
            )
        grid = self.grid_size if grid is None else tuple(grid)
        if grid is None or len(grid) != len(self.grid_size or grid):
            raise ValueError(
                "`grid` must be a tuple of ints, one per patch axis. "
                f"Received: grid={grid!r}"
            )
        return self._positions(grid)

    def _positions(self, grid):
        """Position table `(num_patches [+1], D)` for `grid`, float32."""
        if self.position == "learned":
            table = ops.cast(self.position_embeddings, "float32")
            if self.use_class_token:
                cls_position, table = table[:1], table[1:]
            if tuple(grid) != tuple(self.grid_size):
                table = resize_position_grid(
                    table, self.grid_size, grid, self.interpolation
                )
            if self.use_class_token:
                table = ops.concatenate([cls_position, table], axis=0)
            return table
        base = self.grid_size or grid
        if len(grid) == 2:
            table = position_ops.sincos_2d_positions(
                base[0], base[1], self.hidden_dim, self.max_wavelength
            )
        else:
            table = position_ops.sincos_1d(
                ops.arange(base[0]), self.hidden_dim, self.max_wavelength
            )
        if tuple(grid) != tuple(base):
            table = resize_position_grid(table, base, grid, self.interpolation)
        if self.use_class_token:
            zeros = ops.zeros((1, self.hidden_dim), "float32")
            table = ops.concatenate([zeros, table], axis=0)
        return table

    def call(self, inputs):
        patch_size, spatial, channels = self._split_shape(inputs.shape)
        if channels != self.num_channels:
            raise ValueError(
                f"`inputs` must have num_channels={self.num_channels} "
                "channels, as when the layer was built. Received: "
                f"{channels} channels, inputs.shape={tuple(inputs.shape)}"
            )
        grid = tuple(
            None if s is None else s // p for s, p in zip(spatial, patch_size)
        )
        inputs = ops.cast(inputs, self.compute_dtype)
        x = self._project(inputs, patch_size, grid)  # (B, N, D)
        if self.use_class_token:
            # (1, 1, D) -> (B, 1, D), then (B, 1 + N, D)
            token = ops.broadcast_to(
                ops.cast(self.class_token, x.dtype),
                (ops.shape(x)[0], 1, self.hidden_dim),
            )
            x = ops.concatenate([token, x], axis=1)
        if self.position is not None:
            if any(g is None for g in grid):
                raise ValueError(
                    "Positions need a known input size at call time. "
                    f"Received: inputs.shape={tuple(inputs.shape)}"
                )
            positions = self._positions(grid)  # (N [+1], D)
            x = x + ops.cast(positions, x.dtype)[None]
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "patch_size": self.patch_size,
                "hidden_dim": self.hidden_dim,
                "use_class_token": self.use_class_token,
                "position": self.position,
                "interpolation": self.interpolation,
                "data_format": self.data_format,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(
                    self.bias_initializer
                ),
                "class_token_initializer": keras.initializers.serialize(
                    self.class_token_initializer
                ),
                "position_initializer": keras.initializers.serialize(
                    self.position_initializer
                ),
                "max_wavelength": self.max_wavelength,
            }
        )
        return config
