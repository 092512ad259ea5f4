"""Fuzz the media decoders: hostile bytes end in a bindrt InputError or a correct batch, never anything else.

Seeds are small real files of every format the preprocessors accept (PNG 8/16-bit,
JPEG, TIFF float, WAV int16/float, FLAC, OGG, MP3, MP4, WebM, .npy, .csv) plus
random bytes and strings; each is fed whole, truncated and byte-mutated to
``preprocess(kind, [item])``. The loop runs in a child process under RLIMIT_AS
with a per-case deadline (faulthandler kills a hang and prints its stack), and
prints every case before running it, so a failure names the seed and the case;
rerun one with ``python tests/test_fuzz_decoders.py SEED [CASE]``.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240601
MEMORY_LIMIT = 3 << 30
CASE_SECONDS = 20  # one case; a hang is killed and reported at this point
BUDGET_SECONDS = 45  # the whole loop stops starting new cases after this


# ------------------------------------------------------------------ seed files
def _image_bytes(arr: np.ndarray, fmt: str, **kw: object) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _audio_bytes(wav: np.ndarray, sr: int, fmt: str, subtype: str | None = None) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wav, sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def _video_bytes(rng: np.random.Generator, fmt: str, codec: str, frames: int = 12) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=8)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def seed_files(rng: np.random.Generator) -> dict[str, list[tuple[str, bytes]]]:
    """kind -> [(format name, file bytes)]: small valid files, fresh random content."""
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    depth_mm = rng.integers(300, 9000, (30, 40), dtype=np.uint16)
    depth_m = rng.uniform(0.3, 9.0, (30, 40)).astype(np.float32)
    stereo = rng.uniform(-0.5, 0.5, (16_000, 2)).astype(np.float32)
    imu = rng.standard_normal((300, 6))
    csv = "acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n" + "\n".join(",".join(f"{v:.5g}" for v in r) for r in imu)
    return {
        "vision": [
            ("png8", _image_bytes(rgb, "PNG")),
            ("jpeg", _image_bytes(rgb, "JPEG", quality=80)),
            ("tiff", _image_bytes(rgb, "TIFF")),
            ("gif", _image_bytes(grey, "GIF")),
        ],
        "depth": [
            ("png16", _image_bytes(depth_mm, "PNG")),
            ("tiff_f", _image_bytes(depth_m, "TIFF")),
            ("npy", _npy_bytes(depth_m)),
        ],
        "thermal": [
            ("png8", _image_bytes(grey, "PNG")),
            ("png16", _image_bytes(depth_mm, "PNG")),
            ("npy", _npy_bytes(grey)),
        ],
        "audio": [
            ("wav16", _audio_bytes(stereo, 16_000, "WAV", "PCM_16")),
            ("wavf", _audio_bytes(stereo, 22_050, "WAV", "FLOAT")),
            ("flac", _audio_bytes(stereo, 16_000, "FLAC")),
            ("ogg", _audio_bytes(stereo, 16_000, "OGG")),
            ("mp3", _audio_bytes(stereo, 16_000, "MP3")),
        ],
        "video": [("mp4", _video_bytes(rng, "mp4", "mpeg4")), ("webm", _video_bytes(rng, "webm", "libvpx"))],
        "imu": [("npy", _npy_bytes(imu)), ("csv", csv.encode())],
    }


# ------------------------------------------------------------------ cases
def mutations(rng: np.random.Generator, data: bytes) -> Iterator[tuple[str, bytes]]:
    """The file whole, cut at random points, with random bytes changed, and its head spliced onto noise."""
    yield "whole", data
    for _ in range(10):
        cut = int(rng.integers(1, len(data)))
        yield f"truncated@{cut}", data[:cut]
    for _ in range(60):
        buf = bytearray(data)
        span = min(len(buf), 512) if rng.random() < 0.7 else len(buf)  # headers, mostly
        where = [int(i) for i in rng.integers(0, span, int(rng.integers(1, 9)))]
        for i in where:
            buf[i] = int(rng.integers(0, 256))
        yield f"mutated@{where}", bytes(buf)
    for _ in range(3):
        head = int(rng.integers(4, min(len(data), 256)))
        yield f"head{head}+noise", data[:head] + rng.bytes(int(rng.integers(0, 4000)))


def random_array(rng: np.random.Generator) -> np.ndarray:
    """Any dtype, rank 0-3, sides 0-70 (sometimes 1 x long), values incl. NaN/Inf/huge."""
    shape = tuple(int(d) for d in rng.integers(0, 70, int(rng.integers(0, 4))))
    if rng.random() < 0.2:
        shape = (1, int(rng.integers(100, 5000)))
    dtype = rng.choice(["uint8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64", "bool"])
    values = rng.normal(0, 10.0 ** float(rng.integers(-3, 40)), shape)
    with np.errstate(over="ignore", invalid="ignore"):
        arr = values.astype(dtype)
    if arr.size and arr.dtype.kind == "f" and rng.random() < 0.3:
        arr.flat[int(rng.integers(0, arr.size))] = rng.choice([np.nan, np.inf, -np.inf])
    return arr


def random_text(rng: np.random.Generator) -> str:
    pick = rng.integers(0, 3)
    if pick == 0:  # arbitrary code points (no surrogates)
        cps = rng.integers(1, 0x10FFFF, int(rng.integers(0, 300)))
        return "".join(chr(int(c)) for c in cps if not 0xD800 <= c < 0xE000)
    if pick == 1:  # random bytes decoded leniently
        return rng.bytes(int(rng.integers(0, 600))).decode("utf-8", errors="replace")
    words = ["<|endoftext|>", "<|startoftext|>", "&amp;", "&#x110000;", "Ã©", "\u200b", "\n", "🙂", "a" * 50, "x"]
    return " ".join(rng.choice(words, int(rng.integers(0, 60))))


def cases(seed: int) -> Iterator[tuple[str, str, object]]:
    """(kind, description, item), the same for the same seed."""
    rng = np.random.default_rng(seed)
    for kind, files in seed_files(rng).items():
        for _ in range(6):
            n = int(rng.integers(1, 3000))
            yield kind, f"random {n} bytes", rng.bytes(n)
        for fmt, data in files:
            for what, item in mutations(rng, data):
                yield kind, f"{fmt} {what}", item
        for i in range(15):
            arr = random_array(rng)
            if kind == "audio":
                yield kind, f"pair #{i} {arr.dtype}{arr.shape}", (arr, int(rng.choice([1, 8000, 16000, 10**9])))
            elif kind != "video":
                yield kind, f"array #{i} {arr.dtype}{arr.shape}", arr
    for i in range(150):
        yield "text", f"text #{i}", random_text(rng)


# ------------------------------------------------------------------ the child
def check_output(kind: str, out: np.ndarray) -> str | None:
    """None if ``out`` is a correct one-item batch of ``kind``, else what is wrong."""
    from bindrt.preprocess import INPUT_LAYOUTS

    want = (1, *INPUT_LAYOUTS[kind].item_shape)
    if not isinstance(out, np.ndarray) or out.shape != want:
        return f"shape {getattr(out, 'shape', type(out))} (expected {want})"
    if kind == "text":
        return None if out.dtype == np.int64 else f"dtype {out.dtype}"
    if out.dtype != np.float32 or not np.isfinite(out).all():
        return f"dtype {out.dtype}, finite {bool(np.isfinite(out).all())}"
    return None


def run_cases(seed: int, only: int | None = None, budget: float = BUDGET_SECONDS) -> list[dict]:
    """Run the cases in this process; return the failures. Prints each case first (a hang is then named)."""
    from bindrt.errors import InputError
    from bindrt.preprocess import preprocess

    failures, start = [], time.perf_counter()
    for i, (kind, what, item) in enumerate(cases(seed)):
        if only is not None and i != only:
            continue
        if only is None and time.perf_counter() - start > budget:
            print(f"BUDGET stopped before case {i}", flush=True)
            break
        print(f"CASE {i} {kind} {what}", flush=True)
        faulthandler.dump_traceback_later(CASE_SECONDS, exit=True)
        try:
            problem = check_output(kind, preprocess(kind, [item]))
        except InputError:
            problem = None
        except BaseException as exc:  # noqa: BLE001 - anything else is the bug this test looks for
            problem = f"{type(exc).__name__}: {exc}"[:500]
        finally:
            faulthandler.cancel_dump_traceback_later()
        if problem:
            failures.append({"case": i, "kind": kind, "what": what, "problem": problem})
    return failures


def child_main(argv: list[str]) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    seed, only = int(argv[0]), (int(argv[1]) if len(argv) > 1 else None)
    failures = run_cases(seed, only)
    print("FAILURES " + json.dumps(failures), flush=True)


# ------------------------------------------------------------------ the test
def test_decoders_survive_fuzzed_media() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, __file__, str(SEED)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS + 4 * CASE_SECONDS,
    )
    last_case = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("CASE ")), "none")
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith("FAILURES ")]
    assert proc.returncode == 0 and results, (
        f"fuzz child died (rc {proc.returncode}, seed {SEED}) during {last_case}:\n{proc.stderr[-4000:]}"
    )
    failures = json.loads(results[0][len("FAILURES ") :])
    ran = sum(ln.startswith("CASE ") for ln in proc.stdout.splitlines())
    assert ran >= 1000, f"only {ran} cases ran in the time budget"
    assert not failures, f"seed {SEED}: rerun one with `python tests/test_fuzz_decoders.py {SEED} CASE`:\n" + "\n".join(
        json.dumps(f) for f in failures
    )


if __name__ == "__main__":
    child_main(sys.argv[1:])
