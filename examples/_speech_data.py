"""Synthetic speech for the examples: eSpeak NG voices, cached, with noise.

Shared by `spoken_digits.py` and `multimodal_contrastive.py` (a helper
module, not an example: it has no command line of its own). Speech comes
from the `espeak-ng` program (Debian's `espeak-ng` package; the project's
set-up installs it): `espeak-ng -v VOICE -s SPEED -p PITCH --stdout TEXT`
writes a 22,050 Hz WAV file, decoded here with the standard `wave` module.

A voice is an accent (`en-us`, `en-gb-scotland`, ...) with a variant
(`+f3`, `+m2`, `+Alex`, ...: pitch range, formants, breathiness). The
variants are split once, by name, into the ones training may use and the
held-out ones only the test set uses, so "a held-out voice" is a variant
the model never heard, in any accent.

Synthesis costs a few milliseconds per word; the waveforms of a list of
utterances are cached in one `.npz` file under the example's `--out`
directory, keyed by a hash of the list.

`SpecAugment` is the training-only augmentation of log-mel images both
examples use (mel band shift and masks); it is registered for saving
under the package name `speech_data`.
"""

import concurrent.futures
import hashlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import wave

import keras
import numpy as np

# The rate of the waveforms the examples use: espeak-ng's 22,050 Hz halved.
SAMPLING_RATE = 11025

ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-029",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-gb-x-gbcwmd",
    "en-gb-x-gbclan",
)


def check_espeak():
    """Raises a readable error when the `espeak-ng` program is missing."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit(
            "This example needs the `espeak-ng` program: "
            "`sudo apt-get install espeak-ng` (Debian/Ubuntu), "
            "`brew install espeak-ng` (macOS)."
        )


def variants():
    """The names of espeak-ng's voice variants, sorted."""
    check_espeak()
    listing = subprocess.run(
        ["espeak-ng", "--voices=variant"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[1:]
    # The file column is "!v/NAME"; names with a space cannot be passed
    # to -v, so they are left out.
    names = set()
    for line in listing:
        match = re.search(r"!v/(\S+)\s*$", line)
        if match:
            names.add(match.group(1))
    return sorted(names, key=str.lower)


def split_variants(num_test=12):
    """(train, test) variant names: every k-th sorted name is held out."""
    names = variants()
    step = max(len(names) // num_test, 2)
    test = names[step // 2 :: step][:num_test]
    train = [name for name in names if name not in test]
    return train, test


def synthesize(text, voice="en", speed=160, pitch=50):
    """One utterance as float32 samples in [-1, 1] at `SAMPLING_RATE`."""
    wav = subprocess.run(
        [
            "espeak-ng",
            "-v",
            voice,
            "-s",
            str(int(speed)),
            "-p",
            str(int(pitch)),
            "--stdout",
            text,
        ],
        capture_output=True,
        check=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        # The header of a streamed WAV holds no length: read to the end.
        frames = reader.readframes(1 << 30)
    samples = np.frombuffer(frames, "<i2").astype("float32") / 32768.0
    if rate == 2 * SAMPLING_RATE:
        # Halve the rate: the mean of each pair (a crude low-pass).
        samples = samples[: len(samples) // 2 * 2].reshape(-1, 2).mean(1)
    elif rate != SAMPLING_RATE:
        raise ValueError(f"espeak-ng wrote {rate} Hz, expected 22050")
    return samples


def trim(samples, threshold=0.02):
    """Drops the leading and trailing silence."""
    loud = np.flatnonzero(np.abs(samples) > threshold * np.abs(samples).max())
    if len(loud) == 0:
        return samples
    return samples[loud[0] : loud[-1] + 1]


def synthesize_all(utterances, cache_dir, workers=4):
    """Synthesizes `(text, voice, speed, pitch)` tuples, cached on disk.

    Returns a list of trimmed float32 waveforms, one per utterance.
    """
    check_espeak()
    utterances = [tuple(u) for u in utterances]
    key = hashlib.sha1(json.dumps(utterances).encode()).hexdigest()[:16]
    path = pathlib.Path(cache_dir) / f"speech_{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            flat, ends = cached["samples"], cached["ends"]
        return np.split(flat, ends[:-1])
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        waves = list(pool.map(lambda u: trim(synthesize(*u)), utterances))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.npz")
    np.savez(
        tmp,
        samples=np.concatenate(waves),
        ends=np.cumsum([len(w) for w in waves]),
    )
    os.replace(tmp, path)
    return waves


def to_fixed_length(waves, length, rng=None, snr_db=None):
    """Stacks waveforms into `(N, length)`, with optional shift and noise.

    Each waveform is scaled to a peak of 0.5, cut to `length` samples if
    longer (centered), and placed at a random offset (`rng`) or at the
    start. With `snr_db` (a pair `(low, high)`), white noise is added at
    a signal-to-noise ratio drawn uniformly in decibels.
    """
    out = np.zeros((len(waves), length), "float32")
    for i, samples in enumerate(waves):
        samples = 0.5 * samples / max(np.abs(samples).max(), 1e-6)
        if len(samples) > length:
            start = (len(samples) - length) // 2
            samples = samples[start : start + length]
        offset = 0
        if rng is not None:
            offset = int(rng.integers(0, length - len(samples) + 1))
        out[i, offset : offset + len(samples)] = samples
        if snr_db is not None:
            power = np.mean(samples**2)
            snr = rng.uniform(*snr_db)
            noise_std = np.sqrt(power / 10 ** (snr / 10))
            out[i] += rng.normal(0, noise_std, length).astype("float32")
    return out


@keras.saving.register_keras_serializable(package="speech_data")
class SpecAugment(keras.layers.Layer):
    """Training-only augmentation of normalized log-mel images.

    Each clip's mel bands are shifted by a random whole number of bands
    in `[-max_shift, max_shift]` (a crude vocal-tract-length change: a
    different voice moves the formants along the mel axis), then one
    band of up to `freq_mask` mel bins and one stretch of up to
    `time_mask` frames are set to zero (SpecAugment, Park et al., 2019).
    At inference the layer is the identity.
    """

    def __init__(
        self, max_shift=2, freq_mask=4, time_mask=8, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.max_shift = max_shift
        self.freq_mask = freq_mask
        self.time_mask = time_mask
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _band(self, batch, size, max_width):
        # A (batch, size) 0/1 mask: one random run of < max_width ones.
        start = keras.random.randint(
            (batch, 1), 0, size, seed=self.seed_generator
        )
        width = keras.random.randint(
            (batch, 1), 0, max_width + 1, seed=self.seed_generator
        )
        pos = keras.ops.arange(size)[None, :]
        return keras.ops.cast(
            (pos >= start) & (pos < start + width), self.compute_dtype
        )

    def call(self, x, training=False):
        if not training:
            return x
        batch = keras.ops.shape(x)[0]
        mels, frames = x.shape[1], x.shape[2]
        shift = keras.random.randint(
            (batch, 1),
            -self.max_shift,
            self.max_shift + 1,
            seed=self.seed_generator,
        )
        # Source band of each output band, (B, mels), clipped at the edges.
        source = keras.ops.clip(
            keras.ops.arange(mels)[None, :] - shift, 0, mels - 1
        )
        # (B, mels, mels) one-hot rows @ (B, mels, frames) -> shifted.
        x = keras.ops.einsum(
            "bmn,bnt->bmt", keras.ops.one_hot(source, mels, dtype=x.dtype), x
        )
        keep_f = 1.0 - self._band(batch, mels, self.freq_mask)  # (B, mels)
        keep_t = 1.0 - self._band(batch, frames, self.time_mask)  # (B, T)
        return x * keep_f[:, :, None] * keep_t[:, None, :]

    def get_config(self):
        config = super().get_config()
        config.update(
            max_shift=self.max_shift,
            freq_mask=self.freq_mask,
            time_mask=self.time_mask,
            seed=self.seed,
        )
        return config
