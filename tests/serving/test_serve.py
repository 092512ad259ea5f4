"""``bindrt serve`` (PyTriton, a real Triton Inference Server) and ``bindrt.client``: the issue's Done-when.

One ONNX fp32 export of the golden bundle (all six modalities) and one server subprocess on free
loopback ports serve the module; the SIGTERM test starts its own vision-only server last.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
from helpers import GOLDEN_DIR, MEDIA_DIR, min_row_cosine, png_bytes, wav_bytes

pytest.importorskip("pytriton", reason="bindrt serve needs nvidia-pytriton (pip install 'bindrt[serve]')")
pytest.importorskip("tritonclient.http", reason="bindrt.client needs tritonclient[http,grpc]")
pytest.importorskip("tritonclient.grpc", reason="bindrt.client needs tritonclient[http,grpc]")
pytest.importorskip("onnxruntime", reason="the served bundle runs on the onnxruntime backend")
pytest.importorskip("soundfile", reason="WAV bytes are written with soundfile")

from bindrt.errors import InputError, LimitError, MediaDecodeError, UnknownModalityError  # noqa: E402

pytestmark = [pytest.mark.serving, pytest.mark.slow]

PHOTO = os.path.join(os.path.dirname(__file__), "..", "..", "bindrt", "data", "samples", "photo.jpg")
MAX_REQUEST_BYTES = 4_000_000
COSINE = 0.9999


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def server(serving_bundle):
    from bindrt.serving.server import start_server

    handle = start_server(serving_bundle, backend="onnxruntime", max_request_bytes=MAX_REQUEST_BYTES)
    yield handle
    assert handle.stop() == 0, handle.log()[-3000:]


@pytest.fixture(scope="module")
def local(serving_bundle):
    import bindrt

    with bindrt.load(serving_bundle, backend="onnxruntime") as model:
        yield model


@pytest.fixture(scope="module")
def inputs():
    """Fresh random inputs of every kind (never zeros), real media files among them."""
    rng = np.random.default_rng()
    noise = (rng.standard_normal(24_000) * 0.2).astype(np.float32)
    noise[-50:] = 0.0  # a file whose bytes end in NULs must arrive whole
    words = ["dog", "a", "photo", "of", "the", "river", "music", "café", "☕", "night", "loud", "bird"]
    depth_mm = rng.integers(400, 6000, (90, 120)).astype(np.uint16)
    return {
        "text": [" ".join(rng.choice(words, int(rng.integers(1, 9)))) for _ in range(3)],
        "vision": [
            open(PHOTO, "rb").read(),
            str(MEDIA_DIR / "logo.png"),  # a path: read on the client
            png_bytes(rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)),
        ],
        "audio": [
            (MEDIA_DIR / "stereo22k.wav").read_bytes(),
            wav_bytes(noise, 16_000, subtype="PCM_16"),
            ((rng.standard_normal((2, 30_000)) * 0.3).astype(np.float32), 22_050),
            ((rng.standard_normal(40_000) * 0.3).astype(np.float32), 16_000),
        ],
        "depth": [png_bytes(depth_mm), png_bytes(rng.integers(300, 60000, (64, 64)).astype(np.uint16))],
        "thermal": [png_bytes(rng.integers(0, 256, (72, 96), dtype=np.uint8))],
        "imu": [(rng.standard_normal((6, 2000)) * 2).astype(np.float32), rng.standard_normal((1500, 6))],
    }


def _local_inputs(inputs: dict) -> dict:
    """The same inputs for bindrt.load(...).embed (paths read to bytes, as the client does)."""
    return {
        k: [open(x, "rb").read() if isinstance(x, str) and k != "text" else x for x in v] for k, v in inputs.items()
    }


# ----------------------------------------------------------------------------- the Done-when: same embeddings
@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_raw_inputs_of_every_modality_match_bindrt_load(server, local, inputs, proto):
    from bindrt.client import Client

    expected = local.embed(normalize=True, **_local_inputs(inputs))
    with Client(server.url_http if proto == "http" else server.url_grpc, timeout=60) as client:
        assert client.protocol == proto and client.ready()
        got = client.embed(**inputs)
    assert set(got) == set(expected)
    for kind, want in expected.items():
        assert got[kind].dtype == np.float32 and got[kind].shape == want.shape, kind
        assert np.allclose(np.linalg.norm(got[kind], axis=1), 1.0, atol=1e-5), kind
        assert min_row_cosine(got[kind], want) >= COSINE, kind


@pytest.mark.parametrize("proto", ["http", "grpc"])
def test_encoder_models_take_preprocessed_batches(server, local, proto):
    from bindrt.client import Client
    from bindrt.layouts import random_batch

    rng = np.random.default_rng()
    with Client(server.url_http if proto == "http" else server.url_grpc, batch_size=2) as client:  # 2: chunked
        for kind, clips in (("text", None), ("vision", None), ("audio", 2), ("imu", None), ("depth", None)):
            batch = random_batch(kind, 3, rng, clips=clips)
            got = client.encode(kind, batch)
            assert min_row_cosine(got, local.encode(kind, batch, normalize=True)) >= COSINE, kind


# ----------------------------------------------------------------------------- bad requests
def test_bad_requests_get_bindrt_errors_and_the_server_stays_ready(server):
    import tritonclient.http as th

    from bindrt.client import Client

    photo = open(PHOTO, "rb").read()
    with Client(server.url_http) as client:
        with pytest.raises(MediaDecodeError) as err:
            client.embed(vision=[photo, b"certainly not an image"])
        assert err.value.modality == "vision" and err.value.item == 1 and "cannot decode" in str(err.value)
        with pytest.raises(InputError, match="UTF-8") as err:
            client.embed(text=["fine", b"\xff\xfe broken"])
        assert err.value.item == 1
        with pytest.raises(InputError, match="datatype|dtype"):  # float token ids: Triton's own check
            client.encode("text", np.random.default_rng().random((2, 77)))
        with pytest.raises(InputError, match="shape"):
            client.encode("vision", np.random.default_rng().random((2, 3, 100, 100), dtype=np.float32))
        with pytest.raises(InputError, match="NaN"):
            client.encode("thermal", np.full((1, 1, 224, 224), np.nan, np.float32))
        with pytest.raises(InputError, match="empty"):
            client.embed(text=[])
        with pytest.raises(LimitError, match="max_request_bytes") as err:
            client.embed(vision=[os.urandom(MAX_REQUEST_BYTES + 1)])
        assert f"{MAX_REQUEST_BYTES:,}" in str(err.value)
        with pytest.raises(UnknownModalityError):
            client.max_batch("no_such_model")
        with pytest.raises(UnknownModalityError):
            client.embed(smell=["x"])
        # what a plain tritonclient user sends: an empty batch, an unknown model
        raw = th.InferenceServerClient(server.url_http.split("://")[1])
        empty = th.InferInput("text", [0, 1], "BYTES")
        empty.set_data_from_numpy(np.empty((0, 1), dtype=object))
        with pytest.raises(Exception):
            raw.infer("text", [empty])
        with pytest.raises(Exception, match="unknown model"):
            raw.infer("no_such_model", [empty])
        raw.close()
        assert client.ready()
        assert client.embed(text=["still serving"])["text"].shape[0] == 1
    health = urllib.request.urlopen(server.url_http + "/v2/health/ready", timeout=10)
    assert health.status == 200
    metrics = urllib.request.urlopen(server.url_metrics, timeout=10).read().decode()
    assert 'nv_inference_request_success{model="text"' in metrics
    assert 'nv_inference_request_failure{model="vision"' in metrics


def test_a_bad_request_raises_its_own_error_and_a_good_one_embeds(local):
    """One request per call: a bad one raises (Triton answers it alone), a good one gets normalised rows."""
    from bindrt.serving import protocol
    from bindrt.serving.server import Coalescer, ModelHandler, RequestFailed

    coalescer = Coalescer(local, "text", max_items=32, max_delay_s=0.0)
    try:
        handler = ModelHandler(local, protocol.raw_model("text", 32), protocol.MAX_REQUEST_BYTES, coalescer)

        def req(*texts):
            return {"text": np.array([[t] for t in texts], dtype=object)}

        out = handler([req(b"a dog", b"a cat")])[0][protocol.OUTPUT_NAME]
        want = local.embed(text=["a dog", "a cat"], normalize=True)["text"]
        assert out.shape == (2, 32) and min_row_cosine(out, want) >= COSINE
        with pytest.raises(RequestFailed, match=r"^InputError: \[text item 1\].*UTF-8"):
            handler([req(b"fine", b"\xc3\x28")])
    finally:
        coalescer.close()


class _CountingEmbedder:
    """The real embedder, counting encoder calls and failing any call whose batch holds ``poison`` rows."""

    def __init__(self, embedder, poison: float) -> None:
        self.embedder, self.poison, self.calls = embedder, poison, []

    def encode(self, kind, batch, normalize=False):
        self.calls.append(len(batch))
        if np.any(batch[:, 0, 0] == self.poison):
            raise ValueError("poisoned batch")
        return self.embedder.encode(kind, batch, normalize=normalize)


def test_coalescer_batches_concurrent_requests_and_isolates_a_failing_one(local):
    from concurrent.futures import ThreadPoolExecutor

    from bindrt.serving.server import Coalescer

    rng = np.random.default_rng()
    batches = [rng.standard_normal((n, 6, 2000)).astype(np.float32) for n in (1, 3, 2, 2)]
    batches[2][0, 0, 0] = 12345.0  # the poisoned request
    counting = _CountingEmbedder(local, poison=12345.0)
    coalescer = Coalescer(counting, "imu", max_items=64, max_delay_s=0.3)
    try:
        with ThreadPoolExecutor(len(batches)) as pool:
            futures = [pool.submit(coalescer.submit, b) for b in batches]
            outcomes = [f.exception() or f.result() for f in futures]
    finally:
        coalescer.close()
    assert isinstance(outcomes[2], ValueError)
    for i in (0, 1, 3):
        want = local.encode("imu", batches[i], normalize=True)
        assert outcomes[i].shape == want.shape and min_row_cosine(outcomes[i], want) >= COSINE
    assert counting.calls[0] == sum(len(b) for b in batches)  # one encoder call for all four, first
    assert sorted(counting.calls[1:]) == sorted(len(b) for b in batches)  # then one by one, after it failed


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_no_server_is_a_backend_error_naming_the_url(scheme):
    from bindrt.client import Client
    from bindrt.errors import BackendError
    from bindrt.serving.server import free_ports

    url = f"{scheme}://127.0.0.1:{free_ports(count=1)[0]}"
    with Client(url, timeout=5) as client:
        assert not client.ready()
        with pytest.raises(BackendError, match=url.replace(".", r"\.")):
            client.embed(text=["nobody listens"])


def test_the_client_packs_requests_under_the_servers_byte_cap(server):
    from bindrt.client import Client

    rng = np.random.default_rng()
    big = [png_bytes(rng.integers(0, 256, (720, 720, 3), dtype=np.uint8)) for _ in range(3)]  # ~1.5 MB each
    assert sum(map(len, big)) > MAX_REQUEST_BYTES > max(map(len, big))
    with Client(server.url_grpc, max_request_bytes=MAX_REQUEST_BYTES) as client:
        assert client.embed(vision=big)["vision"].shape[0] == 3
    with Client(server.url_grpc, max_request_bytes=10 * MAX_REQUEST_BYTES) as client:
        with pytest.raises(LimitError, match="max_request_bytes"):
            client.embed(vision=big)


# ----------------------------------------------------------------------------- command-line refusals
def _serve(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bindrt", "serve", *args], capture_output=True, text=True, timeout=timeout
    )


def test_a_port_in_use_is_one_line_exit_2(serving_bundle):
    from bindrt.serving.server import free_ports

    http, grpc, metrics = free_ports(count=3)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", grpc))
        busy.listen()
        done = _serve(
            str(serving_bundle), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)
        )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{grpc}" in lines[0] and "in use" in lines[0], done.stderr


def test_a_bundle_without_graphs_for_the_backend_is_one_line_exit_2(tmp_path):
    from bindrt.convert import convert_checkpoint
    from bindrt.serving.server import free_ports

    bare = tmp_path / "bare"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", bare, modalities=["imu"])
    http, grpc, metrics = free_ports(count=3)
    done = _serve(str(bare), "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics))
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "bindrt serve: error:" in done.stderr, done.stderr


def test_imports_stay_cheap():
    code = (
        "import sys, bindrt.cli.serve, bindrt.client, bindrt.serving.server; "
        "bad = [m for m in ('torch', 'pytriton', 'tritonclient') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- graceful stop (runs last)
def test_sigterm_answers_accepted_requests_exits_0_and_leaves_no_child(serving_bundle, local):
    import psutil

    from bindrt.client import Client
    from bindrt.serving.server import DEFAULT_INSTANCES, start_server

    # a long batching delay holds the requests inside the server when SIGTERM arrives: one per model
    # instance waiting in bindrt's coalescer, the rest queued in Triton (accepted, not yet run)
    handle = start_server(
        serving_bundle, modalities=["vision"], max_queue_delay_us=1_500_000, max_batch=64, verbose=True
    )
    try:
        children = psutil.Process(handle.pid).children(recursive=True)
        names = {c.name() for c in children}
        assert "tritonserver" in names and "triton_python_backend_stub" in names, names
        with Client(handle.url_http) as client, pytest.raises(UnknownModalityError, match="'text'"):
            client.embed(text=["not served here"])
        rng = np.random.default_rng()
        images = [png_bytes(rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)) for i in range(6)]
        results: dict[int, object] = {}

        def send(i: int) -> None:
            try:
                with Client(handle.url_http if i % 2 else handle.url_grpc) as client:
                    results[i] = client.embed(vision=[images[i]])["vision"]
            except Exception as exc:  # noqa: BLE001 -- reported below
                results[i] = exc

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while _pending(handle.url_metrics, "vision") < len(images) - DEFAULT_INSTANCES:  # those are running
            assert time.monotonic() < deadline, "the requests never reached Triton's queue"
            time.sleep(0.05)
        handle.process.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        code = handle.process.wait(60)
    finally:
        handle.stop()
    want = local.embed(vision=images, normalize=True)["vision"]
    for i in range(len(images)):
        assert isinstance(results.get(i), np.ndarray), (i, results.get(i))
        assert min_row_cosine(results[i], want[i : i + 1]) >= COSINE
    assert code == 0, handle.log()[-3000:]
    time.sleep(0.5)
    left = [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, left
    log = handle.log()
    assert "successfully unloaded 'vision'" in log and "Non-graceful termination" not in log, log[-3000:]


def _pending(metrics_url: str, model: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    prefix = f'nv_inference_pending_request_count{{model="{model}"'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_the_stub_gets_this_interpreters_libpython_first(monkeypatch):
    """PyTriton copies os.environ for tritonserver; the stub must find this interpreter's libpython first."""
    import sysconfig

    from bindrt.serving.server import stub_environment, stub_library_dirs

    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/elsewhere")
    libdir = sysconfig.get_config_var("LIBDIR")
    with stub_environment():
        parts = os.environ["LD_LIBRARY_PATH"].split(os.pathsep)
        assert parts == [*stub_library_dirs(), "/opt/elsewhere"]
        if stub_library_dirs():
            assert parts[0] == libdir
    assert os.environ["LD_LIBRARY_PATH"] == "/opt/elsewhere"
