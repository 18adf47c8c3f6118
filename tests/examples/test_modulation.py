"""examples/modulation.py: trains, learns, and its saved model answers alike."""

import json

import numpy as np
import pytest

from tests.examples._run import run_example
from tests.examples._run import run_example_here


def _tagged(output, tag):
    lines = [line for line in output.splitlines() if line.startswith(tag)]
    assert lines, f"no {tag} line in the output:\n{output[-2000:]}"
    return json.loads(lines[-1][len(tag) :])


@pytest.mark.large
def test_quick_run_learns_and_predict_repeats_the_answers(tmp_path):
    result = _tagged(
        run_example("modulation", "--quick", "--out", tmp_path), "RESULT "
    )
    for name in ("transformer", "cnn"):
        model = result["models"][name]
        assert model["last_loss"] < model["first_loss"], (name, model)
        table = result["accuracy_by_snr"][name]
        assert sorted(int(s) for s in table) == list(range(-10, 21, 2))
    sizes = [result["models"][n]["parameters"] for n in ("transformer", "cnn")]
    assert 0.8 < sizes[1] / sizes[0] < 1.25

    # --predict (run in this process, which never built the model) loads
    # the saved Transformer and answers the same generated frames with the
    # same labels as right after training.
    items = result["predict_items"]
    answer = _tagged(
        run_example_here("modulation", "--out", tmp_path, "--predict", *items),
        "PREDICT ",
    )
    assert answer["items"] == items
    assert answer["labels"] == result["predict_labels"]


def _load_example():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "examples"
    spec = importlib.util.spec_from_file_location(
        "modulation_example", path / "modulation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_clean_symbols_match_their_constellations():
    # The generator against the textbook definitions, written out here.
    mod = _load_example()
    qam16 = mod.constellation("16QAM")
    levels = np.array([-3, -1, 1, 3]) / np.sqrt(10)  # unit mean power
    expected = np.sort_complex((levels[:, None] + 1j * levels).ravel())
    np.testing.assert_allclose(np.sort_complex(qam16), expected, atol=1e-12)
    psk8 = mod.constellation("8PSK")
    np.testing.assert_allclose(np.abs(psk8), 1.0)
    np.testing.assert_allclose(
        np.sort(np.angle(psk8) % (2 * np.pi)), np.arange(8) * np.pi / 4
    )
    # RRC: unit energy, and RRC * RRC is a Nyquist pulse (zero at every
    # other symbol instant).
    taps = mod.rrc_taps()
    np.testing.assert_allclose(np.sum(taps**2), 1.0)
    raised = np.convolve(taps, taps)
    centre = len(raised) // 2
    sps = mod.SPS
    others = raised[centre % sps :: sps]
    others = np.delete(others, centre // sps)
    # (1%, not 0: the pulse is cut to 8 symbols.)
    assert np.max(np.abs(others)) < 0.02 * raised[centre]


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_channel_sets_the_noise_power_for_the_snr(snr):
    # Without multipath energy to speak of, the received power splits into
    # signal and noise at the asked ratio (measured on a constant carrier).
    mod = _load_example()
    rng = np.random.default_rng(0)
    clean = np.ones((400, 4096), complex)
    received = mod.channel(clean, np.full(400, snr), rng)
    # Unit power after the receiver's scaling.
    np.testing.assert_allclose(np.mean(np.abs(received) ** 2, 1), 1.0)
    # The noise is what a 33-tap moving average (a narrow low-pass, which
    # keeps the slowly rotating carrier) removes: white noise of power s2
    # leaves a residual of power s2 * (1 - 1/33).
    kernel = np.ones(33) / 33
    inner = received[:, 64:-64]
    smooth = np.array([np.convolve(r, kernel, "same") for r in inner])
    noise = np.mean(np.abs(inner - smooth) ** 2) / (1 - 1 / 33)
    measured = 10 * np.log10((1.0 - noise) / noise)
    assert abs(measured - snr) < 0.3


def test_iq_features_match_complex_arithmetic():
    # The feature layer against NumPy's complex numbers.
    import keras

    mod = _load_example()
    rng = np.random.default_rng(1)
    iq = rng.normal(size=(2, 128, 2)).astype("float32")
    out = keras.ops.convert_to_numpy(mod.IQFeatures()(iq))
    assert out.shape == (2, 128, mod.FEATURES)
    x = iq[..., 0] + 1j * iq[..., 1]
    before = np.pad(x, ((0, 0), (1, 0)), constant_values=1)[:, :-1]
    # Matched filter: the RRC taps, centred, then unit mean power.
    y = np.stack([np.convolve(row, mod.rrc_taps(), "same") for row in x])
    y = y / np.sqrt(np.mean(np.abs(y) ** 2, axis=1, keepdims=True))
    symbol_before = np.pad(y, ((0, 0), (mod.SPS, 0)))[:, : -mod.SPS]
    d = y * np.conj(symbol_before)
    u = np.where(np.abs(d) > 0, d / np.maximum(np.abs(d), 1e-30), 0)
    columns = [
        x.real,
        x.imag,
        np.abs(x),
        np.angle(x * np.conj(before)) / np.pi,
        y.real,
        y.imag,
        np.abs(y),
        d.real,
        d.imag,
    ]
    for power in (2, 4, 8):
        columns += [(u**power).real, (u**power).imag]
    for centre in np.arange(0.1, 2.0, 0.2):
        columns.append(np.exp(-0.5 * ((np.abs(y) - centre) / 0.1) ** 2))
    expected = np.stack(columns, axis=-1)
    # At t = 0 the step is 0 (the layer's convention; NumPy's angle of a
    # signed complex zero could be -pi, hence the 1 padded in front).
    expected[:, 0, 3] = 0.0
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("name,power", [("QPSK", 4), ("8PSK", 8)])
def test_phasor_power_folds_a_psk_whatever_the_carrier_phase(name, power):
    # Clean PSK at a random carrier phase: at the symbol instants the
    # symbol-to-symbol phase change is a multiple of 2 pi / order, so the
    # unit phasor to the power `order` is 1; to a lower power it is not.
    import keras

    mod = _load_example()
    rng = np.random.default_rng(2)
    clean = mod.modulate(name, 4, mod.FRAME, rng)
    clean = clean * np.exp(2j * np.pi * rng.random((4, 1)))
    iq = np.stack([clean.real, clean.imag], -1).astype("float32")
    out = keras.ops.convert_to_numpy(mod.IQFeatures()(iq))
    # Symbol instants away from the frame edges (filter transients).
    instants = np.arange(10 * mod.SPS, mod.FRAME - 10 * mod.SPS, mod.SPS)
    column = {2: 9, 4: 11, 8: 13}  # real part of u ** power
    folded = out[:, instants, column[power]]
    assert np.mean(folded) > 0.9
    lower = out[:, instants, column[power // 2]]
    assert np.mean(lower) < 0.5
