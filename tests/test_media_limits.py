"""Decode bounds (bindrt.preprocess.limits): hostile media fail fast, before allocating, with a LimitError.

Each memory case runs in a child process under RLIMIT_AS (3 GiB): on main these
inputs were OOM-killed or took gigabytes. The child prints the error's type and
message, its wall time and its peak RSS; the parent asserts the error names the
limit and its environment variable, and that the child stayed small (rejected
before allocating, not near the memory limit).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import MEDIA_DIR
from PIL import Image

from bindrt.errors import ConfigError, InputError, LimitError, MediaDecodeError
from bindrt.preprocess import (
    Tokenizer,
    current_media_limits,
    get_tokenizer,
    media_limits,
    preprocess,
    preprocess_depth,
    resample,
    set_media_limits,
    tokenize,
)
from bindrt.preprocess import audio as audio_module
from bindrt.preprocess.limits import env_var

ROOT = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 3 << 30
PEAK_RSS_MB = 400
SECONDS = 10.0  # generous for a loaded CI machine; a rejection takes well under a second

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, (%d, %d))
    import numpy as np
    from bindrt.preprocess import preprocess
    kind, item, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if item.endswith(".npy") and options.pop("as_array", False):
        item = np.load(item)
    start = time.perf_counter()
    try:
        preprocess(kind, [item], **options)
        result = {"type": None, "message": ""}
    except BaseException as exc:
        result = {"type": type(exc).__name__, "message": str(exc)}
    result["seconds"] = time.perf_counter() - start
    # VmHWM: this process image's own peak (ru_maxrss carries the forking parent's over exec)
    hwm = [ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")]
    result["rss_mb"] = (int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024
    print("RESULT " + json.dumps(result))
"""
    % (MEMORY_LIMIT, MEMORY_LIMIT)
)


def run_bounded(kind: str, item: Path | str, env: dict[str, str] | None = None, **options: object) -> dict:
    """preprocess(kind, [item]) in a child under RLIMIT_AS; its error type/message, seconds and peak RSS."""
    child_env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(item), json.dumps(options)],
        cwd=ROOT,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[-1][len("RESULT ") :])


def assert_rejected(result: dict, limit: str, error: str = "LimitError") -> None:
    assert result["type"] == error, result
    assert limit in result["message"] and env_var(limit) in result["message"], result
    assert result["seconds"] < SECONDS, result
    assert result["rss_mb"] < PEAK_RSS_MB, result


# ------------------------------------------------------------------ hostile files
def thin_png(path: Path, size: tuple[int, int], mode: str = "L", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if mode == "I;16" else np.uint8
    Image.fromarray(rng.integers(1, 200, size[::-1], dtype=dtype)).save(path)
    return path


def wav_header(sample_rate: int, bits: int, data: bytes, channels: int = 1, tag: int = 1) -> bytes:
    """A RIFF/WAVE file written by hand, so a header can declare what no encoder writes."""
    align = channels * max(bits // 8, 1)
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def thin_mp4(path: Path, width: int, height: int, frames: int = 3, seed: int = 0) -> Path:
    av = pytest.importorskip("av")
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = width, height, "yuv444p"
        for _ in range(frames):
            frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


@pytest.mark.parametrize("kind,mode", [("vision", "L"), ("depth", "I;16"), ("thermal", "L")])
def test_thin_image_files_rejected_before_decoding(tmp_path: Path, kind: str, mode: str) -> None:
    # 1x200000 was OOM-killed at 19 GB on main (the resize to 224 x 44,800,000).
    assert_rejected(run_bounded(kind, thin_png(tmp_path / "thin.png", (1, 200_000), mode)), "max_aspect_ratio")


@pytest.mark.parametrize("kind", ["vision", "depth", "thermal"])
def test_thin_arrays_rejected(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(1, 255, (1, 200_000), dtype=np.uint8) if kind != "depth" else rng.uniform(0.5, 5, (1, 200_000))
    path = tmp_path / "thin.npy"
    np.save(path, arr)
    assert_rejected(run_bounded(kind, path, as_array=kind == "vision"), "max_aspect_ratio")
    if kind == "vision":  # vision takes no .npy: the array path
        return
    assert_rejected(run_bounded(kind, path, as_array=True), "max_aspect_ratio")


def test_huge_declared_png_rejected_from_its_header(tmp_path: Path) -> None:
    # 30000 x 30000 = 900 MP declared in the header of a small file: over Pillow's bomb limit too.
    path = thin_png(tmp_path / "big.png", (8, 8))
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 30_000, 30_000)  # IHDR width, height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the IHDR chunk's CRC
    path.write_bytes(bytes(data))
    assert_rejected(run_bounded("vision", path), "max_pixels")


def test_thin_video_rejected_before_decoding(tmp_path: Path) -> None:
    # A 2x2048 mp4 reached 6.3 GB on main (every frame resized to 224 x 229,376).
    assert_rejected(run_bounded("video", thin_mp4(tmp_path / "thin.mp4", 16, 2048)), "max_aspect_ratio")


def test_video_frame_count_and_pixels_bounded(tmp_path: Path) -> None:
    path = thin_mp4(tmp_path / "ok.mp4", 64, 48, frames=25)
    assert_rejected(run_bounded("video", path, env={env_var("max_video_frames"): "10"}), "max_video_frames")
    assert_rejected(run_bounded("video", path, env={env_var("max_video_seconds"): "1"}), "max_video_seconds")
    assert_rejected(
        run_bounded("video", path, env={env_var("max_video_frame_pixels"): "1000"}), "max_video_frame_pixels"
    )


def test_wav_declaring_1hz_rejected(tmp_path: Path) -> None:
    # 200 KB at 1 Hz: resampling it whole to 16 kHz was a 6 GiB allocation on main.
    pcm = np.random.default_rng(2).integers(-20000, 20000, 100_000, dtype=np.int16).tobytes()
    path = tmp_path / "one_hz.wav"
    path.write_bytes(wav_header(1, 16, pcm))
    result = run_bounded("audio", path)
    assert_rejected(result, "min_sample_rate")
    assert "sample rate in Hz is 1," in result["message"]


def test_wav_declaring_7_bits_rejected(tmp_path: Path) -> None:
    pcm = np.random.default_rng(3).integers(1, 127, 32_000, dtype=np.uint8).tobytes()
    with pytest.raises(MediaDecodeError) as e:
        preprocess("audio", [wav_header(16_000, 7, pcm)])
    msg = str(e.value)
    assert "7 bits per sample" in msg and "16, 24 or 32-bit PCM" in msg and "[audio item 0]" in msg


def test_long_audio_bounded_from_header(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, np.random.default_rng(4).uniform(-0.5, 0.5, 16_000 * 3).astype(np.float32), 16_000)
    assert_rejected(run_bounded("audio", path, env={env_var("max_audio_seconds"): "2"}), "max_audio_seconds")
    assert_rejected(run_bounded("audio", path, env={env_var("max_audio_samples"): "1000"}), "max_audio_samples")


def test_audio_pairs_bounded() -> None:
    wav = np.random.default_rng(5).uniform(-0.5, 0.5, 48_000).astype(np.float32)
    with pytest.raises(LimitError, match=r"sample rate in Hz is 1, under the limit min_sample_rate=1,000"):
        preprocess("audio", (wav, 1))
    with pytest.raises(LimitError, match=env_var("max_sample_rate")):
        preprocess("audio", (wav, 10_000_000))
    with pytest.raises(LimitError, match=r"max_audio_seconds=1"), media_limits(max_audio_seconds=1):
        preprocess("audio", (wav, 16_000))


def test_resample_chunks_match_one_matmul(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(6).standard_normal((2, 20_011)).astype(np.float32)
    whole = {sr: resample(x, sr, 16_000) for sr in (44_100, 48_000, 8_000)}
    monkeypatch.setattr(audio_module, "_RESAMPLE_CHUNK", 1000)  # many chunks of a few rows
    for sr, want in whole.items():
        got = resample(x, sr, 16_000)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)  # BLAS may round a chunk's sums in the last bit


def test_imu_bounds(tmp_path: Path) -> None:
    x = np.random.default_rng(7).standard_normal((6, 2000)).astype(np.float32)
    with pytest.raises(LimitError, match=r"after resampling 2000 samples from 1e-06 to 200 Hz.*max_imu_samples"):
        preprocess("imu", [x], sample_rate=1e-6)
    npy = tmp_path / "declares_huge.npy"  # header says (6, 10**12): checked before loading
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (6, 10**12)})
    npy.write_bytes(b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + x.tobytes())
    assert_rejected(run_bounded("imu", npy), "max_imu_samples")
    csv = tmp_path / "imu.csv"
    csv.write_text("\n".join(",".join(f"{v:.6g}" for v in row) for row in x.T))
    assert_rejected(run_bounded("imu", csv, env={env_var("max_imu_csv_bytes"): "1000"}), "max_imu_csv_bytes")
    with pytest.raises(InputError, match="sample_rate='fast'"):
        preprocess("imu", [x], sample_rate="fast")


def test_truncated_npy_rejected_before_loading(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(8).uniform(0.5, 5, (300, 400)))
    with pytest.raises(MediaDecodeError, match="truncated: the header declares 960000 bytes"):
        preprocess("depth", [buf.getvalue()[:5000]])


def test_huge_text_rejected_fast() -> None:
    text = "a dog " * 9_000_000  # 54 MB
    with pytest.raises(LimitError) as e:
        tokenize(["fine", text])
    msg = str(e.value)
    assert "[text item 1]" in msg and "54,000,000" in msg and env_var("max_text_chars") in msg


def test_file_size_bound(tmp_path: Path) -> None:
    data = (MEDIA_DIR / "logo.png").read_bytes()
    with media_limits(max_file_bytes=len(data) - 1), pytest.raises(LimitError, match="max_file_bytes"):
        preprocess("vision", [MEDIA_DIR / "logo.png"])
    with media_limits(max_file_bytes=len(data) - 1), pytest.raises(LimitError, match="the bytes item"):
        preprocess("vision", [data])


# ------------------------------------------------------------------ raising limits; real media
def _thin_rgb(seed: int = 9) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (8, 400, 3), dtype=np.uint8)  # 50:1


def test_context_manager_raises_a_limit() -> None:
    with pytest.raises(LimitError) as e:
        preprocess("vision", [_thin_rgb()])
    msg = str(e.value)
    assert "aspect ratio (400x8) is 50, over the limit max_aspect_ratio=32" in msg
    assert "BINDRT_MAX_ASPECT_RATIO" in msg and "media_limits(max_aspect_ratio=...)" in msg
    with media_limits(max_aspect_ratio=64) as limits:
        assert limits.max_aspect_ratio == 64
        out = preprocess("vision", [_thin_rgb()])
    assert out.shape == (1, 3, 224, 224) and out.dtype == np.float32 and np.isfinite(out).all()
    assert current_media_limits().max_aspect_ratio == 32  # restored


def test_env_var_raises_a_limit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "thin.png"
    Image.fromarray(_thin_rgb(10)).save(path)
    monkeypatch.setenv("BINDRT_MAX_ASPECT_RATIO", "64")
    assert preprocess("vision", [path]).shape == (1, 3, 224, 224)
    with media_limits(max_aspect_ratio=40), pytest.raises(LimitError):  # the code's setting wins
        preprocess("vision", [path])
    monkeypatch.setenv("BINDRT_MAX_ASPECT_RATIO", "wide")
    with pytest.raises(ConfigError, match="environment variable BINDRT_MAX_ASPECT_RATIO"):
        preprocess("vision", [path])


def test_set_media_limits_and_bad_values() -> None:
    try:
        assert set_media_limits(max_aspect_ratio=64).max_aspect_ratio == 64
        assert preprocess("vision", [_thin_rgb(11)]).shape == (1, 3, 224, 224)
    finally:
        assert set_media_limits(max_aspect_ratio=None).max_aspect_ratio == 32
    for bad in ({"max_pixels": 0}, {"max_pixels": 1.5}, {"max_aspect_ratio": float("nan")}, {"max_pixel": 5}):
        with pytest.raises(ConfigError):
            set_media_limits(**bad)
        with pytest.raises(ConfigError), media_limits(**bad):
            pass


def test_real_media_within_default_limits(tmp_path: Path) -> None:
    skdata = pytest.importorskip("skimage.data")
    for name in ("photo.jpg", "logo.png"):
        assert np.isfinite(preprocess("vision", [MEDIA_DIR / name])).all()
    assert preprocess("vision", [skdata.astronaut(), skdata.camera()]).shape == (2, 3, 224, 224)
    assert preprocess("thermal", [skdata.camera()]).shape == (1, 1, 224, 224)
    assert preprocess("audio", [MEDIA_DIR / "stereo22k.wav", MEDIA_DIR / "tone16k.wav"]).shape == (2, 3, 1, 128, 204)
    video = preprocess("video", [thin_mp4(tmp_path / "v.mp4", 96, 64, frames=30)])
    assert video.shape == (1, 15, 3, 2, 224, 224) and np.isfinite(video).all()


# ------------------------------------------------------------------ other defects
def test_depth_overflow_messages(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    big = rng.uniform(1e39, 1e40, (60, 80))
    with pytest.raises(InputError, match="a depth value overflows float32"):
        preprocess_depth(big)
    with pytest.raises(InputError, match="a disparity value overflows float32"):
        preprocess_depth(big, kind="disparity")
    tiny = rng.uniform(0.5, 5, (60, 80)).astype(np.float32)
    tiny[3, 4] = 1e-44
    with pytest.raises(InputError, match=r"the disparity \(focal_length \* baseline / depth\) overflows float32"):
        preprocess_depth(tiny)
    path = tmp_path / "i32.tif"
    Image.fromarray(rng.integers(70_000, 90_000, (60, 80), dtype=np.int32)).save(path)
    with pytest.raises(InputError, match="has disparity values in .*outside 0..65535.*16-bit disparity"):
        preprocess_depth(path, kind="disparity")
    with pytest.raises(InputError, match="focal_length=-1.0"):
        preprocess_depth(tiny, focal_length=-1.0)


@pytest.mark.parametrize(
    "kind,name,phrase",
    [
        ("vision", "a.png", "(expected an image file"),
        ("audio", "a.wav", "(expected an audio file)"),
        ("video", "a.mp4", "(expected a video file)"),
        ("depth", "a.npy", "(expected a .npy file)"),
        ("imu", "a.csv", "(expected a .csv/.npy file"),
    ],
)
def test_missing_file_message_grammar(tmp_path: Path, kind: str, name: str, phrase: str) -> None:
    with pytest.raises(InputError) as e:
        preprocess(kind, [tmp_path / name])
    msg = str(e.value)
    assert "file not found" in msg and phrase in msg and "an existing" not in msg and " a an " not in msg


def test_special_tokens_option() -> None:
    eot = 49407
    default = tokenize("a cat <|endoftext|> a dog")[0]
    assert list(default[:4]) == [49406, 320, 2368, eot]  # the reference's behaviour: a real end token
    plain = tokenize("a cat <|endoftext|> a dog", special_tokens=False)[0]
    end = int(np.argmax(plain))
    assert plain[end] == eot and end > 6 and eot not in plain[:end]
    np.testing.assert_array_equal(
        preprocess("text", ["<|startoftext|>x"], special_tokens=False)[0][:2],
        [49406, get_tokenizer().encode("<|", special_tokens=False)[0]],
    )
    np.testing.assert_array_equal(Tokenizer()(["<|endoftext|>"], special_tokens=False), plain_ids("<|endoftext|>"))


def plain_ids(text: str) -> np.ndarray:
    body = get_tokenizer().encode(text, special_tokens=False)
    out = np.zeros((1, 77), np.int64)
    out[0, : len(body) + 2] = [49406, *body, 49407]
    return out


def reference_bpe(word: tuple[str, ...], ranks: dict) -> tuple[str, ...]:
    """CLIP's SimpleTokenizer.bpe loop (quadratic), as the oracle for bindrt's heap version."""
    while len(word) > 1:
        pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
        bigram = min(pairs, key=lambda p: ranks.get(p, math.inf))
        if bigram not in ranks:
            break
        out, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == bigram:
                out.append(word[i] + word[i + 1])
                i += 2
            else:
                out.append(word[i])
                i += 1
        word = tuple(out)
    return word


def test_heap_bpe_matches_reference_loop() -> None:
    tok = get_tokenizer()
    rng = np.random.default_rng(13)
    letters = "abcdefghijklmnopqrstuvwxyzéßø"
    for _ in range(1500):
        k = int(rng.integers(1, len(letters) + 1))
        word = "".join(rng.choice(list(letters[:k]), size=int(rng.integers(1, 40))))
        symbols = "".join(tok.byte_encoder[b] for b in word.encode())
        want = reference_bpe(tuple(symbols[:-1]) + (symbols[-1] + "</w>",), tok.bpe_ranks)
        assert tok._bpe_uncached(symbols) == want, word


def test_long_word_and_long_text_are_fast_and_exact() -> None:
    rng = np.random.default_rng(14)
    word = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=200_000))  # quadratic BPE: minutes
    ids = tokenize(word)[0]
    assert ids[0] == 49406 and ids[76] == 49407 and (ids[1:76] > 0).all()
    text = " ".join(rng.choice(["dog", "cat", "barking", "the", "&amp;", "12"], size=100_000))
    full = [49406, *get_tokenizer().encode(text)[:75], 49407]  # the unbounded encoding, cut afterwards
    np.testing.assert_array_equal(tokenize(text)[0], full)
