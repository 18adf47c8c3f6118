"""Multi-modal contrastive learning: one transformer for images, sound, text.

VATT style (Akbari et al., 2021): every modality is cut into tokens by its
own linear projection, a learned modality embedding is added, and ONE
transformer encoder, the same weights for all modalities, turns the tokens
into an embedding; the InfoNCE loss (`keras_attn.losses.InfoNCE`) pulls the
embeddings of the same item together across modalities and pushes the
other items of the batch away.

The items are the numbers 0 to 99, in three modalities:

- image: two scikit-learn digit images side by side (8 x 16 pixels; "07"
  for 7), cut into 4 x 4 patches (`PatchEmbedding`, 8 tokens); test
  numbers are drawn with digit images that training never sees;
- sound: the number spoken by eSpeak NG (8 English accents, about 90 voice
  variants, speeds and pitches; 32 utterances of each number), as log-mel
  frames (Keras' `MelSpectrogram`, in the saved model), each clip
  normalized on its own (zero mean, unit variance), in patches of 4
  frames (16 tokens); test numbers are spoken by 12 held-out voice
  variants;
- text: the number in words (`num2words`) in eight languages, one token
  per character (`keras_attn.layers.Tokenizer`, saved in the model).

Retrieval is among the 100 numbers: for each held-out image the nearest of
100 held-out spoken numbers (image to audio), for each of those the nearest
of the 100 written numbers (audio to text, each language in turn). The
baseline is canonical correlation analysis on the raw pixels, log-mel
features and character counts (a linear shared space, no encoder).

    KERAS_BACKEND=jax python examples/multimodal_contrastive.py
    KERAS_BACKEND=jax python examples/multimodal_contrastive.py \
        --figures docs/images
    KERAS_BACKEND=jax python examples/multimodal_contrastive.py --predict 42 7

`--predict` speaks the given numbers with a held-out voice (with light
noise, as in training) and answers with the English words the saved
model retrieves for each.

Needs the `espeak-ng` program (Debian/Ubuntu: `apt-get install espeak-ng`)
and `num2words`.

Against overfitting the training voices, the audio tower borrows the
recipe of `spoken_digits.py`: every batch places each clip at a fresh
random offset in the 1.46 s window with fresh noise (5 to 30 dB SNR),
and in training only `speech_data.SpecAugment` shifts the mel bands by
up to 2 bands and zeroes one band of up to 4 mel bins and one stretch of
up to 4 frames (short: a longer mask could erase the "two" of "forty
two"). The images have their own augmentation: each training digit moves
by up to a pixel in each direction.

Results of the full run (`--seed 0`):

    recall@1 among 100 held-out numbers   VATT-style   CCA baseline
    image -> audio                        0.920        0.060
    audio -> image                        0.873
    audio -> text   (mean of 8 languages) 0.916        0.040
    text -> audio                         0.961
    image -> text                         0.960

Mean of 3 held-out galleries; chance is 0.010. Backend jax, 96,704
parameters, 250 epochs of 20 batches of 100 (5,000 steps), train time
974 s on the 2-core CPU, shared with the test suite (load average about
5, so this process had about half of it). The 90% target is met in both
directions the issue names (image -> audio 92.0%, audio -> text 91.6%).

How it got there. Before this recipe (fixed noisy copies of 24
utterances per number, one normalization for the whole data set) 100
epochs gave 0.707 image -> audio and 0.679 audio -> text, 220 epochs
0.797 and 0.765. The spoken-digits recipe for the audio tower (fresh
offsets and noise every batch, per-utterance normalization, SpecAugment)
gave 0.890 and 0.935 at 200 epochs, but image -> text fell to 0.922:
the images were now the weak side. Shifting each training digit by up
to a pixel gave 0.903 and 0.896 at 200 epochs (709 s at load about 5),
and 250 epochs the figures above.
"""

import argparse
import json
import pathlib
import time

import _speech_data as speech_data
import keras
import numpy as np
from num2words import num2words

from keras_attn import layers as attn_layers
from keras_attn import losses

LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pt", "sv")
TEXT_LENGTH = 24
STRIDE = 256  # samples between spectrogram frames (23 ms)
NUM_FRAMES = 64
LENGTH = (NUM_FRAMES - 1) * STRIDE  # 16,128 samples, 1.46 s
NUM_MELS = 40
AUDIO_PATCH = 4  # frames per audio token
# SpecAugment in training: mel band shift, mask widths (bands, frames).
MAX_SHIFT, FREQ_MASK, TIME_MASK = 2, 4, 4
TEMPERATURE = 0.1  # of the InfoNCE softmax
IMAGE_SHIFT = 1  # pixels each training digit may move, in each direction
IMAGE_PATCH = (4, 4)
DEMO_VOICE = "en-us+f5"  # a held-out variant
MODALITIES = ("image", "audio", "text")
PAIRS = (("image", "audio"), ("audio", "text"), ("image", "text"))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--out", default="examples/output/multimodal_contrastive"
    )
    parser.add_argument("--figures", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument(
        "--predict",
        nargs="+",
        type=int,
        default=None,
        metavar="NUMBER",
        help="numbers (0-99) to speak and retrieve as words",
    )
    parser.add_argument("--voice", default=DEMO_VOICE)
    return parser.parse_args(argv)


# -- data ---------------------------------------------------------------


def digit_images(seed):
    """sklearn's digits in [0, 1], split in half by class: (train, test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")
    train, test = train_test_split(
        np.arange(len(images)),
        test_size=0.5,
        stratify=digits.target,
        random_state=seed,
    )
    by_digit = []
    for split in (train, test):
        by_digit.append(
            [images[split[digits.target[split] == d]] for d in range(10)]
        )
    return by_digit


def number_images(numbers, pool, rng, max_shift=0):
    """(N, 8, 16, 1): the tens digit, then the units digit.

    With `max_shift` (training only), each digit moves by up to that many
    pixels in each direction (the freed border is zero, the background).
    """
    out = np.zeros((len(numbers), 8, 16, 1), "float32")
    for i, n in enumerate(numbers):
        for j, digit in enumerate((n // 10, n % 10)):
            choices = pool[digit]
            image = choices[rng.integers(len(choices))]
            if max_shift:
                image = shift_image(
                    image, *rng.integers(-max_shift, max_shift + 1, 2)
                )
            out[i, :, 8 * j : 8 * j + 8, 0] = image
    return out


def shift_image(image, rows, columns):
    """`image` (8, 8) moved by `rows` down and `columns` right, zero-filled."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[
        max(rows, 0) : h + min(rows, 0), max(columns, 0) : w + min(columns, 0)
    ] = image[
        max(-rows, 0) : h + min(-rows, 0),
        max(-columns, 0) : w + min(-columns, 0),
    ]
    return out


def number_texts():
    """texts[language][n]: the number n in words."""
    return {
        lang: [num2words(n, lang=lang) for n in range(100)]
        for lang in LANGUAGES
    }


def utterances(numbers, variant_names, rng):
    """One (text, voice, speed, pitch) per number, random voice."""
    out = []
    for n in numbers:
        accent = speech_data.ACCENTS[rng.integers(len(speech_data.ACCENTS))]
        variant = variant_names[rng.integers(len(variant_names))]
        speed = int(rng.integers(130, 211))
        pitch = int(rng.integers(20, 81))
        out.append((str(n), f"{accent}+{variant}", speed, pitch))
    return out


def mel_spectrogram():
    # `top_db` would clip at the maximum over the whole batch (a clip's
    # features would depend on its batch): the `min_power` floor instead.
    return keras.layers.MelSpectrogram(
        fft_length=512,
        sequence_stride=STRIDE,
        sampling_rate=speech_data.SAMPLING_RATE,
        num_mel_bins=NUM_MELS,
        min_freq=60.0,
        max_freq=5000.0,
        min_power=1e-6,
        top_db=1e9,
        name="log_mel",
    )


# -- model --------------------------------------------------------------


@keras.saving.register_keras_serializable(package="multimodal_contrastive")
class ModalityEmbedding(keras.layers.Layer):
    """Adds one learned vector, the modality's, to every token."""

    def build(self, input_shape):
        self.embedding = self.add_weight(
            shape=(input_shape[-1],),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="embedding",
        )

    def call(self, tokens):
        return tokens + keras.ops.cast(self.embedding, tokens.dtype)


def build_model(tokenizer, hidden_dim, num_layers, seed=None):
    """Inputs image, waveform and token ids; outputs the pairs.

    Each output `(B, 2, dim)` stacks two modalities' embeddings of the same
    items, for the InfoNCE loss.
    """
    image = keras.Input((8, 16, 1), name="image")
    waveform = keras.Input((LENGTH,), name="waveform")
    token_ids = keras.Input((TEXT_LENGTH,), dtype="int32", name="token_ids")

    # Tokens of each modality: a linear projection (+ positions).
    image_tokens = attn_layers.PatchEmbedding(
        IMAGE_PATCH, hidden_dim, name="image_patches"
    )(image)  # (B, 8, D)
    log_mel = mel_spectrogram()(waveform)  # (B, mels, frames)
    # Per-utterance normalization (zero mean, unit variance over the
    # whole image), then, in training only, mel band shift and masks.
    frames = keras.layers.LayerNormalization(
        axis=(1, 2), center=False, scale=False, name="utterance_norm"
    )(log_mel)
    frames = speech_data.SpecAugment(
        MAX_SHIFT, FREQ_MASK, TIME_MASK, seed=seed, name="spec_augment"
    )(frames)
    # (B, mels, frames) -> (B, frames, mels): one row per frame.
    frames = keras.layers.Permute((2, 1))(frames)
    audio_tokens = attn_layers.PatchEmbedding(
        AUDIO_PATCH, hidden_dim, name="audio_patches"
    )(frames)  # (B, NUM_FRAMES / AUDIO_PATCH, D)
    ids = tokenizer(token_ids)
    text_tokens = attn_layers.TokenAndPositionEmbedding(
        tokenizer.vocabulary_size,
        TEXT_LENGTH,
        hidden_dim,
        name="text_embedding",
    )(ids)  # (B, 24, D)
    padding_mask = keras.ops.not_equal(ids, 0)  # (B, 24)

    # One encoder: the same blocks for every modality.
    blocks = [
        attn_layers.TransformerEncoder(
            intermediate_dim=2 * hidden_dim,
            num_heads=4,
            dropout=0.1,
            normalize_first=True,
            activation="gelu",
            name=f"shared_encoder_{i}",
        )
        for i in range(num_layers)
    ]
    final_norm = keras.layers.LayerNormalization(name="shared_norm")
    pool = keras.layers.GlobalAveragePooling1D(name="pool")

    def encode(tokens, modality, mask=None):
        x = ModalityEmbedding(name=f"{modality}_modality")(tokens)
        for block in blocks:
            x = block(x, padding_mask=mask)
        x = pool(final_norm(x), mask=mask)
        # A linear head per modality into the common space (as VATT).
        return keras.layers.Dense(hidden_dim, name=f"{modality}_head")(x)

    embeddings = {
        "image": encode(image_tokens, "image"),
        "audio": encode(audio_tokens, "audio"),
        "text": encode(text_tokens, "text", padding_mask),
    }
    # (B, D) and (B, D) -> (B, 2, D) for each pair of modalities.
    outputs = {
        f"{a}_{b}": keras.ops.stack([embeddings[a], embeddings[b]], axis=1)
        for a, b in PAIRS
    }
    return keras.Model(
        {"image": image, "waveform": waveform, "token_ids": token_ids},
        outputs,
        name="multimodal_contrastive",
    )


class Batches(keras.utils.PyDataset):
    """Batches of distinct numbers, each with a random view per modality.

    Each batch is a run of a random permutation of the numbers, so no
    number appears twice in a batch (no false negatives for InfoNCE); the
    image is drawn from the training digit images, the sound from the
    training utterances of that number, placed at a fresh random offset
    in the window with fresh noise (5 to 30 dB SNR), the text from a
    random language.
    """

    def __init__(self, numbers, images, waves, texts, steps, seed):
        super().__init__()
        self.numbers, self.images, self.waves, self.texts = (
            numbers,
            images,
            waves,
            texts,
        )
        self.steps, self.seed, self.epoch = steps, seed, 0
        self.noise = np.random.default_rng(seed).standard_normal(
            1 << 20, "float32"
        )

    def __len__(self):
        return self.steps

    def __getitem__(self, index):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        numbers = rng.permutation(self.numbers)
        clips = [
            self.waves[n][rng.integers(len(self.waves[n]))] for n in numbers
        ]
        language = rng.integers(len(self.texts), size=len(numbers))
        x = {
            "image": number_images(
                numbers, self.images, rng, max_shift=IMAGE_SHIFT
            ),
            "waveform": self.place(clips, rng),
            "token_ids": np.stack(
                [self.texts[k][n] for k, n in zip(language, numbers)]
            ),
        }
        y = {f"{a}_{b}": numbers.astype("int32") for a, b in PAIRS}
        return x, y

    def place(self, clips, rng):
        """Clips at random offsets in the window, white noise added.

        As `speech_data.to_fixed_length`, but the noise is a random slice
        of one long stored noise signal (drawing fresh Gaussian noise for
        every batch costs more than the training step).
        """
        out = np.zeros((len(clips), LENGTH), "float32")
        snr = rng.uniform(5, 30, size=len(clips))
        starts = rng.integers(0, len(self.noise) - LENGTH, size=len(clips))
        for i, samples in enumerate(clips):
            offset = int(rng.integers(0, LENGTH - len(samples) + 1))
            out[i, offset : offset + len(samples)] = samples
            noise_std = np.sqrt(np.mean(samples**2) / 10 ** (snr[i] / 10))
            out[i] += noise_std * self.noise[starts[i] : starts[i] + LENGTH]
        return out

    def on_epoch_end(self):
        self.epoch += 1


def embed(model, image, audio, token_ids):
    """The three embeddings (L2-normalized NumPy) of a batch of items."""
    out = model.predict(
        {"image": image, "waveform": audio, "token_ids": token_ids},
        batch_size=len(image),
        verbose=0,
    )
    emb = {
        "image": out["image_audio"][:, 0],
        "audio": out["image_audio"][:, 1],
        "text": out["audio_text"][:, 1],
    }
    return {
        k: v / np.linalg.norm(v, axis=-1, keepdims=True) for k, v in emb.items()
    }


def recall_at_1(queries, gallery):
    """Fraction of queries whose most similar gallery item is their own."""
    return float(
        np.mean((queries @ gallery.T).argmax(-1) == np.arange(len(queries)))
    )


def english_gallery(tokenizer, numbers):
    return tokenizer.encode(
        [num2words(n, lang="en") for n in numbers],
        sequence_length=TEXT_LENGTH,
    )


def retrieve_words(model, tokenizer, waves, numbers):
    """For each waveform, the English number words nearest to it."""
    count = len(waves)
    audio = embed(
        model,
        np.zeros((count, 8, 16, 1), "float32"),
        waves,
        np.zeros((count, TEXT_LENGTH), "int32"),
    )["audio"]
    gallery = len(numbers)
    text = embed(
        model,
        np.zeros((gallery, 8, 16, 1), "float32"),
        np.zeros((gallery, LENGTH), "float32"),
        english_gallery(tokenizer, numbers),
    )["text"]
    similarity = audio @ text.T  # (queries, gallery)
    return [int(numbers[i]) for i in similarity.argmax(-1)], similarity


def speak(numbers, voice, cache_dir):
    """Clips as in training: a random offset, light noise (30 dB SNR).

    The model only ever heard noisy clips: a clean one, silence around
    the word, is out of its training distribution (in the run recorded
    above, 4 of 15 numbers right when clean, 15 of 15 at 30 dB). The
    seed is fixed, so the same numbers give the same clips.
    """
    waves = speech_data.synthesize_all(
        [(str(n), voice, 160, 50) for n in numbers], cache_dir
    )
    return speech_data.to_fixed_length(
        waves, LENGTH, np.random.default_rng(0), (30, 30)
    )


def predict(args):
    out = pathlib.Path(args.out)
    model = keras.models.load_model(out / "multimodal_contrastive.keras")
    tokenizer = model.get_layer("tokenizer")
    numbers = np.arange(int(json.loads((out / "numbers.json").read_text())))
    waves = speak(args.predict, args.voice, out / "cache")
    answers, similarity = retrieve_words(model, tokenizer, waves, numbers)
    for n, answer in zip(args.predict, answers):
        print(
            f"{n} spoken by {args.voice} -> "
            f"{num2words(answer, lang='en')!r} ({answer})"
        )
    print(
        "PREDICT "
        + json.dumps({"answers": answers, "similarity": similarity.tolist()})
    )


def cca_baseline(train, test, components=16):
    """Recall@1 of CCA between raw features, per pair of modalities."""
    from sklearn.cross_decomposition import CCA
    from sklearn.decomposition import PCA

    results = {}
    for a, b in (("image", "audio"), ("audio", "text")):
        pca_a = PCA(min(64, *train[a].shape)).fit(train[a])
        pca_b = PCA(min(64, *train[b].shape)).fit(train[b])
        cca = CCA(components, max_iter=1000).fit(
            pca_a.transform(train[a]), pca_b.transform(train[b])
        )
        za, zb = cca.transform(
            pca_a.transform(test[a]), pca_b.transform(test[b])
        )
        za /= np.linalg.norm(za, axis=-1, keepdims=True)
        zb /= np.linalg.norm(zb, axis=-1, keepdims=True)
        results[f"{a}->{b}"] = recall_at_1(za, zb)
    return results


def char_counts(token_ids, vocabulary_size):
    counts = np.zeros((len(token_ids), vocabulary_size), "float32")
    for i, row in enumerate(token_ids):
        np.add.at(counts[i], row, 1.0)
    counts[:, 0] = 0.0
    return counts


def save_figure(path, similarity, numbers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (title, matrix) in zip(axes, similarity.items()):
        image = ax.imshow(matrix, cmap="viridis", vmin=-1, vmax=1)
        ax.set_title(title)
        ticks = np.arange(0, len(numbers), 10)
        ax.set_xticks(ticks, [str(numbers[t]) for t in ticks])
        ax.set_yticks(ticks, [str(numbers[t]) for t in ticks])
    axes[0].set_ylabel("held-out digit images")
    axes[0].set_xlabel("spoken by held-out voices")
    axes[1].set_ylabel("spoken by held-out voices")
    axes[1].set_xlabel("written (English)")
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    fig.suptitle(
        f"Cross-modal similarity of a held-out batch of {len(numbers)} numbers"
    )
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(args):
    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "cache"
    if args.quick:
        count, voices_per_number, galleries = 20, 2, 1
        hidden_dim, num_layers, epochs, steps = 32, 1, 2, 2
    else:
        count, voices_per_number, galleries = 100, 32, 3
        hidden_dim, num_layers, epochs, steps = 64, 2, 250, 20
    epochs = args.epochs or epochs
    numbers = np.arange(count)
    (out / "numbers.json").write_text(json.dumps(count))
    train_variants, test_variants = speech_data.split_variants()

    # Images, texts and sounds; sounds synthesized once (cached).
    start = time.time()
    train_digits, test_digits = digit_images(args.seed)
    tokenizer = attn_layers.Tokenizer(unit="character", name="tokenizer")
    texts = number_texts()
    tokenizer.adapt([t for lang in LANGUAGES for t in texts[lang]])
    text_ids = [
        tokenizer.encode(texts[lang], sequence_length=TEXT_LENGTH)
        for lang in LANGUAGES
    ]
    train_numbers = np.repeat(numbers, voices_per_number)
    train_utt = utterances(train_numbers, train_variants, rng)
    test_utt = utterances(np.tile(numbers, galleries), test_variants, rng)
    train_waves = speech_data.synthesize_all(train_utt, cache)
    test_waves = speech_data.synthesize_all(test_utt, cache)
    # Peak 0.5, at most LENGTH samples (as `speech_data.to_fixed_length`).
    waves = {n: [] for n in numbers}
    for n, w in zip(train_numbers, train_waves):
        w = 0.5 * w / max(np.abs(w).max(), 1e-6)
        cut = max(len(w) - LENGTH, 0) // 2
        waves[n].append(w[cut : cut + LENGTH])
    x_test_audio = speech_data.to_fixed_length(
        test_waves, LENGTH, rng, (10, 30)
    )
    print(
        f"data: {len(train_waves)} training utterances, {len(test_waves)} "
        f"by held-out voices {test_variants}; vocabulary "
        f"{tokenizer.vocabulary_size}; {time.time() - start:.0f} s"
    )

    model = build_model(tokenizer, hidden_dim, num_layers, seed=args.seed)
    total_steps = epochs * steps
    schedule = keras.optimizers.schedules.CosineDecay(
        1e-4, total_steps, warmup_target=2e-3, warmup_steps=total_steps // 10
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=0.05),
        loss={
            f"{a}_{b}": losses.InfoNCE(temperature=TEMPERATURE)
            for a, b in PAIRS
        },
    )
    model.summary()
    data = Batches(numbers, train_digits, waves, text_ids, steps, args.seed)
    start = time.time()
    history = model.fit(data, epochs=epochs, verbose=2 if args.quick else 1)
    train_time = time.time() - start

    # Held-out galleries: new digit images, new voices; every language.
    model.save(out / "multimodal_contrastive.keras")
    recalls = {
        "image->audio": [],
        "audio->image": [],
        "audio->text": [],
        "text->audio": [],
        "image->text": [],
    }
    test_rng = np.random.default_rng(args.seed + 1)
    first = None
    for g in range(galleries):
        image = number_images(numbers, test_digits, test_rng)
        audio = x_test_audio[g * count : (g + 1) * count]
        for k in range(len(LANGUAGES)):
            e = embed(model, image, audio, text_ids[k][:count])
            if k == 0:
                recalls["image->audio"].append(
                    recall_at_1(e["image"], e["audio"])
                )
                recalls["audio->image"].append(
                    recall_at_1(e["audio"], e["image"])
                )
                if first is None:
                    first = e
            recalls["audio->text"].append(recall_at_1(e["audio"], e["text"]))
            recalls["text->audio"].append(recall_at_1(e["text"], e["audio"]))
            recalls["image->text"].append(recall_at_1(e["image"], e["text"]))
    recalls = {k: float(np.mean(v)) for k, v in recalls.items()}

    # Baseline: CCA on raw pixels, log-mel features, character counts.
    pairs_rng = np.random.default_rng(args.seed + 2)
    mel = mel_spectrogram()
    f_train = keras.ops.convert_to_numpy(
        mel(
            speech_data.to_fixed_length(train_waves, LENGTH, pairs_rng, (5, 30))
        )
    )
    pick = pairs_rng.integers(len(f_train), size=min(len(f_train), 4000))
    train_n = train_numbers[pick]
    lang = pairs_rng.integers(len(LANGUAGES), size=len(pick))
    f_test = keras.ops.convert_to_numpy(mel(x_test_audio[:count]))
    baseline = cca_baseline(
        {
            "image": number_images(train_n, train_digits, pairs_rng).reshape(
                len(pick), -1
            ),
            "audio": f_train[pick].reshape(len(pick), -1),
            "text": char_counts(
                np.stack([text_ids[k][n] for k, n in zip(lang, train_n)]),
                tokenizer.vocabulary_size,
            ),
        },
        {
            "image": number_images(numbers, test_digits, pairs_rng).reshape(
                count, -1
            ),
            "audio": f_test.reshape(count, -1),
            "text": char_counts(text_ids[0][:count], tokenizer.vocabulary_size),
        },
        components=min(16, count // 2),
    )

    demo = [42, 7, 99, 13]
    demo = [n for n in demo if n < count]
    demo_answers, demo_similarity = retrieve_words(
        model, tokenizer, speak(demo, DEMO_VOICE, cache), numbers
    )

    if args.figures:
        figures = pathlib.Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        save_figure(
            figures / "multimodal_similarity.png",
            {
                "image -> audio": first["image"] @ first["audio"].T,
                "audio -> text": first["audio"] @ first["text"].T,
            },
            numbers,
        )

    backend = keras.backend.backend()
    print()
    print(
        f"recall@1 among {count} held-out numbers "
        f"(mean of {galleries} galleries; text: mean of "
        f"{len(LANGUAGES)} languages)"
    )
    print(f"{'direction':<16}{'VATT-style':>12}{'CCA baseline':>14}")
    for key, value in recalls.items():
        base = baseline.get(key)
        base = f"{base:>14.3f}" if base is not None else f"{'':>14}"
        print(f"{key:<16}{value:>12.3f}{base}")
    print(
        f"backend {backend}, {model.count_params():,} parameters, {epochs} "
        f"epochs, train time {train_time:.0f} s"
    )
    result = {
        "backend": backend,
        "recall_at_1": recalls,
        "baseline_recall_at_1": baseline,
        "loss": [float(v) for v in history.history["loss"]],
        "train_time_s": round(train_time, 1),
        "demo_numbers": demo,
        "demo_voice": DEMO_VOICE,
        "demo_answers": demo_answers,
        "demo_similarity": demo_similarity.tolist(),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.predict:
        predict(arguments)
    else:
        main(arguments)
