import collections

import keras
import numpy as np
from keras import ops

from keras_attn import _validation

UNITS = ("character", "word")
# Reserved ids and the strings that stand for them in `get_vocabulary()`.
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")


@keras.saving.register_keras_serializable(package="keras_attn")
class Tokenizer(keras.layers.Layer):
    """A character or word tokenizer whose vocabulary is saved with the model.

    Maps text to integer ids and back in plain Python and NumPy, so it runs
    the same next to any backend (unlike `keras.layers.TextVectorization`,
    which needs TensorFlow). The vocabulary is part of the layer's config:
    put the layer at the input of a functional model and it is saved in, and
    restored from, the model's `.keras` file, so a loaded model can encode
    new text and decode its outputs without any side file.

    Ids 0 to 3 are reserved: 0 padding (`pad_id`), 1 start (`start_id`),
    2 end (`end_id`), 3 unknown (`unknown_id`). The tokens of `vocabulary`
    take ids 4, 5, ... in their order. `adapt` builds the vocabulary from
    texts: most frequent tokens first, ties in sorted order, so the same
    texts always give the same ids.

    A `"character"` tokenizer splits text into characters (spaces are
    tokens) and decodes by joining them; a `"word"` tokenizer splits on
    whitespace and decodes by joining words with one space.

    `call` is the identity on integer ids (cast to int32), with a Keras mask
    `token_ids != 0` when `mask_zero=True`: text-to-ids runs outside the
    graph with `encode`, and the layer rides along in the model.

    Args:
        vocabulary: optional list of distinct, non-empty strings (single
            characters for `unit="character"`), without the reserved tokens.
            Defaults to an empty vocabulary, to fill with `adapt`.
        unit: `"character"` or `"word"`. Defaults to `"character"`.
        lowercase: bool, lowercase text before `adapt` and `encode`.
            Defaults to `False`.
        max_vocabulary_size: optional positive int, the most ids `adapt`
            keeps, the 4 reserved ids included (must be more than 4).
        mask_zero: bool, whether `call` returns a Keras mask of the ids that
            are not padding. Defaults to `False`.
        **kwargs: other keyword arguments of `keras.layers.Layer`, including
            `name`.

    Call arguments:
        token_ids: an integer tensor of any shape, usually `(B, T)`.

    Returns:
        `token_ids` as int32 (the identity), with a mask if `mask_zero`.

    Example:

    ```python
    import os
    import tempfile

    import keras
    from keras_attn import layers

    tokenizer = layers.Tokenizer(unit="word", name="tokenizer")
    tokenizer.adapt(["one two three", "two three", "three"])
    ids = tokenizer.encode(["three two", "one four"], add_end=True)
    # ids == [[4, 5, 2], [6, 3, 2]]: "three" (most frequent) is 4, "four"
    # is unknown (3), 2 is the end token.
    tokenizer.decode(ids)  # ["three two", "one <unk>"]

    # Put it at the input of a model: the vocabulary is saved with it.
    inputs = keras.Input((None,), dtype="int32")
    x = layers.TokenAndPositionEmbedding(
        vocabulary_size=tokenizer.vocabulary_size,
        sequence_length=8,
        embedding_dim=16,
    )(tokenizer(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    path = os.path.join(tempfile.mkdtemp(), "model.keras")
    model.save(path)

    restored = keras.saving.load_model(path)
    same = restored.get_layer("tokenizer")  # the vocabulary came along
    outputs = restored(same.encode(["one two"], sequence_length=8))
    ```
    """

    def __init__(
        self,
        vocabulary=None,
        unit="character",
        lowercase=False,
        max_vocabulary_size=None,
        mask_zero=False,
        **kwargs,
    ):
        _validation.check_choice("unit", unit, UNITS)
        max_vocabulary_size = _validation.check_positive_int(
            "max_vocabulary_size", max_vocabulary_size, allow_none=True
        )
        if max_vocabulary_size is not None and max_vocabulary_size <= 4:
            raise ValueError(
                "`max_vocabulary_size` must be more than 4 (the reserved "
                "ids 0 to 3 count in it). Received: "
                f"max_vocabulary_size={max_vocabulary_size}"
            )
        super().__init__(**kwargs)
        self.unit = unit
        self.lowercase = bool(lowercase)
        self.max_vocabulary_size = max_vocabulary_size
        self.mask_zero = bool(mask_zero)
        self.supports_masking = True
        self.set_vocabulary([] if vocabulary is None else vocabulary)

    # -- vocabulary -----------------------------------------------------------

    pad_id = 0
    start_id = 1
    end_id = 2
    unknown_id = 3

    def set_vocabulary(self, vocabulary):
        """Replaces the vocabulary: a list of tokens, reserved ones left out."""
        if isinstance(vocabulary, str):
            raise TypeError(
                "`vocabulary` must be a list of tokens, not one string. "
                f"Received: vocabulary={vocabulary!r}"
            )
        tokens = _validation.check_texts("vocabulary", vocabulary)
        tokens = [str(token) for token in tokens]
        seen = set()
        for token in tokens:
            if token == "" or (self.unit == "character" and len(token) != 1):
                what = "one character" if self.unit == "character" else "a"
                raise ValueError(
                    f"Each token of `vocabulary` must be {what} non-empty "
                    f"string for unit={self.unit!r}. Received: token "
                    f"{token!r} in vocabulary"
                )
            if self.unit == "word" and token.split() != [token]:
                raise ValueError(
                    "Word tokens of `vocabulary` must not hold whitespace. "
                    f"Received: token {token!r} in vocabulary"
                )
            if token in SPECIAL_TOKENS or token in seen:
                reason = "reserved" if token in SPECIAL_TOKENS else "repeated"
                raise ValueError(
                    f"`vocabulary` must hold distinct, non-reserved tokens. "
                    f"Received: token {token!r} ({reason}) in vocabulary"
                )
            seen.add(token)
        # A tuple: Keras would wrap a list attribute for weight tracking.
        self._tokens = SPECIAL_TOKENS + tuple(tokens)
        self._ids = {token: i for i, token in enumerate(self._tokens)}

    def get_vocabulary(self, include_special_tokens=True):
        """The token of every id, as a list (index = id)."""
        if include_special_tokens:
            return list(self._tokens)
        return list(self._tokens[len(SPECIAL_TOKENS) :])

    @property
    def vocabulary_size(self):
        """The number of ids, the 4 reserved ids included."""
        return len(self._tokens)

    def token_to_id(self, token):
        """The id of one token (`unknown_id` for a token not in the list)."""
        return self._ids.get(token, self.unknown_id)

    def id_to_token(self, token_id):
        """The token of one id."""
        self._check_ids(np.asarray([token_id]))
        return self._tokens[int(token_id)]

    def split(self, text):
        """The tokens of one string (after lowercasing if asked)."""
        if self.lowercase:
            text = text.lower()
        return list(text) if self.unit == "character" else text.split()

    def adapt(self, texts):
        """Builds the vocabulary from `texts`, most frequent tokens first.

        Replaces any vocabulary the layer had. With `max_vocabulary_size`,
        keeps the `max_vocabulary_size - 4` most frequent tokens.
        """
        texts = _validation.check_texts("texts", texts)
        counts = collections.Counter()
        for text in texts:
            counts.update(self.split(text))
        # Most frequent first; ties in sorted order (deterministic ids).
        tokens = sorted(counts, key=lambda token: (-counts[token], token))
        if self.max_vocabulary_size is not None:
            tokens = tokens[: self.max_vocabulary_size - len(SPECIAL_TOKENS)]
        self.set_vocabulary(tokens)

    # -- text <-> ids ---------------------------------------------------------

    def encode(
        self, texts, sequence_length=None, add_start=False, add_end=False
    ):
        """Encodes texts as a padded int32 array `(B, L)`.

        Args:
            texts: a string (a batch of one) or a sequence of strings.
            sequence_length: optional positive int, the length `L` of every
                row; longer token lists are cut so that the start and end
                tokens (when asked) still fit. Defaults to the longest row.
            add_start: bool, begin every row with `start_id`.
            add_end: bool, end every row with `end_id`.

        Returns:
            A NumPy int32 array `(B, L)`, padded on the right with `pad_id`.
        """
        texts = _validation.check_texts("texts", texts)
        sequence_length = _validation.check_positive_int(
            "sequence_length", sequence_length, allow_none=True
        )
        if self.vocabulary_size == len(SPECIAL_TOKENS):
            raise ValueError(
                "The tokenizer's vocabulary is empty: pass `vocabulary` or "
                "call `adapt(texts)` before `encode`."
            )
        specials = int(bool(add_start)) + int(bool(add_end))
        if sequence_length is not None and sequence_length < specials:
            raise ValueError(
                f"`sequence_length` must leave room for the {specials} "
                f"start/end token(s). Received: "
                f"sequence_length={sequence_length}"
            )
        rows = []
        for text in texts:
            ids = [self.token_to_id(token) for token in self.split(text)]
            if sequence_length is not None:
                ids = ids[: sequence_length - specials]
            if add_start:
                ids = [self.start_id] + ids
            if add_end:
                ids = ids + [self.end_id]
            rows.append(ids)
        length = sequence_length
        if length is None:
            length = max((len(ids) for ids in rows), default=0)
        out = np.full((len(rows), length), self.pad_id, dtype="int32")
        for i, ids in enumerate(rows):
            out[i, : len(ids)] = ids
        return out

    def decode(self, token_ids, skip_special=True):
        """Decodes ids `(B, L)` (or one row `(L,)`) to a list of strings.

        Args:
            token_ids: integer array-like or tensor, `(B, L)` or `(L,)` (a
                batch of one).
            skip_special: bool. If True, each row stops at its first end
                token and padding and start tokens are dropped; unknown ids
                show as `"<unk>"`. If False, every id shows as its token
                (`"<pad>"`, `"<start>"`, ...).

        Returns:
            A list of `B` strings.
        """
        ids = np.asarray(ops.convert_to_numpy(token_ids))
        if ids.ndim not in (1, 2):
            raise ValueError(
                "`token_ids` must have rank 1 or 2. Received: "
                f"token_ids.shape={ids.shape}"
            )
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                "`token_ids` must hold integers. Received: "
                f"token_ids.dtype={ids.dtype}"
            )
        self._check_ids(ids)
        joiner = "" if self.unit == "character" else " "
        texts = []
        for row in ids.reshape((-1, ids.shape[-1])):
            tokens = []
            for token_id in row.tolist():
                if skip_special:
                    if token_id == self.end_id:
                        break
                    if token_id in (self.pad_id, self.start_id):
                        continue
                tokens.append(self._tokens[token_id])
            texts.append(joiner.join(tokens))
        return texts

    def _check_ids(self, ids):
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocabulary_size):
            raise ValueError(
                f"`token_ids` must lie in [0, {self.vocabulary_size}) (the "
                f"vocabulary size). Received: ids from {ids.min()} to "
                f"{ids.max()}"
            )

    # -- layer ----------------------------------------------------------------

    def call(self, token_ids):
        _validation.check_integer_dtype("token_ids", token_ids)
        return ops.cast(token_ids, "int32")

    def compute_mask(self, token_ids, mask=None):
        if not self.mask_zero:
            return mask
        return ops.not_equal(token_ids, self.pad_id)

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, token_ids, *args, **kwargs):
        _validation.check_integer_dtype("token_ids", token_ids)
        return keras.KerasTensor(token_ids.shape, dtype="int32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary": self.get_vocabulary(include_special_tokens=False),
                "unit": self.unit,
                "lowercase": self.lowercase,
                "max_vocabulary_size": self.max_vocabulary_size,
                "mask_zero": self.mask_zero,
            }
        )
        return config
