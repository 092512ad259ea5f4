"""Audio preprocessing: the reference's log-mel clips, reimplemented in numpy.

Reference pipeline (REFERENCE.md): decode to float32 in [-1, 1] as (channels,
samples) -> resample to 16 kHz (torchaudio windowed-sinc defaults) -> 3 clips of
2 s (:func:`sample_clips`) -> per clip: subtract the clip mean, Kaldi fbank of
channel 0 (128 mel bins, 25 ms / 10 ms), transpose, pad/cut to 204 frames,
``(x - AUDIO_MEAN) / AUDIO_STD``. Output ``(3, 1, 128, 204)`` float32 per item.

The reference subtracts each clip's mean *in place* on a view of the waveform,
so the subtraction leaks into later, overlapping clips; :func:`preprocess_audio`
reproduces that (it only matters at the step where an earlier clip ended).

Items: a path or raw bytes of a file soundfile reads (WAV, FLAC, OGG, MP3...; other
containers fall back to PyAV), or an in-memory ``(waveform, sample_rate)`` pair
(:class:`AudioArray` or a plain tuple) where ``waveform`` is ``(samples,)`` or
``(channels, samples)`` (channels first), float in [-1, 1] or int16 (scaled by
1/32768). A bare array is rejected: its sample rate would be a guess.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import soundfile as sf

from bindrt.errors import InputError, MediaDecodeError

from ._clips import clip_timepoints
from ._inputs import check_array, decoding, describe, is_bytes, is_pathlike, map_items, to_source
from .limits import check_audio

SAMPLE_RATE = 16000
NUM_CLIPS = 3
CLIP_SECONDS = 2
NUM_MEL_BINS = 128
TARGET_FRAMES = 204
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138
FRAME_LENGTH_MS = 25.0
FRAME_SHIFT_MS = 10.0
MIN_CLIP_SAMPLES = int(SAMPLE_RATE * FRAME_LENGTH_MS / 1000)  # 400: one 25 ms frame at 16 kHz

_EXPECTED = (
    "an audio file (WAV/FLAC/OGG/MP3...) as a path or bytes, or a (waveform, sample_rate) "
    "pair with waveform (samples,) or (channels, samples)"
)
_EPS = np.float32(np.finfo(np.float32).eps)


class AudioArray(NamedTuple):
    """An in-memory waveform with its sample rate; ``waveform`` is (samples,) or (channels, samples)."""

    waveform: np.ndarray
    sample_rate: int


# ---------------------------------------------------------------- decoding
_WAV_BITS = {1: (8, 16, 24, 32), 3: (32, 64), 0xFFFE: (8, 16, 24, 32, 64)}  # PCM, IEEE float, extensible
_MAX_RIFF_CHUNKS = 1024  # real WAVs have a handful; a walk over millions of 8-byte chunks is an attack


def _check_riff(f: BinaryIO, size: int) -> None:
    """Reject what libsndfile reads silently from a RIFF/WAVE file: a truncated data chunk, odd bit depths."""
    f.seek(0)
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    for _ in range(_MAX_RIFF_CHUNKS):
        if pos + 8 > size:
            break
        f.seek(pos)
        cid, csize = struct.unpack("<4sI", f.read(8))
        if cid == b"fmt " and csize >= 16:
            tag, _, _, _, _, bits = struct.unpack("<HHIIHH", f.read(16))
            if tag in _WAV_BITS and bits not in _WAV_BITS[tag]:
                raise ValueError(
                    f"the WAV header declares {bits} bits per sample (accepted: 8, 16, 24 or 32-bit "
                    "PCM, 32 or 64-bit float)"
                )
        if cid == b"data":
            if csize not in (0, 0xFFFFFFFF) and pos + 8 + csize > size:
                raise ValueError("the WAV data chunk is truncated (file shorter than its header says)")
            return
        pos += 8 + csize + (csize & 1)
    raise ValueError("no complete WAV data chunk header")


def _read_soundfile(src: str | io.BytesIO, index: int | None) -> tuple[np.ndarray, int]:
    """libsndfile decode; sample rate, channels and length are checked from the header before reading."""
    opened = open(src, "rb") if isinstance(src, str) else src
    try:
        size = opened.seek(0, os.SEEK_END)
        _check_riff(opened, size)
        opened.seek(0)
        with sf.SoundFile(opened) as f:
            sr, channels, expected = f.samplerate, f.channels, f.frames
            known = 0 < expected < 2**62
            check_audio(sr, channels, expected if known else None, modality="audio", index=index)
            if known:
                data = f.read(dtype="float32", always_2d=True)
            else:  # unknown length: read in blocks, bounding the running total
                data = _bounded_concat(
                    (b.T for b in f.blocks(1 << 18, dtype="float32", always_2d=True)), sr, channels, index
                ).T
    finally:
        if isinstance(src, str):
            opened.close()
    if known and data.shape[0] < expected:
        raise ValueError(f"truncated: decoded {data.shape[0]} of {expected} frames")
    return np.ascontiguousarray(data.T), int(sr)


def _bounded_concat(blocks: Iterable[np.ndarray], sr: int, channels: int, index: int | None) -> np.ndarray:
    """Concatenate (channels, n) blocks, raising LimitError as soon as the running length exceeds the limits."""
    parts, total = [], 0
    for block in blocks:
        total += block.shape[1]
        check_audio(sr, channels, total, modality="audio", index=index)
        parts.append(block)
    if not parts:
        raise ValueError("no audio frames decoded")
    return np.concatenate(parts, axis=1)


def _read_pyav(src: str | io.BytesIO, index: int | None) -> tuple[np.ndarray, int]:
    """Fallback for containers libsndfile does not read (m4a, webm...); bounded by metadata, then while decoding."""
    import av  # lazy: only the fallback needs it

    if isinstance(src, io.BytesIO):
        src.seek(0)
    with av.open(src) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        sr, channels = ctx.sample_rate, ctx.channels
        if not sr:
            raise ValueError("the audio stream declares no sample rate")
        declared = int(stream.duration * stream.time_base * sr) if stream.duration and stream.time_base and sr else None
        check_audio(sr, channels, declared, modality="audio", index=index)

        def blocks() -> Iterator[np.ndarray]:
            for frame in container.decode(stream):
                a = frame.to_ndarray()  # planar: (channels, n); packed: (1, n * channels)
                yield a if frame.format.is_planar else a.reshape(-1, frame.layout.nb_channels).T

        data = _bounded_concat(blocks(), sr, channels, index)
    if data.dtype.kind in "iu":  # integer PCM -> [-1, 1) (unsigned 8-bit is offset by 128)
        half = 2.0 ** (8 * data.dtype.itemsize - 1)
        data = (data.astype(np.float64) - (half if data.dtype.kind == "u" else 0.0)) / half
    return np.ascontiguousarray(data, dtype=np.float32), int(sr)


def _not_recognised(exc: sf.LibsndfileError) -> bool:
    """libsndfile's "not my format" (fall back to PyAV), as opposed to a broken file of a format it reads."""
    return "Format not recognised" in str(exc) or "unknown format" in str(exc).lower()


def load_audio(item: Any, *, index: int | None = None) -> tuple[np.ndarray, int]:
    """One item -> ``(waveform float32 (channels, samples), sample_rate)``, values in [-1, 1]."""
    modality = "audio"
    if isinstance(item, tuple):
        if len(item) != 2 or not isinstance(item[0], np.ndarray):
            raise InputError(f"got a tuple of length {len(item)} (expected {_EXPECTED})", modality=modality, item=index)
        arr, sr = item
        if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
            raise InputError(
                f"sample_rate {sr!r} is not a positive int (expected {_EXPECTED})", modality=modality, item=index
            )
        a = check_array(
            arr,
            modality,
            index,
            ndims=(1, 2),
            kinds="fi",
            expected="a (samples,) or (channels, samples) float or int16 waveform",
        )
        if a.dtype.kind == "i" and a.dtype != np.int16:
            raise InputError(
                f"array has dtype {a.dtype} (expected float in [-1, 1] or int16)", modality=modality, item=index
            )
        a = a.reshape(1, -1) if a.ndim == 1 else a
        check_audio(
            int(sr),
            a.shape[0],
            a.shape[1],
            modality=modality,
            index=index,
            hint=f" (array shape {a.shape}; expected (channels, samples): transpose a (samples, channels) array)",
        )
        wav = a.astype(np.float32) / np.float32(32768.0) if a.dtype == np.int16 else a.astype(np.float32)
        return np.ascontiguousarray(wav), int(sr)
    if isinstance(item, np.ndarray):
        raise InputError(
            "got a bare array; its sample rate is unknown (expected a (waveform, sample_rate) pair, "
            "e.g. AudioArray(wav, 16000))",
            modality=modality,
            item=index,
        )
    if not (is_pathlike(item) or is_bytes(item)):
        raise InputError(
            f"unsupported item type {type(item).__name__} (expected {_EXPECTED})", modality=modality, item=index
        )
    src = to_source(item, modality, index, "an audio file")
    with decoding(item, modality, index, "an audio file (WAV/FLAC/OGG/MP3 via soundfile, other containers via PyAV)"):
        try:
            wav, sr = _read_soundfile(src, index)
        except sf.LibsndfileError as exc:
            if not _not_recognised(exc):
                raise
            wav, sr = _read_pyav(src, index)
    if not np.isfinite(wav).all():  # float WAVs can hold NaN/Inf
        raise MediaDecodeError(
            f"cannot decode {describe(item)}: it decodes to NaN or Inf samples "
            f"(expected an audio file of finite samples)",
            modality=modality,
            item=index,
        )
    if wav.shape[1] == 0:
        raise InputError(
            f"{describe(item)} has no samples (expected at least {MIN_CLIP_SAMPLES} at {SAMPLE_RATE} Hz)",
            modality=modality,
            item=index,
        )
    return wav, sr


# ---------------------------------------------------------------- resampling
@functools.lru_cache(maxsize=16)
def _sinc_kernel(orig: int, new: int, lowpass_filter_width: int, rolloff: float) -> tuple[np.ndarray, int]:
    """torchaudio's ``_get_sinc_resample_kernel`` (Hann), float32 op for op; rates already gcd-reduced."""
    f32 = np.float32
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = np.arange(-width, width + orig, dtype=f32)[None, :] / f32(orig)
    t = np.arange(0, -new, -1, dtype=f32)[:, None] / f32(new) + idx
    t = np.clip(t * f32(base), -lowpass_filter_width, lowpass_filter_width).astype(f32)
    window = np.cos(t * f32(math.pi) / f32(lowpass_filter_width) / f32(2)) ** 2
    t = t * f32(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = np.where(t == 0, f32(1.0), np.sin(t) / t).astype(f32)
    kernel *= window * f32(base / orig)
    kernel.setflags(write=False)  # cached: shared by every call
    return kernel, width  # (new, 2*width + orig)


_RESAMPLE_CHUNK = 1 << 22  # window values per matmul (16 MiB): bounds the copy whatever the length


def resample(
    waveform: np.ndarray, orig_sr: int, new_sr: int, *, lowpass_filter_width: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """``torchaudio.functional.resample`` (sinc_interp_hann) on a (..., samples) float array.

    Polyphase: with rates reduced by their gcd to orig/new, output block j is the
    ``new`` dot products of the kernel with input samples ``[j*orig - width, ...)``.
    Blocks are computed a chunk of rows at a time, so the window copy stays
    ~``_RESAMPLE_CHUNK`` values however long the input is. The dot products are
    the same; BLAS may round a chunk's sums differently in the last bit, as it
    already did for inputs of different lengths.
    """
    if orig_sr <= 0 or new_sr <= 0 or int(orig_sr) != orig_sr or int(new_sr) != new_sr:
        raise ValueError(f"sample rates must be positive integers, got {orig_sr} -> {new_sr}")
    x = np.asarray(waveform, dtype=np.float32)
    if orig_sr == new_sr:
        return x
    g = math.gcd(int(orig_sr), int(new_sr))
    orig, new = int(orig_sr) // g, int(new_sr) // g
    kernel, width = _sinc_kernel(orig, new, lowpass_filter_width, rolloff)
    lead, length = x.shape[:-1], x.shape[-1]
    flat = x.reshape(-1, length)
    blocks = length // orig + 1  # windows of the padded signal [width + length + width + orig) at stride orig
    target = math.ceil(np.float32(new * length / orig))  # torchaudio rounds this via a float32 tensor
    out = np.empty((flat.shape[0], blocks, new), dtype=np.float32)
    step = max(2, _RESAMPLE_CHUNK // kernel.shape[1])  # >= 2 rows: one row is a matrix-vector product
    start = 0
    while start < blocks:
        stop = blocks if blocks - start < 2 * step else start + step  # the last chunk also has >= 2 rows
        lo, hi = start * orig - width, (stop - 1) * orig - width + kernel.shape[1]  # its input span
        piece = np.pad(flat[:, max(lo, 0) : min(hi, length)], ((0, 0), (max(0, -lo), max(0, hi - length))))
        frames = np.lib.stride_tricks.sliding_window_view(piece, kernel.shape[1], axis=1)[:, ::orig]
        out[:, start:stop] = frames @ kernel.T
        start = stop
    out = out.reshape(flat.shape[0], -1)  # (C, blocks, new) -> interleaved
    return np.ascontiguousarray(out[:, :target].reshape(*lead, -1), dtype=np.float32)


# ---------------------------------------------------------------- clips
def sample_clips(
    num_samples: int, sr: int, clip_seconds: float = CLIP_SECONDS, num_clips: int = NUM_CLIPS
) -> list[tuple[int, int]]:
    """Sample-index ranges ``[start, end)`` of the reference's clips: ``int(t * sr)`` of exact times (end may exceed num_samples)."""
    return [(int(s * sr), int(e * sr)) for s, e in clip_timepoints(num_samples / sr, clip_seconds, num_clips)]


# ---------------------------------------------------------------- fbank
@functools.lru_cache(maxsize=8)
def kaldi_mel_banks(
    num_bins: int = 128, padded: int = 512, sr: float = 16000.0, low: float = 20.0, high: float = 0.0
) -> np.ndarray:
    """torchaudio.compliance.kaldi.get_mel_banks (no VTLN) + zero Nyquist column: (num_bins, padded//2+1)."""
    f32 = np.float32
    nyquist = 0.5 * sr
    high = high + nyquist if high <= 0.0 else high

    def mel(f: float) -> float:
        return 1127.0 * math.log(1.0 + f / 700.0)

    mel_low, mel_high = mel(low), mel(high)
    delta = (mel_high - mel_low) / (num_bins + 1)
    b = np.arange(num_bins, dtype=f32)[:, None]
    left = f32(mel_low) + b * f32(delta)
    center = f32(mel_low) + (b + f32(1.0)) * f32(delta)
    right = f32(mel_low) + (b + f32(2.0)) * f32(delta)
    freqs = f32(sr / padded) * np.arange(padded // 2, dtype=f32)
    m = (f32(1127.0) * np.log(f32(1.0) + freqs / f32(700.0)))[None, :]
    up = (m - left) / (center - left)
    down = (right - m) / (right - center)
    banks = np.pad(np.maximum(f32(0.0), np.minimum(up, down)).astype(f32), ((0, 0), (0, 1)))
    banks.setflags(write=False)  # cached: shared by every call
    return banks


def kaldi_fbank(clip: np.ndarray, sr: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
    """``torchaudio.compliance.kaldi.fbank`` with the reference's options -> (frames, num_mel_bins) float32.

    Options: htk_compat, use_energy=False, hanning window, dither 0, 25 ms / 10 ms,
    snip_edges, per-frame DC removal, pre-emphasis 0.97, FFT size rounded up to a
    power of two, power spectrum, mel 20 Hz..Nyquist, log floored at float32 eps.
    :func:`kaldi_fbank_batch` does a batch of equal-length clips in one pass.
    """
    x = np.asarray(clip, dtype=np.float32).reshape(1, -1)
    return kaldi_fbank_batch(x, sr, num_mel_bins)[0]


_FBANK_CHUNK_FRAMES = 512  # frames per FFT + mel matmul: bounds the float64 spectrum (~1 MiB) whatever the batch


@functools.lru_cache(maxsize=8)
def _hann(size: int) -> np.ndarray:
    n = np.arange(size, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / (size - 1))).astype(np.float32)  # symmetric Hann
    window.setflags(write=False)
    return window


def kaldi_fbank_batch(clips: np.ndarray, sr: int = SAMPLE_RATE, num_mel_bins: int = NUM_MEL_BINS) -> np.ndarray:
    """:func:`kaldi_fbank` of each row of a ``(B, samples)`` array -> ``(B, frames, num_mel_bins)`` float32.

    The frames of all clips go through one FFT and one mel matmul (a chunk of
    ``_FBANK_CHUNK_FRAMES`` frames at a time), so per-call overhead is paid once per
    batch rather than once per clip. A clip's values are its own call's up to float32 rounding (BLAS
    may sum a chunk's mel products differently in the last bit).
    """
    x = np.asarray(clips, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a (clips, samples) array, got shape {x.shape}")
    size = int(sr * FRAME_LENGTH_MS / 1000)
    shift = int(sr * FRAME_SHIFT_MS / 1000)
    if x.shape[1] < size:
        raise InputError(
            f"clip has {x.shape[1]} samples (expected at least {size}: one {FRAME_LENGTH_MS:g} ms frame at {sr} Hz)",
            modality="audio",
        )
    padded = 1 << (size - 1).bit_length()
    n_frames = 1 + (x.shape[1] - size) // shift
    frames = np.lib.stride_tricks.sliding_window_view(x, size, axis=1)[:, ::shift][:, :n_frames]
    frames = frames.reshape(-1, size)  # (B * frames, size): a copy, the windows overlap
    banks_t = kaldi_mel_banks(num_mel_bins, padded, float(sr)).T
    window = _hann(size)
    out = np.empty((frames.shape[0], num_mel_bins), dtype=np.float32)
    for lo in range(0, frames.shape[0], _FBANK_CHUNK_FRAMES):
        f = frames[lo : lo + _FBANK_CHUNK_FRAMES]
        f = f - f.mean(axis=1, keepdims=True, dtype=np.float32)
        prev = np.concatenate([f[:, :1], f[:, :-1]], axis=1)
        f = f - np.float32(0.97) * prev
        spec = np.fft.rfft(f * window, n=padded, axis=1)
        power = (spec.real.astype(np.float32) ** 2 + spec.imag.astype(np.float32) ** 2).astype(np.float32)
        np.log(np.maximum(power @ banks_t, _EPS), out=out[lo : lo + f.shape[0]])
    return out.reshape(x.shape[0], n_frames, num_mel_bins)


def fbank_to_melspec(fbank: np.ndarray, target_frames: int = TARGET_FRAMES) -> np.ndarray:
    """(frames, bins) -> normalised (1, bins, target_frames): zero-pad/cut in log space, then normalise."""
    spec = fbank.T
    p = target_frames - spec.shape[1]
    spec = np.pad(spec, ((0, 0), (0, p))) if p > 0 else spec[:, :target_frames]
    out = (spec - np.float32(AUDIO_MEAN)) / np.float32(AUDIO_STD)
    return np.ascontiguousarray(out[None], dtype=np.float32)


def waveform_to_melspec(clip: np.ndarray, sr: int = SAMPLE_RATE) -> np.ndarray:
    """One (channels, samples) clip -> (1, 128, 204): subtract its mean, fbank of channel 0, pad, normalise."""
    c = np.asarray(clip, dtype=np.float32)
    c = c.reshape(1, -1) if c.ndim == 1 else c
    c = c - c.mean(dtype=np.float32)
    return fbank_to_melspec(kaldi_fbank(c[0], sr))


def preprocess_audio(item: Any, *, index: int | None = None) -> np.ndarray:
    """One audio item -> ``(3, 1, 128, 204)`` float32 log-mel clips."""
    wav, sr = load_audio(item, index=index)
    if sr != SAMPLE_RATE:
        wav = resample(wav, sr, SAMPLE_RATE)
    wav = np.array(wav, dtype=np.float32, copy=True)  # mutated below, like the reference's views
    n = wav.shape[1]
    clips = sample_clips(n, SAMPLE_RATE)
    shortest = min(min(e, n) - s for s, e in clips)
    if shortest < MIN_CLIP_SAMPLES:
        raise InputError(
            f"audio too short: {n} samples at {SAMPLE_RATE} Hz ({n / SAMPLE_RATE * 1000:.1f} ms) gives a "
            f"clip of {max(shortest, 0)} samples (expected at least {MIN_CLIP_SAMPLES} samples = "
            f"{FRAME_LENGTH_MS:g} ms at {SAMPLE_RATE} Hz per clip)",
            modality="audio",
            item=index,
        )
    out = []
    for s, e in clips:
        view = wav[:, s:e]
        view -= view.mean(dtype=np.float32)  # in place on purpose: the reference does `waveform -= mean` on a view
        out.append(fbank_to_melspec(kaldi_fbank(view[0], SAMPLE_RATE)))
    mel = np.stack(out)
    if not np.isfinite(mel).all():  # the power spectrum overflows float32 for samples far outside [-1, 1]
        raise InputError(
            f"{describe(item)}: the log-mel spectrogram overflows float32 (samples reach "
            f"{np.abs(wav).max():.3g}; expected samples in [-1, 1])",
            modality="audio",
            item=index,
        )
    return mel


def preprocess_audios(items: Any) -> np.ndarray:
    """A list of audio items -> ``(B, 3, 1, 128, 204)`` float32."""
    return map_items(items, "audio", lambda it, i: preprocess_audio(it, index=i))
