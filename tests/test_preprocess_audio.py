"""Audio preprocessing: golden tensors, resample / fbank against independent implementations, errors.

torchaudio is the reference implementation; when it is importable the numpy code
is also compared with it directly. Otherwise the references here are written
from the formulas (direct windowed-sinc sum, Kaldi's MelBanks) in float64 with
scipy, sharing no code with bindrt.
"""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import (
    AUDIO_MEAN,
    AUDIO_STD,
    AudioArray,
    kaldi_fbank,
    load_audio,
    preprocess,
    preprocess_audio,
    preprocess_audios,
    resample,
    sample_clips,
    waveform_to_melspec,
)

GOLDEN = Path(__file__).parent / "golden"


# ------------------------------------------------------------------ independent references
def ref_resample(x: np.ndarray, orig: int, new: int, width: int = 6, rolloff: float = 0.99) -> np.ndarray:
    """Direct sum y[m] = sum_i x[i] * h(i/orig - m/new) with the Hann-windowed sinc, float64."""
    g = math.gcd(orig, new)
    o, n = orig // g, new // g
    base = min(o, n) * rolloff
    out_len = math.ceil(n * len(x) / o)
    t = (np.arange(len(x))[None, :] / o - np.arange(out_len)[:, None] / n) * base
    t = np.clip(t, -width, width)
    h = np.sinc(t) * np.cos(np.pi * t / (2 * width)) ** 2 * (base / o)
    return h @ x.astype(np.float64)


def ref_fbank(x: np.ndarray, sr: int = 16000, bins: int = 128) -> np.ndarray:
    """Kaldi fbank (htk_compat, no energy, hanning, dither 0, 25/10 ms) from Kaldi's formulas, float64."""
    scipy_fft = pytest.importorskip("scipy.fft")
    scipy_windows = pytest.importorskip("scipy.signal.windows")
    size, shift, nfft = 400, 160, 512
    m = 1 + (len(x) - size) // shift
    frames = np.stack([x[i * shift : i * shift + size] for i in range(m)]).astype(np.float64)
    frames -= frames.mean(axis=1, keepdims=True)
    pre = frames.copy()
    pre[:, 1:] -= 0.97 * frames[:, :-1]
    pre[:, 0] -= 0.97 * frames[:, 0]
    power = np.abs(scipy_fft.rfft(pre * scipy_windows.hann(size, sym=True), nfft)) ** 2

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (bins + 1)
    banks = np.zeros((bins, nfft // 2 + 1))
    for b in range(bins):
        left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(nfft // 2):  # the Nyquist bin gets no weight in Kaldi
            f = mel(k * sr / nfft)
            if left < f < right:
                banks[b, k] = (f - left) / (center - left) if f <= center else (right - f) / (right - center)
    return np.log(np.maximum(power @ banks.T, np.finfo(np.float32).eps))


def _noise(n: int, seed: int, channels: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((channels, n)) * 0.2).astype(np.float32)


# ------------------------------------------------------------------ golden
def test_golden_audio() -> None:
    names = json.loads((GOLDEN / "inputs.json").read_text())["audio"]
    got = preprocess_audios([GOLDEN / "media" / n for n in names])
    want = np.load(GOLDEN / "golden.npz")["pre_audio"]
    assert got.shape == want.shape == (2, 3, 1, 128, 204) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 2e-3


def test_golden_audio_from_bytes_and_array() -> None:
    want = np.load(GOLDEN / "golden.npz")["pre_audio"]
    data = (GOLDEN / "media" / "stereo22k.wav").read_bytes()
    assert np.abs(preprocess_audio(data) - want[0]).max() <= 2e-3
    pcm, sr = sf.read(io.BytesIO(data), dtype="int16")
    assert np.abs(preprocess_audio(AudioArray(pcm.T, sr)) - want[0]).max() <= 2e-3
    assert np.abs(preprocess("audio", (pcm.T.astype(np.float32) / 32768, sr))[0] - want[0]).max() <= 2e-3


def test_reference_in_place_mean_subtraction_is_reproduced() -> None:
    # The reference subtracts each clip's mean in place on a view, leaking into later overlapping
    # clips; independent clips match the golden for clip 0 only.
    want = np.load(GOLDEN / "golden.npz")["pre_audio"][1]
    wav, sr = load_audio(GOLDEN / "media" / "tone16k.wav")
    independent = np.stack([waveform_to_melspec(wav[:, s:e]) for s, e in sample_clips(wav.shape[1], sr)])
    assert np.abs(independent[0] - want[0]).max() <= 2e-3
    assert np.abs(preprocess_audio(GOLDEN / "media" / "tone16k.wav") - want).max() <= 2e-3


def test_container_soundfile_cannot_read_goes_through_pyav() -> None:
    av = pytest.importorskip("av")
    t = np.arange(44100 * 2) / 44100
    x = (0.5 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)])).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:  # AAC in MP4: libsndfile has no reader for it
        s = c.add_stream("aac", rate=44100)
        s.layout = "stereo"
        for k in range(0, x.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x[:, k : k + 1024]), format="fltp", layout="stereo")
            frame.sample_rate = 44100
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    wav, sr = load_audio(buf.getvalue())
    assert sr == 44100 and wav.shape[0] == 2 and abs(wav.shape[1] - x.shape[1]) <= 4096
    spectrum = np.abs(np.fft.rfft(wav[0, 8192 : 8192 + 44100]))  # 1 s window: bin k is k Hz
    assert abs(int(spectrum.argmax()) - 440) <= 1
    assert preprocess_audio(buf.getvalue()).shape == (3, 1, 128, 204)


# ------------------------------------------------------------------ clip sampler
def test_sample_clips_exact_fractions() -> None:
    # 2.5 s at 16 kHz: max_start 0.5, step 1/6 s -> starts 0, 2666.67, 5333.33 samples (truncated).
    assert sample_clips(40000, 16000) == [(0, 32000), (2666, 34666), (5333, 37333)]
    # 4 s: step 2/3 s.
    assert sample_clips(64000, 16000) == [(0, 32000), (10666, 42666), (21333, 53333)]
    # shorter than 2 s: three identical clips from 0.
    assert sample_clips(20000, 16000) == [(0, 32000)] * 3
    # float duration enters as its exact binary value (pytorchvideo's Fraction(float)).
    n = 36_001
    step = Fraction(n / 16000 - 2) / 3
    assert sample_clips(n, 16000) == [(int(step * i * 16000), int((step * i + 2) * 16000)) for i in range(3)]


# ------------------------------------------------------------------ resample
@pytest.mark.parametrize("orig, new", [(22050, 16000), (44100, 16000), (48000, 16000), (8000, 16000), (11025, 16000)])
def test_resample_matches_direct_windowed_sinc(orig: int, new: int) -> None:
    x = _noise(orig // 8, seed=orig)[0]
    got = resample(x, orig, new)
    want = ref_resample(x, orig, new)
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-5


def test_resample_multichannel_and_identity() -> None:
    x = _noise(3000, seed=11, channels=2)
    got = resample(x, 22050, 16000)
    for c in range(2):
        np.testing.assert_allclose(got[c], ref_resample(x[c], 22050, 16000), atol=2e-5)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)


def test_resample_sine_is_a_sine() -> None:
    f, orig, new = 440.0, 22050, 16000
    x = np.sin(2 * np.pi * f * np.arange(orig) / orig).astype(np.float32)
    y = resample(x, orig, new)
    t = np.arange(len(y)) / new
    interior = slice(200, len(y) - 200)
    assert np.abs(y[interior] - np.sin(2 * np.pi * f * t[interior])).max() < 2e-3


def test_resample_against_torchaudio_if_available() -> None:
    taf = pytest.importorskip("torchaudio.functional")
    import torch

    x = _noise(5000, seed=12, channels=2)
    want = taf.resample(torch.from_numpy(x), 22050, 16000).numpy()
    assert np.abs(resample(x, 22050, 16000) - want).max() < 1e-5


# ------------------------------------------------------------------ fbank
@pytest.mark.parametrize("n", [400, 559, 16000, 32000])
def test_kaldi_fbank_matches_kaldi_formulas(n: int) -> None:
    x = _noise(n, seed=n)[0]
    got = kaldi_fbank(x)
    want = ref_fbank(x)
    assert got.shape == want.shape == (1 + (n - 400) // 160, 128) and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-3


def test_kaldi_fbank_tone_peak_in_right_bin() -> None:
    x = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    got, want = kaldi_fbank(x), ref_fbank(x)
    assert np.abs(got - want).max() < 5e-3
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()


def test_kaldi_fbank_against_torchaudio_if_available() -> None:
    kaldi = pytest.importorskip("torchaudio.compliance.kaldi")
    import torch

    x = _noise(16000, seed=13)
    want = kaldi.fbank(
        torch.from_numpy(x),
        htk_compat=True,
        sample_frequency=16000,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=128,
        dither=0.0,
        frame_length=25,
        frame_shift=10,
    ).numpy()
    assert np.abs(kaldi_fbank(x[0]) - want).max() < 1e-3


def test_melspec_pads_and_normalises() -> None:
    x = _noise(8000, seed=14, channels=2)  # 0.5 s -> 48 frames, then zero-padded (in log space) to 204
    spec = waveform_to_melspec(x)
    assert spec.shape == (1, 128, 204)
    want = (ref_fbank(x[0] - x.mean()).T + 4.268) / 9.138
    assert np.abs(spec[0, :, :48] - want).max() < 2e-3
    np.testing.assert_allclose(spec[0, :, 48:], (0 - AUDIO_MEAN) / AUDIO_STD, rtol=1e-6)


def test_clip_padded_and_long_clip_cut_to_204_frames() -> None:
    x = _noise(16000 * 5, seed=15)
    out = preprocess_audio((x, 16000))  # 2 s clips give 198 frames: zero-padded (in log space) to 204
    assert out.shape == (3, 1, 128, 204)
    want = (ref_fbank(x[0, :32000] - x[0, :32000].mean()).T + 4.268) / 9.138
    assert np.abs(out[0, 0, :, :198] - want).max() < 2e-3
    long_clip = waveform_to_melspec(x[:, :48000])  # 298 frames: cut to the first 204
    want = (ref_fbank(x[0, :48000] - x[0, :48000].mean()).T[:, :204] + 4.268) / 9.138
    assert long_clip.shape == (1, 128, 204) and np.abs(long_clip[0] - want).max() < 2e-3


# ------------------------------------------------------------------ bad input
def _good() -> tuple[np.ndarray, int]:
    return _noise(16000, seed=20), 16000


def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[audio item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_too_short_audio() -> None:
    with pytest.raises(InputError) as e:
        preprocess_audios([_good(), (_noise(399, seed=21)[0], 16000)])
    _check(e, "too short", "399 samples", "at least 400 samples")
    assert preprocess_audio((_noise(400, seed=22)[0], 16000)).shape == (3, 1, 128, 204)
    with pytest.raises(InputError) as e:  # 1000 samples at 44.1 kHz -> 363 at 16 kHz
        preprocess_audios([_good(), (_noise(1000, seed=23)[0], 44100)])
    _check(e, "363 samples", "at least 400")


def test_truncated_wav() -> None:
    data = (GOLDEN / "media" / "stereo22k.wav").read_bytes()
    with pytest.raises(MediaDecodeError) as e:
        preprocess_audios([_good(), data[: len(data) // 2]])
    _check(e, "truncated", "expected an audio file")


def test_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    buf = io.BytesIO()
    sf.write(buf, _noise(32000, seed=24, channels=2).T, 16000, format="FLAC")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(MediaDecodeError) as e:
        preprocess_audios([_good(), path])
    _check(e, "cut.flac", "expected an audio file")


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(25).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaDecodeError) as e:
        preprocess_audios([_good(), bad])
    _check(e, "cannot decode", "noise.wav", "expected an audio file")
    with pytest.raises(InputError) as e:
        preprocess_audios([_good(), tmp_path / "missing.wav"])
    _check(e, "file not found", "missing.wav")


def test_bad_arrays() -> None:
    x = _noise(4000, seed=26)[0]
    nan = x.copy()
    nan[7] = np.nan
    inf = x.copy()
    inf[9] = -np.inf
    cases = [
        ((nan, 16000), "NaN"),
        ((inf, 16000), "Inf"),
        ((_noise(4000, seed=27, channels=2).T.copy(), 16000), "transpose"),
        ((x, 0), "sample_rate 0"),
        ((x, 16000.0), "sample_rate 16000.0"),
        ((x.astype(np.int32), 16000), "dtype int32"),
        ((x.reshape(1, 1, -1), 16000), "shape (1, 1, 4000)"),
        (x, "sample rate is unknown"),
        ((x, 16000, 1), "tuple of length 3"),
        (3.5, "unsupported item type float"),
    ]
    for item, word in cases:
        with pytest.raises(InputError) as e:
            preprocess_audios([_good(), item])
        _check(e, word, "expected")


def test_empty_list() -> None:
    with pytest.raises(InputError, match=r"\[audio\] expected at least one item"):
        preprocess_audios([])
