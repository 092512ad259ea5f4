"""Video preprocessing with PyAV, following the reference's decord + pytorchvideo path.

Reference (REFERENCE.md and pytorchvideo's ``EncodedVideoDecord``): the video has
``N`` frames (demuxed packets) at its average frame rate ``fps``; duration is
``N / fps``. Five 2 s clips come from the same sampler as audio
(:func:`bindrt.preprocess._clips.clip_timepoints`); clip ``[s, e)`` holds frame
indices ``ceil(fps*s) .. min(ceil(fps*e), N) - 1`` and ``UniformTemporalSubsample(2)``
keeps indices ``linspace(0, t-1, 2)`` (truncated) of those, i.e. its first and
last frame. Frames: /255 -> shorter side to 224 with ``floor(long/short*224)``
for the other (bilinear, ``align_corners=False``, no antialias, like
``torch.nn.functional.interpolate``) -> normalise with the image mean/std ->
3 crops of 224 (start, centre with ``ceil`` offset, end along the longer side).
Output ``(15, 3, 2, 224, 224)``: clip-major, crop-minor, each crop (C, T, H, W).

Decoding is one demux pass (count packets) and one decode pass that stops after
the last needed frame and converts only the needed frames to RGB (FFmpeg's
default YUV->RGB through PyAV), resizing each as it comes. Frame size, frame
count and duration are bounded (:mod:`bindrt.preprocess.limits`).
Items: a path or the raw bytes of a video file.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from bindrt.errors import InputError, MediaDecodeError

from ._clips import clip_timepoints
from ._inputs import decoding, describe, map_items, to_source
from .image import IMAGE_MEAN, IMAGE_SIZE, IMAGE_STD
from .limits import check_frame, check_max, current_media_limits, exceeded

NUM_CLIPS = 5
CLIP_SECONDS = 2
FRAMES_PER_CLIP = 2
NUM_CROPS = 3
_EXPECTED = "a video file PyAV/FFmpeg can decode (MP4, WebM, AVI...), as a path or bytes"


def temporal_indices(num_frames: int, num_samples: int = FRAMES_PER_CLIP) -> np.ndarray:
    """pytorchvideo ``uniform_temporal_subsample`` indices: float32 linspace, clamped, truncated."""
    idx = np.linspace(0, num_frames - 1, num_samples, dtype=np.float32)
    return np.clip(idx, 0, num_frames - 1).astype(np.int64)


def clip_frame_indices(
    num_frames: int,
    fps: float,
    num_clips: int = NUM_CLIPS,
    clip_seconds: float = CLIP_SECONDS,
    frames_per_clip: int = FRAMES_PER_CLIP,
) -> list[list[int]]:
    """Frame indices each clip keeps, exactly as decord's ``get_clip`` + the subsampler pick them."""
    out = []
    for start, end in clip_timepoints(num_frames / fps, clip_seconds, num_clips):
        first = math.ceil(fps * float(start))
        stop = min(math.ceil(fps * float(end)), num_frames)
        first = min(first, stop - 1)  # never an empty clip (decord would fail); only hit by 1-frame videos
        out.append([first + int(k) for k in temporal_indices(stop - first, frames_per_clip)])
    return out


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of torch's bilinear (align_corners=False) along one axis."""
    scale = np.float32(n_in / n_out)
    src = np.maximum((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize (..., H, W) float32 like ``F.interpolate(mode="bilinear", align_corners=False)``."""
    y0, y1, wy = _bilinear_axis(x.shape[-2], out_h)
    x0, x1, wx = _bilinear_axis(x.shape[-1], out_w)
    rows = x[..., y0, :] * (1 - wy)[:, None] + x[..., y1, :] * wy[:, None]
    return (rows[..., x0] * (1 - wx) + rows[..., x1] * wx).astype(np.float32)


def short_side_size(h: int, w: int, size: int = IMAGE_SIZE) -> tuple[int, int]:
    """pytorchvideo ``short_side_scale`` output size (floor of the scaled longer side)."""
    if w < h:
        return int(math.floor((float(h) / w) * size)), size
    return size, int(math.floor((float(w) / h) * size))


def spatial_crops(clip: np.ndarray, size: int = IMAGE_SIZE) -> list[np.ndarray]:
    """ImageBind ``SpatialCrop(num_crops=3)``: start, centre (ceil offset), end along the longer side."""
    h, w = clip.shape[-2:]
    y_c, x_c = int(math.ceil((h - size) / 2)), int(math.ceil((w - size) / 2))
    crops = []
    for k in range(NUM_CROPS):
        y, x = y_c, x_c
        if h > w:
            y = (0, y_c, h - size)[k]
        else:
            x = (0, x_c, w - size)[k]
        crops.append(clip[..., y : y + size, x : x + size])
    return crops


def _open(src: str | io.BytesIO):  # -> av.container.InputContainer
    import av

    if isinstance(src, io.BytesIO):
        src.seek(0)
    return av.open(src)


def probe_video(src: str | io.BytesIO, *, modality: str = "video", index: int | None = None) -> tuple[int, float]:
    """(frame count, average fps) as decord reports them: demuxed packets, stream avg_frame_rate.

    The declared frame size is checked before demuxing, the packet count while
    demuxing (it stops at the first packet over the limit), the duration after.
    """
    with _open(src) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        if stream.codec_context.width > 0 and stream.codec_context.height > 0:
            _check_frame_size(stream.codec_context.width, stream.codec_context.height, modality, index)
        rate = stream.average_rate or stream.guessed_rate
        max_frames = current_media_limits().max_video_frames
        n = 0
        for packet in container.demux(stream):
            n += bool(packet.size)
            if n > max_frames:
                raise exceeded(
                    "max_video_frames",
                    "the number of frames (demuxed packets)",
                    n,
                    modality=modality,
                    index=index,
                    hint=" (counting stopped there)",
                )
    if not rate or rate <= 0 or n == 0:
        raise ValueError("the video stream has no frames or no frame rate")
    check_max(
        "max_video_seconds",
        f"the duration in seconds ({n} frames at {float(rate):g} fps)",
        n / float(rate),
        modality=modality,
        index=index,
    )
    return n, float(rate)


def _check_frame_size(width: int, height: int, modality: str, index: int | None) -> None:
    check_frame(
        width, height, modality=modality, index=index, what="video frame", pixels_limit="max_video_frame_pixels"
    )


def decode_frames(
    src: str | io.BytesIO, wanted: set[int], *, modality: str = "video", index: int | None = None
) -> dict[int, np.ndarray]:
    """Decode in presentation order; frames whose index is in ``wanted`` -> /255, shorter side 224 (C, H, W).

    Each frame's size is checked before it is converted, and it is resized at once,
    so at most one full-size frame is held.
    """
    last = max(wanted)
    frames: dict[int, np.ndarray] = {}
    with _open(src) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                _check_frame_size(frame.width, frame.height, modality, index)
                x = frame.to_ndarray(format="rgb24").astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)
                frames[i] = resize_bilinear(x, *short_side_size(*x.shape[1:]))
            if i >= last:
                break
    return frames


def preprocess_video(item: Any, *, index: int | None = None) -> np.ndarray:
    """One video -> ``(15, 3, 2, 224, 224)`` float32 (5 clips x 3 crops, each (C, T, H, W))."""
    modality = "video"
    if isinstance(item, np.ndarray):
        raise InputError(f"got {describe(item)} (expected {_EXPECTED})", modality=modality, item=index)
    src = to_source(item, modality, index, "a video file")
    with decoding(item, modality, index, _EXPECTED):
        n, fps = probe_video(src, modality=modality, index=index)
        picks = clip_frame_indices(n, fps)
        processed = decode_frames(src, {i for clip in picks for i in clip}, modality=modality, index=index)
    missing = sorted({i for clip in picks for i in clip} - processed.keys())
    if missing:
        raise MediaDecodeError(
            f"{describe(item)} decoded fewer frames than its {n} packets (frame {missing[0]} "
            f"missing; expected {_EXPECTED} that is not truncated)",
            modality=modality,
            item=index,
        )
    mean = np.asarray(IMAGE_MEAN, np.float32)[:, None, None, None]
    std = np.asarray(IMAGE_STD, np.float32)[:, None, None, None]
    out = []
    for clip in picks:  # each distinct frame was resized once even if two clips share it
        video = (np.stack([processed[i] for i in clip], axis=1) - mean) / std  # (C, T, H, W)
        out.extend(spatial_crops(video))
    return np.ascontiguousarray(np.stack(out), dtype=np.float32)


def preprocess_videos(items: Any) -> np.ndarray:
    """A list of videos -> ``(B, 15, 3, 2, 224, 224)`` float32."""
    return map_items(items, "video", lambda it, i: preprocess_video(it, index=i))
