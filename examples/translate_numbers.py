"""Translate English number words to French with an encoder-decoder Transformer.

"three hundred and forty-two thousand, six hundred and eleven" -> "trois cent
quarante-deux mille six cent onze". The pairs come from `num2words` for the
numbers 0 to 999,999. A fixed random 5% of those numbers is held out: no
training or validation pair is ever drawn from it, and the test set is drawn
only from it, so every test number is one the model never saw. Numbers are
drawn with as many of each length (1 to 6 digits) as of any other, so small
numbers are not drowned by the 900,000 six-digit ones.

The task is more than a word-for-word lookup: "and" disappears, "one
hundred" is "cent", French writes "deux cents" but "deux cent un" and
"deux cent mille", "quatre-vingts" but "quatre-vingt mille", "vingt et un".
The baseline shows how far a word-for-word glossary gets: each English word
is replaced by the French word it co-occurs with most (Dice coefficient over
the training pairs), words without a clear partner dropped.

Model: `keras_attn.models.Transformer` (2 encoder and 2 decoder blocks, 4
heads, width 64), words as tokens with one `keras_attn.layers.Tokenizer`
shared by both languages. The tokenizer sits at the input of the saved
functional model, so the `.keras` file carries the vocabulary:
`--predict` loads it in a fresh process and translates new inputs.

Results of the full run (`python examples/translate_numbers.py`, seed 0,
KERAS_BACKEND=jax, 2-core CPU shared with other jobs):

| model                   | greedy exact | beam (4) exact | train time |
|-------------------------|--------------|----------------|------------|
| word-for-word glossary  | (pending)    | -              | -          |
| Transformer             | (pending)    | (pending)      | (pending)  |

Run:

    KERAS_BACKEND=jax python examples/translate_numbers.py
    python examples/translate_numbers.py --quick
    python examples/translate_numbers.py --figures docs/images
    python examples/translate_numbers.py --predict "forty-two" \\
        "two hundred thousand and eighty"
"""

import argparse
import collections
import json
import os
import time

import keras
import numpy as np
from num2words import num2words

from keras_attn import layers
from keras_attn import models
from keras_attn import plot

MODEL_FILE = "translate_numbers.keras"
SOURCE_LENGTH = 12  # English: at most 9 words for 0..999,999.
TARGET_LENGTH = 14  # start + at most 11 French words + end, with room.
# Inputs the run translates at the end, and `--predict` again after loading.
SAMPLES = (
    "forty-two",
    "eighty thousand",
    "two hundred and one thousand, three hundred and ninety-seven",
    "seven hundred and seventy-one thousand and eighty",
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="seconds run")
    parser.add_argument("--out", default="examples/output")
    parser.add_argument("--figures", default=None, help="write figures here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--num-train", type=int, default=None)
    parser.add_argument(
        "--predict",
        nargs="+",
        default=None,
        metavar="TEXT",
        help="load the saved model and translate these English numbers",
    )
    return parser.parse_args(argv)


# -- data --------------------------------------------------------------------


def english(n):
    return num2words(int(n), lang="en")


def french(n):
    return num2words(int(n), lang="fr")


def held_out_mask(seed, fraction=0.05):
    """A fixed random `fraction` of 0..999,999, flagged True."""
    rng = np.random.default_rng(seed + 1)
    return rng.random(1_000_000) < fraction


def draw_numbers(rng, count, allowed):
    """`count` numbers among `allowed` (bool over 0..999,999), as many of
    each length (1 to 6 digits) as of another."""
    numbers = []
    for digits in range(1, 7):
        low = 0 if digits == 1 else 10 ** (digits - 1)
        pool = np.flatnonzero(allowed[low : 10**digits]) + low
        if len(pool):
            numbers.append(rng.choice(pool, size=count // 6 + 1))
    numbers = np.concatenate(numbers)
    return rng.permutation(numbers)[:count]


def make_splits(seed, num_train, num_test):
    held_out = held_out_mask(seed)
    rng = np.random.default_rng(seed)
    train = draw_numbers(rng, num_train, ~held_out)
    test = np.unique(draw_numbers(rng, num_test, held_out))
    assert not held_out[train].any() and held_out[test].all()
    return train, rng.permutation(test)


# -- baseline ------------------------------------------------------------------


def glossary_baseline(source_texts, target_texts, threshold=0.3):
    """Word-for-word glossary: each English word -> the French word with the
    highest Dice coefficient over the training pairs (dropped below
    `threshold`)."""
    source_count, target_count = collections.Counter(), collections.Counter()
    pair_count = collections.Counter()
    for source, target in zip(source_texts, target_texts):
        source_words, target_words = set(source.split()), set(target.split())
        source_count.update(source_words)
        target_count.update(target_words)
        pair_count.update((s, t) for s in source_words for t in target_words)
    glossary = {}
    for (s, t), both in pair_count.items():
        dice = 2 * both / (source_count[s] + target_count[t])
        if dice >= threshold and dice > glossary.get(s, ("", 0.0))[1]:
            glossary[s] = (t, dice)

    def translate(text):
        words = [glossary[w][0] for w in text.split() if w in glossary]
        return " ".join(words)

    return translate


# -- model ---------------------------------------------------------------------


def build_model(tokenizer, quick):
    transformer = models.Transformer(
        vocabulary_size=tokenizer.vocabulary_size,
        max_sequence_length=16,
        num_layers=1 if quick else 2,
        num_heads=4,
        hidden_dim=32 if quick else 64,
        intermediate_dim=64 if quick else 128,
        dropout=0.0 if quick else 0.1,
        padding_token=tokenizer.pad_id,
        name="transformer",
    )
    # The saved model: token ids in, next-token logits out, with the
    # tokenizer (and so the vocabulary) at its input.
    source = keras.Input((None,), dtype="int32", name="encoder_token_ids")
    target = keras.Input((None,), dtype="int32", name="token_ids")
    logits = transformer(
        {
            "encoder_token_ids": tokenizer(source),
            "decoder_token_ids": tokenizer(target),
        }
    )
    model = keras.Model(
        {"encoder_token_ids": source, "token_ids": target},
        logits,
        name="translate_numbers",
    )
    return model, transformer


def encode_pairs(tokenizer, source_texts, target_texts):
    """Teacher forcing: the decoder reads <start> y and predicts y <end>."""
    source = tokenizer.encode(source_texts, sequence_length=SOURCE_LENGTH)
    target = tokenizer.encode(
        target_texts,
        sequence_length=TARGET_LENGTH,
        add_start=True,
        add_end=True,
    )
    inputs = {"encoder_token_ids": source, "token_ids": target[:, :-1]}
    return inputs, target[:, 1:]


def translate(transformer, tokenizer, texts, method="greedy", **options):
    source = tokenizer.encode(texts, sequence_length=SOURCE_LENGTH)
    tokens = transformer.generate(
        source,
        max_length=TARGET_LENGTH - 1,
        start_token=tokenizer.start_id,
        end_token=tokenizer.end_id,
        method=method,
        **options,
    )
    return tokenizer.decode(tokens)


def translate_all(transformer, tokenizer, texts, batch_size=500, **kwargs):
    out = []
    for i in range(0, len(texts), batch_size):
        out += translate(
            transformer, tokenizer, texts[i : i + batch_size], **kwargs
        )
    return out


def exact(predictions, references):
    return float(np.mean([p == r for p, r in zip(predictions, references)]))


def cross_attention_figure(transformer, tokenizer, text, path):
    """Heat map of what each French word read in the English source."""
    source = tokenizer.encode([text], sequence_length=SOURCE_LENGTH)
    tokens, scores = transformer.generate(
        source,
        max_length=TARGET_LENGTH - 1,
        start_token=tokenizer.start_id,
        end_token=tokenizer.end_id,
        return_attention_scores=True,
    )
    tokens = np.asarray(keras.ops.convert_to_numpy(tokens))[0]
    scores = np.asarray(keras.ops.convert_to_numpy(scores))[0]
    source_words = text.split()
    vocabulary = tokenizer.get_vocabulary()
    # Row i of `scores` produced token i; keep the French words and <end>.
    rows = [
        i
        for i, t in enumerate(tokens)
        if t not in (tokenizer.pad_id, tokenizer.start_id)
    ]
    rows = rows[: [tokens[i] for i in rows].index(tokenizer.end_id) + 1]
    figure = plot.plot_attention(
        scores[rows][:, : len(source_words)],
        source_words,
        [vocabulary[tokens[i]] for i in rows],
        path=path,
    )
    return figure


# -- main ----------------------------------------------------------------------


def predict(args):
    model = keras.saving.load_model(os.path.join(args.out, MODEL_FILE))
    tokenizer = model.get_layer("tokenizer")
    transformer = model.get_layer("transformer")
    answers = translate(transformer, tokenizer, list(args.predict))
    for text, answer in zip(args.predict, answers):
        print(f"{text} -> {answer}")
    print("PREDICT " + json.dumps(dict(zip(args.predict, answers))))


def main(argv=None):
    args = parse_args(argv)
    if args.predict:
        return predict(args)
    keras.utils.set_random_seed(args.seed)
    num_train = args.num_train or (3000 if args.quick else 24000)
    num_test = 300 if args.quick else 2000
    epochs = args.epochs or (2 if args.quick else 6)
    verbose = 2 if args.quick else 1

    train_numbers, test_numbers = make_splits(args.seed, num_train, num_test)
    num_valid = len(train_numbers) // 20
    valid_numbers = train_numbers[:num_valid]
    train_numbers = train_numbers[num_valid:]
    train_en = [english(n) for n in train_numbers]
    train_fr = [french(n) for n in train_numbers]
    valid_en = [english(n) for n in valid_numbers]
    valid_fr = [french(n) for n in valid_numbers]
    test_en = [english(n) for n in test_numbers]
    test_fr = [french(n) for n in test_numbers]
    print(
        f"{len(train_en)} training pairs ({len(set(train_numbers))} distinct "
        f"numbers), {len(valid_en)} validation, {len(test_en)} held-out test"
    )

    tokenizer = layers.Tokenizer(unit="word", name="tokenizer")
    tokenizer.adapt(train_en + train_fr)
    print(f"vocabulary: {tokenizer.vocabulary_size} words (both languages)")

    model, transformer = build_model(tokenizer, args.quick)
    steps = epochs * -(-len(train_en) // 64)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.02, warmup_target=2e-3, warmup_steps=steps // 20
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=tokenizer.pad_id
        ),
    )
    x_train, y_train = encode_pairs(tokenizer, train_en, train_fr)
    x_valid, y_valid = encode_pairs(tokenizer, valid_en, valid_fr)
    start = time.time()
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=epochs,
        # (The quick run skips validation: one compilation less.)
        validation_data=None if args.quick else (x_valid, y_valid),
        verbose=verbose,
    )
    train_time = time.time() - start
    print(f"parameters: {transformer.count_params()}")

    start = time.time()
    greedy = translate_all(transformer, tokenizer, test_en)
    greedy_time = time.time() - start
    num_beam = 50 if args.quick else 500
    start = time.time()
    beam = translate_all(
        transformer, tokenizer, test_en[:num_beam], method="beam", beam_width=4
    )
    beam_time = time.time() - start
    baseline = glossary_baseline(train_en, train_fr)
    baseline_out = [baseline(text) for text in test_en]

    digits = np.array([len(str(n)) for n in test_numbers])
    correct = np.array([p == r for p, r in zip(greedy, test_fr)])
    by_digits = {
        int(d): round(float(correct[digits == d].mean()), 4)
        for d in np.unique(digits)
    }
    result = {
        "backend": keras.backend.backend(),
        "loss": [round(float(v), 4) for v in history.history["loss"]],
        "val_loss": [
            round(float(v), 4) for v in history.history.get("val_loss", [])
        ],
        "greedy_exact": exact(greedy, test_fr),
        "beam_exact": exact(beam, test_fr[:num_beam]),
        "num_beam": num_beam,
        "baseline_exact": exact(baseline_out, test_fr),
        "greedy_exact_by_digits": by_digits,
        "train_time_s": round(train_time, 1),
        "greedy_time_s": round(greedy_time, 1),
        "beam_time_s": round(beam_time, 1),
        "parameters": int(transformer.count_params()),
        "samples": dict(
            zip(SAMPLES, translate(transformer, tokenizer, list(SAMPLES)))
        ),
    }

    errors = [
        (e, p, r) for e, p, r in zip(test_en, greedy, test_fr) if p != r
    ]
    for e, p, r in errors[:5]:
        print(f"  error: {e!r} -> {p!r} (expected {r!r})")
    for text, answer in result["samples"].items():
        print(f"  {text} -> {answer}")
    print()
    print(f"Held-out numbers: {len(test_en)} (beam search on {num_beam})")
    print("| model                  | greedy exact | beam (4) exact |")
    print("|------------------------|--------------|----------------|")
    print(f"| word-for-word glossary | {result['baseline_exact']:12.4f} |")
    print(
        f"| Transformer            | {result['greedy_exact']:12.4f} "
        f"| {result['beam_exact']:14.4f} |"
    )
    print(f"exact match by number of digits: {by_digits}")
    print(
        f"train {train_time:.0f} s, greedy decoding {greedy_time:.1f} s, "
        f"beam {beam_time:.1f} s, backend {keras.backend.backend()}"
    )

    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, MODEL_FILE))
    if args.figures:
        os.makedirs(args.figures, exist_ok=True)
        # A held-out number with six digits.
        six = [t for t, n in zip(test_en, test_numbers) if n >= 100_000]
        cross_attention_figure(
            transformer,
            tokenizer,
            six[0],
            os.path.join(args.figures, "translate_cross_attention.png"),
        )
    with open(os.path.join(args.out, "translate_numbers.json"), "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    print("RESULT " + json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
