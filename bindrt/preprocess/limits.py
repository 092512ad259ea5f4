"""Bounds on decoded media sizes, checked from headers *before* anything is allocated.

Tiny hostile files decode to gigabytes: a 467-byte 1x200000 PNG resizes to
224 x 44,800,000 pixels, a WAV declaring 1 Hz resamples to 16,000 times its
length. Every decoder in :mod:`bindrt.preprocess` reads the declared size
(image header, array shape, ``soundfile`` info, PyAV stream metadata, npy header)
and calls the checks here first; PyAV decoding also keeps a running total and
stops as soon as it exceeds. A check that fails raises
:class:`~bindrt.errors.LimitError` naming what was too large, its value, the
limit and how to raise it.

Limits (field = default, environment variable):

====================== ============== ============================== ==========================================
field                  default        environment variable           why this default
====================== ============== ============================== ==========================================
max_file_bytes         4 GiB          BINDRT_MAX_FILE_BYTES          any one file or bytes item (long videos)
max_pixels             89,478,485     BINDRT_MAX_PIXELS              Pillow's decompression-bomb limit
max_aspect_ratio       32             BINDRT_MAX_ASPECT_RATIO        resize-to-224 output is at most 224x7168
max_video_frame_pixels 35,389,440     BINDRT_MAX_VIDEO_FRAME_PIXELS  DCI 8K (8192x4320)
max_video_frames       648,000        BINDRT_MAX_VIDEO_FRAMES        3 hours at 60 fps (demuxed packets)
max_video_seconds      10,800         BINDRT_MAX_VIDEO_SECONDS       3 hours
min_sample_rate        1,000          BINDRT_MIN_SAMPLE_RATE         below any real recording (telephony: 8k)
max_sample_rate        768,000        BINDRT_MAX_SAMPLE_RATE         the highest rate audio interfaces offer
max_audio_channels     64             BINDRT_MAX_AUDIO_CHANNELS      more is a (samples, channels) mix-up
max_audio_seconds      3,600          BINDRT_MAX_AUDIO_SECONDS       see below
max_audio_samples      345,600,000    BINDRT_MAX_AUDIO_SAMPLES       channels x frames of 1 h 48 kHz stereo
max_imu_samples        1,000,000      BINDRT_MAX_IMU_SAMPLES         83 min at 200 Hz, input and resampled
max_imu_csv_bytes      64 MiB         BINDRT_MAX_IMU_CSV_BYTES       ~800,000 rows of six values
max_text_chars         1,000,000      BINDRT_MAX_TEXT_CHARS          ~0.5 s of cleaning; 77 tokens use ~300
====================== ============== ============================== ==========================================

Audio is decoded whole (as the reference does) although only three 2 s clips
are used, so its bound is a memory bound: one hour of 48 kHz stereo is 1.3 GiB
as float32, about what a laptop can spare; cut longer recordings first.

Precedence, highest first: :func:`media_limits` (a context manager, local to the
thread / async task), :func:`set_media_limits` (process-wide), the environment
variables (read at every check, so CLI users can export them), the defaults.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from bindrt.errors import ConfigError, InputError, LimitError

ENV_PREFIX = "BINDRT_"


@dataclass(frozen=True)
class MediaLimits:
    """The bounds in effect; see the module docstring for what each one bounds and why."""

    max_file_bytes: int = 4 << 30
    max_pixels: int = 89_478_485
    max_aspect_ratio: float = 32.0
    max_video_frame_pixels: int = 8192 * 4320
    max_video_frames: int = 3 * 3600 * 60
    max_video_seconds: float = 3 * 3600.0
    min_sample_rate: int = 1_000
    max_sample_rate: int = 768_000
    max_audio_channels: int = 64
    max_audio_seconds: float = 3600.0
    max_audio_samples: int = 3600 * 48_000 * 2
    max_imu_samples: int = 1_000_000
    max_imu_csv_bytes: int = 64 << 20
    max_text_chars: int = 1_000_000


_FIELDS = {f.name: f for f in dataclasses.fields(MediaLimits)}
_DEFAULTS = MediaLimits()
_global: dict[str, float] = {}
_global_lock = threading.Lock()
_scoped: ContextVar[dict[str, float]] = ContextVar("bindrt_media_limits", default={})


def env_var(name: str) -> str:
    """The environment variable that sets limit ``name`` (e.g. ``BINDRT_MAX_PIXELS``)."""
    return ENV_PREFIX + name.upper()


def _coerce(name: str, value: Any, origin: str) -> float:
    """A positive number of the field's type; ConfigError naming ``origin`` otherwise."""
    if name not in _FIELDS:
        raise ConfigError(f"unknown media limit {name!r} (expected one of: {', '.join(_FIELDS)})")
    kind = type(getattr(_DEFAULTS, name))
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not (number > 0 and math.isfinite(number)) or (kind is int and number != int(number)):
        raise ConfigError(f"{origin}: {name}={value!r} is not a positive {'integer' if kind is int else 'number'}")
    return kind(number)


def _overrides(changes: dict[str, Any], origin: str) -> dict[str, float]:
    return {k: _coerce(k, v, origin) for k, v in changes.items()}


def current_media_limits() -> MediaLimits:
    """The limits in effect here and now (context > set_media_limits > environment > defaults)."""
    values: dict[str, float] = {}
    for name in _FIELDS:
        raw = os.environ.get(env_var(name))
        if raw is not None and raw.strip():
            values[name] = _coerce(name, raw.strip(), f"environment variable {env_var(name)}")
    with _global_lock:
        values.update(_global)
    values.update(_scoped.get())
    return dataclasses.replace(_DEFAULTS, **values)


def set_media_limits(**changes: Any) -> MediaLimits:
    """Change limits process-wide (``None`` restores a limit's default); returns the limits now in effect."""
    cleared = [k for k, v in changes.items() if v is None]
    new = _overrides({k: v for k, v in changes.items() if v is not None}, "set_media_limits")
    for name in cleared:
        _coerce(name, 1, "set_media_limits")  # unknown names are still an error
    with _global_lock:
        for name in cleared:
            _global.pop(name, None)
        _global.update(new)
    return current_media_limits()


@contextmanager
def media_limits(**changes: Any) -> Iterator[MediaLimits]:
    """Change limits inside a ``with`` block (this thread / task only); yields the limits in effect."""
    token = _scoped.set({**_scoped.get(), **_overrides(changes, "media_limits")})
    try:
        yield current_media_limits()
    finally:
        _scoped.reset(token)


# ---------------------------------------------------------------- checks
def _fmt(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.6g}"


def exceeded(name: str, what: str, value: float, *, modality: str, index: int | None, hint: str = "") -> LimitError:
    """The LimitError for ``what`` = ``value`` past limit ``name``: names the limit and how to change it."""
    limit = getattr(current_media_limits(), name)
    side = "under" if name.startswith("min_") else "over"
    return LimitError(
        f"{what} is {_fmt(value)}, {side} the limit {name}={_fmt(limit)}{hint}; to accept it, set "
        f"the environment variable {env_var(name)} or use "
        f"bindrt.preprocess.media_limits({name}=...)",
        modality=modality,
        item=index,
    )


def check_max(name: str, what: str, value: float, *, modality: str, index: int | None, hint: str = "") -> None:
    """Raise LimitError if ``value`` exceeds limit ``name``."""
    if value > getattr(current_media_limits(), name):
        raise exceeded(name, what, value, modality=modality, index=index, hint=hint)


def check_file_bytes(nbytes: int, what: str, *, modality: str, index: int | None) -> None:
    check_max("max_file_bytes", f"the size of {what} in bytes", nbytes, modality=modality, index=index)


def check_frame(
    width: int, height: int, *, modality: str, index: int | None, what: str = "image", pixels_limit: str = "max_pixels"
) -> None:
    """An image/depth/thermal map/video frame of ``width`` x ``height``: non-empty, pixels and aspect bounded."""
    if width < 1 or height < 1:
        raise InputError(f"{what} is {width}x{height} pixels (expected at least 1x1)", modality=modality, item=index)
    size = f" ({width}x{height})"
    check_max(pixels_limit, f"the {what}'s pixel count{size}", width * height, modality=modality, index=index)
    ratio = max(width, height) / min(width, height)
    check_max("max_aspect_ratio", f"the {what}'s aspect ratio{size}", ratio, modality=modality, index=index)


def check_audio(
    sample_rate: float, channels: int, frames: int | None, *, modality: str, index: int | None, hint: str = ""
) -> None:
    """Declared sample rate, channel count and length (``frames`` per channel; None when unknown)."""
    limits = current_media_limits()
    if sample_rate < limits.min_sample_rate:
        raise exceeded("min_sample_rate", "the sample rate in Hz", sample_rate, modality=modality, index=index)
    check_max("max_sample_rate", "the sample rate in Hz", sample_rate, modality=modality, index=index)
    check_max("max_audio_channels", "the number of channels", channels, modality=modality, index=index, hint=hint)
    if frames is not None:
        check_max("max_audio_seconds", "the duration in seconds", frames / sample_rate, modality=modality, index=index)
        check_max(
            "max_audio_samples",
            f"the sample count ({channels} channels x {frames:,} frames)",
            channels * frames,
            modality=modality,
            index=index,
        )


__all__ = [
    "ENV_PREFIX",
    "MediaLimits",
    "check_audio",
    "check_file_bytes",
    "check_frame",
    "check_max",
    "current_media_limits",
    "env_var",
    "exceeded",
    "media_limits",
    "set_media_limits",
]
