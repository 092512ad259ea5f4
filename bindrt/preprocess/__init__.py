"""Torch-free preprocessing: media files / arrays / strings -> the encoders' input arrays.

``preprocess(modality, items)`` is the single entry point; each modality's
module documents its convention (``image``, ``text``, ``audio``, ``video``
reproduce the reference; ``depth``, ``thermal``, ``imu`` are bindrt's own).
Everything here is numpy + Pillow + soundfile + PyAV + ftfy + regex: importing it
never imports torch, so runtimes without torch (ONNX Runtime, TensorRT) can use it.
Decoded sizes are bounded before allocation (:mod:`.limits`: ``media_limits``,
``set_media_limits``, ``BINDRT_MAX_*`` environment variables).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bindrt.errors import UnknownModalityError
from bindrt.layouts import CONTEXT_LENGTH, EOT_TOKEN, INPUT_KINDS, INPUT_LAYOUTS, SOT_TOKEN, VOCAB_SIZE

from .audio import (
    AUDIO_MEAN,
    AUDIO_STD,
    NUM_MEL_BINS,
    SAMPLE_RATE,
    TARGET_FRAMES,
    AudioArray,
    kaldi_fbank,
    kaldi_fbank_batch,
    load_audio,
    preprocess_audio,
    preprocess_audios,
    resample,
    sample_clips,
    waveform_to_melspec,
)
from .depth import DEPTH_BASELINE, DEPTH_FOCAL_LENGTH, depth_to_disparity, preprocess_depth, preprocess_depths
from .image import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD, preprocess_image, preprocess_images
from .imu import IMU_CHANNELS, IMU_SAMPLE_RATE, IMU_SAMPLES, preprocess_imu, preprocess_imus
from .limits import MediaLimits, current_media_limits, media_limits, set_media_limits
from .text import Tokenizer, get_tokenizer, tokenize
from .thermal import preprocess_thermal, preprocess_thermals
from .video import preprocess_video, preprocess_videos

_BATCH_FNS: dict[str, Callable[..., np.ndarray]] = {
    "vision": preprocess_images,
    "text": tokenize,
    "audio": preprocess_audios,
    "video": preprocess_videos,
    "depth": preprocess_depths,
    "thermal": preprocess_thermals,
    "imu": preprocess_imus,
}


def as_items(modality: str, items: Any) -> list[Any]:
    """The caller's items as a list: one item becomes a list of one."""
    return [items] if _is_single(modality, items) else list(items)


def constants(modality: str) -> dict[str, Any]:
    """The preprocessing contract of an encoder, recorded in bundle manifests for non-Python clients."""
    image = {
        "size": IMAGE_SIZE,
        "resize": "shorter side, bicubic",
        "crop": "center",
        "scale": 1 / 255,
        "mean": list(IMAGE_MEAN),
        "std": list(IMAGE_STD),
        "layout": "RGB, CHW",
    }
    table: dict[str, dict[str, Any]] = {
        "vision": {
            "image": image,
            "video": {
                **image,
                "resize": "shorter side, bilinear",
                "clips": 5,
                "clip_seconds": 2,
                "frames_per_clip": 2,
                "spatial_crops": 3,
            },
        },
        "text": {
            "tokenizer": "CLIP byte-level BPE (bpe_simple_vocab_16e6.txt.gz, first 48894 merges)",
            "context_length": CONTEXT_LENGTH,
            "sot_token": SOT_TOKEN,
            "eot_token": EOT_TOKEN,
            "pad_token": 0,
            "vocab_size": VOCAB_SIZE,
            "cleaning": "ftfy, html.unescape x2, whitespace collapse, lower-case",
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "clips": 3,
            "clip_seconds": 2,
            "fbank": {
                "num_mel_bins": NUM_MEL_BINS,
                "frame_length_ms": 25,
                "frame_shift_ms": 10,
                "window": "hanning",
                "preemphasis": 0.97,
                "dither": 0.0,
                "htk_compat": True,
                "use_energy": False,
                "low_freq": 20.0,
                "high_freq": 0.0,
            },
            "target_frames": TARGET_FRAMES,
            "mean": AUDIO_MEAN,
            "std": AUDIO_STD,
        },
        "depth": {
            "size": IMAGE_SIZE,
            "value": "disparity = focal_length * baseline / depth_m",
            "focal_length": DEPTH_FOCAL_LENGTH,
            "baseline": DEPTH_BASELINE,
            "png16_unit": "millimetre",
        },
        "thermal": {"size": IMAGE_SIZE, "value": "grayscale scaled to [0, 1]"},
        "imu": {
            "channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
            "samples": IMU_SAMPLES,
            "sample_rate": IMU_SAMPLE_RATE,
            "fit": "centre-crop or zero-pad on the right",
        },
    }
    if modality not in table:
        raise UnknownModalityError(f"unknown modality {modality!r} (expected one of: {', '.join(table)})")
    return table[modality]


def _is_single(modality: str, items: Any) -> bool:
    """A list (or tuple) is a batch, except an audio ``(waveform, sample_rate)`` pair."""
    if isinstance(items, list):
        return False
    if isinstance(items, tuple):
        return (
            modality == "audio"
            and len(items) == 2
            and isinstance(items[0], np.ndarray)
            and not isinstance(items[1], np.ndarray)
        )
    return True


def preprocess(modality: str, items: Any, **options: Any) -> np.ndarray:
    """Preprocess one item or a list of items of ``modality``; always returns a batch.

    ``options`` go to the modality's batch function (e.g. ``kind=`` for depth,
    ``sample_rate=`` for imu). Unknown modality -> UnknownModalityError.
    """
    fn = _BATCH_FNS.get(modality) if isinstance(modality, str) else None
    if fn is None:
        raise UnknownModalityError(f"unknown input kind {modality!r} (expected one of: {', '.join(INPUT_KINDS)})")
    return fn(as_items(modality, items), **options)


__all__ = [
    "AUDIO_MEAN",
    "AUDIO_STD",
    "AudioArray",
    "CONTEXT_LENGTH",
    "DEPTH_BASELINE",
    "DEPTH_FOCAL_LENGTH",
    "EOT_TOKEN",
    "IMAGE_MEAN",
    "IMAGE_SIZE",
    "IMAGE_STD",
    "IMU_CHANNELS",
    "IMU_SAMPLES",
    "IMU_SAMPLE_RATE",
    "INPUT_KINDS",
    "INPUT_LAYOUTS",
    "MediaLimits",
    "NUM_MEL_BINS",
    "SAMPLE_RATE",
    "SOT_TOKEN",
    "TARGET_FRAMES",
    "VOCAB_SIZE",
    "Tokenizer",
    "as_items",
    "constants",
    "current_media_limits",
    "depth_to_disparity",
    "get_tokenizer",
    "kaldi_fbank",
    "kaldi_fbank_batch",
    "load_audio",
    "media_limits",
    "preprocess",
    "preprocess_audio",
    "preprocess_audios",
    "preprocess_depth",
    "preprocess_depths",
    "preprocess_image",
    "preprocess_images",
    "preprocess_imu",
    "preprocess_imus",
    "preprocess_thermal",
    "preprocess_thermals",
    "preprocess_video",
    "preprocess_videos",
    "resample",
    "sample_clips",
    "set_media_limits",
    "tokenize",
    "waveform_to_melspec",
]
