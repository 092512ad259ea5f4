"""Load test of ``bindrt serve``: N concurrent tritonclient clients for T seconds over HTTP and gRPC.

Each client loops until the deadline, sending a mix of modalities and batch sizes as raw media
(the models of :mod:`bindrt.serving.protocol`) with bad requests mixed in: undecodable image
bytes, non-UTF-8 text, a wrong dtype, a wrong shape, an empty batch, an oversized input and an
unknown model. A good request must succeed with finite unit rows; a bad one must be rejected
with a message naming what was wrong (:data:`BAD_REQUESTS` says what each message must contain).
After the run the server must still be ready. Reports throughput, latency p50/p90/p99 and
errors per request kind::

    python -m benchmarks.serving.load_test --clients 16 --seconds 20          # golden bundle, started here
    python -m benchmarks.serving.load_test --bundle B --backend openvino --clients 32 --seconds 60
    python -m benchmarks.serving.load_test --url 127.0.0.1:8000 --grpc-url 127.0.0.1:8001   # a running server

Results go to ``benchmarks/results/<date>-<cpu>/serving/<date>-load.{json,md}`` (``--out``).
tritonclient is used directly (not :mod:`bindrt.client`) so the wire protocol itself is what is
tested, as any Triton client sees it.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bindrt.serving import protocol

#: good request kinds: (model, batch sizes drawn from)
GOOD_REQUESTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "text": ("text", (1, 4, 8)),
    "vision": ("vision", (1, 2, 4)),
    "audio-file": ("audio", (1, 2)),
    "audio-waveform": ("audio", (1, 2)),
    "depth": ("depth", (1, 2)),
    "thermal": ("thermal", (1, 2)),
    "imu": ("imu", (1, 4)),
    "vision-tensor": ("vision" + protocol.ENCODER_SUFFIX, (1, 4)),
}
#: bad request kinds -> a word the server's (or Triton's) rejection must contain (case-insensitive)
BAD_REQUESTS: dict[str, tuple[str, ...]] = {
    "undecodable-image": ("MediaDecodeError", "InputError"),
    "non-utf8-text": ("UTF-8",),
    "wrong-dtype": ("FP64", "datatype", "data type", "dtype"),
    "wrong-shape": ("shape",),
    "empty-batch": ("empty", "byte size", "shape"),  # Triton itself: "input byte size mismatch ... got 0"
    "oversized": ("LimitError", "exceeds", "too large", "limit"),
    "unknown-model": ("unknown", "not found", "UnknownModalityError"),
}


# ----------------------------------------------------------------------------- inputs
@dataclass
class Media:
    """Real and generated media, encoded once; requests draw from them at random."""

    images: list[bytes]
    depth: list[bytes]
    thermal: list[bytes]
    wavs: list[bytes]
    texts: list[str]

    @classmethod
    def make(cls, rng: np.random.Generator) -> "Media":
        from importlib import resources

        import soundfile as sf
        from PIL import Image

        def png(array: np.ndarray) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(array).save(buf, format="PNG")
            return buf.getvalue()

        photo = resources.files("bindrt.data").joinpath("samples/photo.jpg").read_bytes()
        images = [photo] + [png(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((240, 320), (300, 200))]
        depth = [png(rng.integers(500, 9000, (240, 320), dtype=np.uint16)) for _ in range(2)]
        thermal = [png(rng.integers(0, 256, (256, 256), dtype=np.uint8)) for _ in range(2)]
        wavs = []
        for seconds, sr in ((3.0, 16000), (5.5, 44100)):
            t = np.arange(int(seconds * sr)) / sr
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 900) * t) + 0.05 * rng.standard_normal(t.size)
            buf = io.BytesIO()
            sf.write(buf, wave.astype(np.float32), sr, format="WAV")
            wavs.append(buf.getvalue())
        words = "a dog cat bird fire rain car street guitar beach night the of playing loud quiet".split()
        texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) for _ in range(32)]
        return cls(images, depth, thermal, wavs, texts)


def _bytes_column(items: list[bytes]) -> np.ndarray:
    return np.array(items, dtype=object).reshape(-1, 1)


def good_request(kind: str, batch: int, media: Media, rng: np.random.Generator) -> tuple[str, dict[str, np.ndarray]]:
    """(model, {input name: array}) of one good request."""
    pick = lambda pool: [pool[int(i)] for i in rng.integers(0, len(pool), batch)]  # noqa: E731
    model = GOOD_REQUESTS[kind][0]
    if kind == "text":
        return model, {"text": _bytes_column([t.encode() for t in pick(media.texts)])}
    if kind in ("vision", "depth", "thermal"):
        pool = {"vision": media.images, "depth": media.depth, "thermal": media.thermal}[kind]
        return model, {kind: _bytes_column(pick(pool))}
    if kind == "audio-file":
        return model, {"audio": _bytes_column(pick(media.wavs))}
    if kind == "audio-waveform":
        sr = int(rng.choice([16000, 22050, 48000]))
        wave = (0.2 * rng.standard_normal((batch, 1, int(sr * rng.uniform(2.5, 4.0))))).astype(np.float32)
        return model, {"waveform": wave, "sample_rate": np.full((batch, 1), sr, np.int32)}
    if kind == "imu":
        return model, {"imu": rng.standard_normal((batch, 6, 2000)).astype(np.float32)}
    if kind == "vision-tensor":
        return model, {"vision": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)}
    raise KeyError(kind)


def bad_request(
    kind: str, media: Media, rng: np.random.Generator, max_request_bytes: int
) -> tuple[str, dict[str, np.ndarray]]:
    if kind == "undecodable-image":
        return "vision", {"vision": _bytes_column([rng.bytes(64), media.images[0][:40]])}
    if kind == "non-utf8-text":
        return "text", {"text": _bytes_column([b"ok", b"\xff\xfe bad \xc3"])}
    if kind == "wrong-dtype":
        return "imu", {"imu": rng.standard_normal((1, 6, 2000))}  # float64
    if kind == "wrong-shape":
        return "vision" + protocol.ENCODER_SUFFIX, {"vision": rng.standard_normal((1, 3, 100, 100)).astype(np.float32)}
    if kind == "empty-batch":
        return "imu", {"imu": np.zeros((0, 6, 2000), np.float32)}
    if kind == "oversized":
        n = max_request_bytes // 4 // (6 * 2000) + 2
        return "imu", {"imu": rng.standard_normal((1, 6, 2000 * n)).astype(np.float32)}
    if kind == "unknown-model":
        return "smell", {"smell": _bytes_column([b"roses"])}
    raise KeyError(kind)


# ----------------------------------------------------------------------------- clients
@dataclass
class Outcome:
    kind: str
    protocol: str
    good: bool
    ok: bool  # good: succeeded with valid rows; bad: rejected with a message naming the problem
    seconds: float
    items: int
    message: str = ""


def _triton_dtype(array: np.ndarray) -> str:
    if array.dtype == object:
        return "BYTES"
    return {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}[
        array.dtype.name
    ]


class Sender:
    """One tritonclient connection (HTTP or gRPC), as a load-test client thread uses it."""

    def __init__(self, proto: str, url: str, timeout: float) -> None:
        self.proto = proto
        if proto == "http":
            import tritonclient.http as client
        else:
            import tritonclient.grpc as client
        self.module = client
        kwargs = {"network_timeout": timeout, "connection_timeout": timeout} if proto == "http" else {}
        self.client = client.InferenceServerClient(url=url, **kwargs)
        self.timeout = timeout

    def send(self, model: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
        tensors = []
        for name, array in inputs.items():
            t = self.module.InferInput(name, list(array.shape), _triton_dtype(array))
            t.set_data_from_numpy(array)
            tensors.append(t)
        outputs = [self.module.InferRequestedOutput(protocol.OUTPUT_NAME)]
        if self.proto == "grpc":
            result = self.client.infer(model, tensors, outputs=outputs, client_timeout=self.timeout)
        else:
            result = self.client.infer(model, tensors, outputs=outputs)
        return result.as_numpy(protocol.OUTPUT_NAME)

    def close(self) -> None:
        self.client.close()


def rejection_summary(message: str) -> str:
    """The bindrt error inside a rejection (PyTriton quotes the server's traceback around it), else the message."""
    error = protocol.find_error(message)
    return f"{type(error).__name__}: {error}" if error is not None else " ".join(message.split())


def _valid_rows(out: Any, batch: int) -> bool:
    return (
        isinstance(out, np.ndarray)
        and out.shape[0] == batch
        and bool(np.isfinite(out).all())
        and bool(np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-3))
    )


def client_loop(
    proto: str,
    url: str,
    deadline: float,
    seed: int,
    media: Media,
    bad_fraction: float,
    max_request_bytes: int,
    kinds: list[str],
    timeout: float,
    sink: list[Outcome],
) -> None:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    sender = Sender(proto, url, timeout)
    try:
        while time.perf_counter() < deadline:
            if pick.random() < bad_fraction:
                kind = pick.choice(list(BAD_REQUESTS))
                model, inputs = bad_request(kind, media, rng, max_request_bytes)
                start = time.perf_counter()
                try:
                    sender.send(model, inputs)
                    ok, message = False, "accepted a bad request"
                except Exception as exc:  # tritonclient raises InferenceServerException
                    message = str(exc)
                    ok = any(word.lower() in message.lower() for word in BAD_REQUESTS[kind])
                    message = rejection_summary(message)
                sink.append(Outcome(kind, proto, False, ok, time.perf_counter() - start, 0, message[:300]))
            else:
                kind = pick.choice(kinds)
                batch = pick.choice(GOOD_REQUESTS[kind][1])
                model, inputs = good_request(kind, batch, media, rng)
                start = time.perf_counter()
                try:
                    out = sender.send(model, inputs)
                    ok, message = _valid_rows(out, batch), ""
                    if not ok:
                        message = f"bad output {getattr(out, 'shape', None)}"
                except Exception as exc:
                    ok, message = False, str(exc)
                sink.append(Outcome(kind, proto, True, ok, time.perf_counter() - start, batch, message[:300]))
    finally:
        sender.close()


# ----------------------------------------------------------------------------- a server to test
def _host_port(url: str) -> str:
    """tritonclient wants ``host:port``; bindrt's URLs carry a scheme."""
    return url.split("://", 1)[-1].rstrip("/")


def ready(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{_host_port(http_url)}/v2/health/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def golden_bundle(workdir: Path) -> Path:
    """The golden model (tests/golden) converted and exported at fp32: a small bundle of all six modalities."""
    from bindrt.convert import convert_checkpoint
    from bindrt.export import export_bundle

    golden = Path(__file__).resolve().parents[2] / "tests" / "golden"
    out = workdir / "golden-bundle"
    if not (out / "manifest.json").is_file():
        shutil.rmtree(out, ignore_errors=True)
        convert_checkpoint(golden / "weights.pth", golden / "config.json", out)
        export_bundle(out, precisions=("fp32",), validate=False)
    return out


# ----------------------------------------------------------------------------- the run
def percentile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1e3, 2) if values else None


def summarize(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    rows = {}
    for key in sorted({(o.kind, o.protocol, o.good) for o in outcomes}):
        kind, proto, good = key
        group = [o for o in outcomes if (o.kind, o.protocol, o.good) == key]
        lat = [o.seconds for o in group if o.ok]
        rows[f"{kind} {proto}"] = {
            "good": good,
            "requests": len(group),
            "items": sum(o.items for o in group),
            "ok": sum(o.ok for o in group),
            "failed": sum(not o.ok for o in group),
            "requests_per_s": round(len(group) / seconds, 2),
            "items_per_s": round(sum(o.items for o in group if o.ok) / seconds, 2),
            "p50_ms": percentile_ms(lat, 50),
            "p90_ms": percentile_ms(lat, 90),
            "p99_ms": percentile_ms(lat, 99),
            "failures": sorted({o.message for o in group if not o.ok})[:3],
            "example_rejection": next((o.message for o in group if not good and o.ok), None),
        }
    good = [o for o in outcomes if o.good]
    bad = [o for o in outcomes if not o.good]
    return {
        "rows": rows,
        "good_requests": len(good),
        "failed_good_requests": sum(not o.ok for o in good),
        "bad_requests": len(bad),
        "bad_not_rejected_clearly": sum(not o.ok for o in bad),
        "items_per_s": round(sum(o.items for o in good if o.ok) / seconds, 2),
        "latency_ms_all_good": {q: percentile_ms([o.seconds for o in good if o.ok], q) for q in (50, 90, 99)},
    }


def run(args: argparse.Namespace, progress: Callable[[str], None] = print) -> dict[str, Any]:
    from bindrt.bench import machine_info

    rng = np.random.default_rng(args.seed)
    media = Media.make(rng)
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="bindrt-load-"))
    try:
        if args.url:
            http_url, grpc_url = _host_port(args.url), _host_port(args.grpc_url or "")
        else:
            bundle = args.bundle or str(golden_bundle(workdir))
            from bindrt.serving.server import start_server

            server = start_server(
                bundle,
                backend=args.backend,
                precision=args.precision,
                max_request_bytes=args.max_request_bytes,
                exit_timeout_s=20,
            )
            http_url, grpc_url = _host_port(server.url_http), _host_port(server.url_grpc)
            progress(f"bindrt serve ready on http {http_url}, grpc {grpc_url}")
        protocols = [p for p in args.protocols.split(",") if p]
        urls = {"http": http_url, "grpc": grpc_url}
        kinds = [k for k in GOOD_REQUESTS if k in args.kinds.split(",")] if args.kinds else list(GOOD_REQUESTS)
        outcomes: list[Outcome] = []
        sinks = [[] for _ in range(args.clients)]
        start = time.perf_counter()
        deadline = start + args.seconds
        threads = [
            threading.Thread(
                target=client_loop,
                args=(
                    protocols[i % len(protocols)],
                    urls[protocols[i % len(protocols)]],
                    deadline,
                    args.seed + i,
                    media,
                    args.bad_fraction,
                    args.max_request_bytes,
                    kinds,
                    args.timeout,
                    sinks[i],
                ),
                daemon=True,
            )
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.seconds + args.timeout + 30)
        elapsed = time.perf_counter() - start
        for s in sinks:
            outcomes.extend(s)
        healthy = ready(http_url)
        exit_code = server.stop() if server else None
        server = None
        summary = summarize(outcomes, elapsed)
        machine = machine_info()
        return {
            "benchmark": "bindrt serve load test (tritonclient on loopback)",
            "date": machine["date"],
            "machine": machine,
            "tritonclient": _version("tritonclient"),
            "nvidia_pytriton": _version("nvidia-pytriton"),
            "setup": {
                "bundle": args.bundle or "golden model (tests/golden), fp32 ONNX graphs",
                "backend": args.backend,
                "precision": args.precision or "default",
                "clients": args.clients,
                "seconds": args.seconds,
                "protocols": protocols,
                "bad_fraction": args.bad_fraction,
                "max_request_bytes": args.max_request_bytes,
            },
            "elapsed_s": round(elapsed, 2),
            "healthy_after": healthy,
            "server_exit_code": exit_code,
            **summary,
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def markdown(report: dict[str, Any]) -> str:
    from benchmarks.common import report_header

    s = report["setup"]
    notes = [
        f"- server: `bindrt serve` ({s['backend']}, {s['precision']}) on {s['bundle']}; loopback",
        f"- good requests {report['good_requests']}, failed {report['failed_good_requests']}; bad requests "
        f"{report['bad_requests']}, not rejected with a clear message {report['bad_not_rejected_clearly']}; "
        f"healthy after: {report['healthy_after']}; server exit code {report['server_exit_code']}",
        f"- throughput {report['items_per_s']} items/s; all good requests p50/p90/p99 "
        + "/".join(str(v) for v in report["latency_ms_all_good"].values())
        + " ms",
    ]
    lines = [
        *report_header(
            f"bindrt serve load test: {s['clients']} clients x {s['seconds']} s over {', '.join(s['protocols'])}",
            report,
            versions=f", tritonclient {report['tritonclient']}, nvidia-pytriton {report['nvidia_pytriton']}",
            notes=notes,
        ),
        "| request | protocol | good | requests | ok | failed | items/s | p50 ms | p90 ms | p99 ms | example rejection |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in report["rows"].items():
        kind, proto = name.rsplit(" ", 1)
        example = (r["example_rejection"] or "").replace("|", "/").replace("\n", " ")[:120]
        lines.append(
            f"| {kind} | {proto} | {r['good']} | {r['requests']} | {r['ok']} | {r['failed']} | {r['items_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {example} |"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", help="bundle to serve (default: the golden model, exported here at fp32)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default=None)
    p.add_argument("--url", help="HTTP address of a running server (host:port); default: start one here")
    p.add_argument("--grpc-url", help="gRPC address of that server (host:port)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--protocols", default="http,grpc")
    p.add_argument(
        "--kinds", default=None, help=f"comma-separated good request kinds (default all: {', '.join(GOOD_REQUESTS)})"
    )
    p.add_argument("--bad-fraction", type=float, default=0.1)
    p.add_argument("--max-request-bytes", type=int, default=4 << 20)
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/serving)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import write_report

    args = parser().parse_args(argv)
    if args.url and not args.grpc_url and "grpc" in args.protocols:
        parser().error("--url needs --grpc-url when --protocols includes grpc")
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "little")
    report = run(args)
    print(markdown(report))
    if not args.no_write:
        write_report(report, markdown, args.out, "serving", "load")
    ok = report["failed_good_requests"] == 0 and report["bad_not_rejected_clearly"] == 0 and report["healthy_after"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
