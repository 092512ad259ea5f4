"""Video preprocessing on real encoded files made with PyAV, checked against a hand-derived reference.

Frames carry their index as a colour code (R = 25 * (i % 10), G = 25 * (i // 10))
and a horizontal blue ramp, so the test can read back which frame and which
columns each output crop holds. The reference for the pixel values decodes every
frame independently, picks the frame indices derived by hand from pytorchvideo's
sampler, resizes with ``torch.nn.functional.interpolate`` (the reference's op) and
crops at hand-computed offsets.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import InputError, MediaDecodeError
from bindrt.preprocess import preprocess, preprocess_video, preprocess_videos

av = pytest.importorskip("av")
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def make_video(n_frames: int, width: int, height: int, fps: int = 30) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"qscale": "2"}
        ramp = np.linspace(0, 255, width)[None, :]
        for i in range(n_frames):
            f = np.empty((height, width, 3), np.uint8)
            f[..., 0], f[..., 1], f[..., 2] = (i % 10) * 25, (i // 10) * 25, ramp
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def decode_all(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def frame_code(rgb: np.ndarray) -> int:
    return int(round(rgb[0] / 25)) + 10 * int(round(rgb[1] / 25))


def reference(
    frames: list[np.ndarray], picks: list[tuple[int, int]], size: tuple[int, int], crops: list[tuple[int, int]]
) -> np.ndarray:
    torch = pytest.importorskip("torch")
    out = []
    for a, b in picks:
        clip = torch.from_numpy(np.stack([frames[a], frames[b]]).astype(np.float32)).permute(3, 0, 1, 2) / 255.0
        clip = torch.nn.functional.interpolate(clip, size=size, mode="bilinear", align_corners=False)
        clip = (clip - torch.from_numpy(MEAN)[:, None, None, None]) / torch.from_numpy(STD)[:, None, None, None]
        for y, x in crops:
            out.append(clip[:, :, y : y + 224, x : x + 224].numpy())
    return np.stack(out)


@pytest.fixture(scope="module")
def landscape() -> bytes:
    return make_video(90, 320, 240)  # 3 s at 30 fps


def test_landscape_clips_frames_and_crops(landscape: bytes) -> None:
    got = preprocess_video(landscape)
    assert got.shape == (15, 3, 2, 224, 224) and got.dtype == np.float32
    # duration 3 s: max_start 1, step 1/5 s; clip k = frames ceil(30*k/5) .. ceil(30*(k/5+2)) - 1.
    picks = [(0, 59), (6, 65), (12, 71), (18, 77), (24, 83)]
    raw = got * STD[None, :, None, None, None] + MEAN[None, :, None, None, None]
    for k, (a, b) in enumerate(picks):
        for crop in range(3):
            px = raw[3 * k + crop, :, :, 112, 112] * 255
            assert [frame_code(px[:, 0]), frame_code(px[:, 1])] == [a, b]
    # 320x240 -> 298x224 (floor(320/240*224)); crops at x = 0, ceil(74/2) = 37, 74 along the width.
    ramp_col0 = raw[0:3, 2, 0, 112, 0] * 255
    expected_cols = (np.array([0, 37, 74]) + 0.5) * (320 / 298) - 0.5  # source column under each crop's column 0
    np.testing.assert_allclose(ramp_col0, np.maximum(expected_cols, 0) * 255 / 319, atol=2)
    want = reference(decode_all(landscape), picks, (224, 298), [(0, 0), (0, 37), (0, 74)])
    assert np.abs(got - want).max() <= 1e-5


def test_portrait_short_video_crops_along_height() -> None:
    data = make_video(45, 120, 160)  # 1.5 s: every clip is the whole video, frames 0 and 44
    got = preprocess_video(data)
    assert got.shape == (15, 3, 2, 224, 224)
    # 120x160 -> 224 wide, floor(160/120*224) = 298 high; crops at y = 0, 37, 74.
    want = reference(decode_all(data), [(0, 44)] * 5, (298, 224), [(0, 0), (37, 0), (74, 0)])
    assert np.abs(got - want).max() <= 1e-5
    for k in range(5):
        np.testing.assert_array_equal(got[3 * k : 3 * k + 3], got[0:3])


def test_path_and_batch(tmp_path: Path, landscape: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(landscape)
    batch = preprocess_videos([path, landscape])
    assert batch.shape == (2, 15, 3, 2, 224, 224)
    np.testing.assert_array_equal(batch[0], batch[1])
    assert preprocess("video", str(path)).shape == (1, 15, 3, 2, 224, 224)


# ------------------------------------------------------------------ bad input
def _check(exc: pytest.ExceptionInfo, *words: str) -> None:
    msg = str(exc.value)
    assert "[video item 1]" in msg, msg
    for w in words:
        assert w in msg, msg


def test_truncated_video(landscape: bytes) -> None:
    with pytest.raises(MediaDecodeError) as e:
        preprocess_videos([landscape, landscape[: len(landscape) // 2]])
    _check(e, "cannot decode", "expected a video file")


def test_unreadable_missing_and_wrong_items(tmp_path: Path, landscape: bytes) -> None:
    bad = tmp_path / "junk.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaDecodeError) as e:
        preprocess_videos([landscape, bad])
    _check(e, "junk.mp4", "expected a video file")
    with pytest.raises(InputError) as e:
        preprocess_videos([landscape, tmp_path / "missing.mp4"])
    _check(e, "file not found", "missing.mp4")
    arr = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(InputError) as e:
        preprocess_videos([landscape, arr])
    _check(e, "array", "expected a video file")
    audio_only = io.BytesIO()
    with av.open(audio_only, "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.random.default_rng(2).integers(-999, 999, (1, 800), dtype=np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(MediaDecodeError) as e:
        preprocess_videos([landscape, audio_only.getvalue()])
    _check(e, "no video stream")
    with pytest.raises(InputError, match=r"\[video\] expected at least one item"):
        preprocess_videos([])
