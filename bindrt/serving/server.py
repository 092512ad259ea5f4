"""``bindrt serve``: a bundle behind a real Triton Inference Server, through PyTriton.

One Triton model per input kind and form (:func:`bindrt.serving.protocol.models_for`): raw
media in (``text``, ``vision``, ``audio``...) and preprocessed tensors in (``<kind>_encoder``),
every one returning the L2-normalised ``embedding``. All the work is bindrt's: the requests go
to one :class:`bindrt.runtime.embedder.Embedder` (``bindrt.load(bundle, backend=...)``), media
arrive as ``bytes`` (a request never makes the server open a path), text is strict UTF-8.

Errors and batching. PyTriton fails every request of one ``execute`` call when the inference
callable raises, so Triton's dynamic batcher (several clients' requests in one call) would let
one bad request fail its batch-mates. bindrt's models therefore take one request per call
(no Triton dynamic batcher; ``instances`` model instances run requests concurrently): each
request is decoded, checked and preprocessed on its own and a bad one raises, which Triton
answers with an error whose text holds ``protocol.error_message(exc)`` (HTTP 400/500, gRPC
status), naming what was wrong. The batching across clients happens after that, in bindrt: one
:class:`Coalescer` per input kind gathers the checked batches of concurrent requests (raw and
``<kind>_encoder`` models alike) for up to ``max_queue_delay_us`` or ``max_batch`` items and
runs them through the encoder at once.

:func:`serve` runs in the calling process and blocks until SIGTERM/SIGINT (then Triton finishes
the requests it accepted, up to ``exit_timeout_s``, and every child process is gone) or until
Triton dies. :func:`start_server` runs ``bindrt serve`` as a subprocess on free ports and returns
a :class:`ServerHandle` once every model is loaded (tests, load tests, notebooks).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.errors import BackendError, ConfigError, InputError, LimitError
from bindrt.layouts import INPUT_KINDS
from bindrt.serving import protocol

DEFAULT_BACKEND = "onnxruntime"
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_QUEUE_DELAY_US = 2000
#: model instances per model: requests one model decodes at once (batched after that). More than one
#: makes PyTriton's later instances fetch their config from the first within a fixed 1 s, which a
#: loaded small machine can miss; raise it (``--instances``) where cores are plenty.
DEFAULT_INSTANCES = 1
DEFAULT_EXIT_TIMEOUT_S = 30
INSTALL_HINT = "bindrt serve needs nvidia-pytriton (pip install 'bindrt[serve]')"


class RequestFailed(Exception):
    """What the inference callable raises: its text is ``protocol.error_message`` of the cause."""


# ----------------------------------------------------------------------------- request handling
class Coalescer:
    """Cross-request batching for one input kind: checked batches in, one encoder call per group out.

    Each caller :meth:`submit` s a batch that already passed ``Embedder.check_batch`` and blocks
    for its rows. A worker thread takes the first waiting batch, then whatever arrives within
    ``max_delay_s`` up to ``max_items`` items, and encodes the same-shaped ones together (normalised
    rows). If a group fails, its batches are encoded one by one, so an error reaches only the
    request whose batch caused it. Written here because Triton's dynamic batcher cannot be used
    (see the module docstring) and nothing else batches across PyTriton's model instances.
    """

    def __init__(self, embedder: Any, kind: str, max_items: int, max_delay_s: float) -> None:
        import queue

        self.embedder, self.kind, self.max_items, self.max_delay_s = embedder, kind, max_items, max_delay_s
        self.queue: "queue.Queue[tuple[np.ndarray, Any] | None]" = queue.Queue()
        self.thread = threading.Thread(target=self._run, name=f"bindrt-coalescer-{kind}", daemon=True)
        self.thread.start()

    def submit(self, batch: np.ndarray) -> np.ndarray:
        from concurrent.futures import Future

        future: Future = Future()
        self.queue.put((batch, future))
        return future.result()

    def close(self) -> None:
        """Stop the worker once the batches already submitted are encoded; later ones fail with BackendError."""
        self.queue.put(None)

    def _run(self) -> None:
        import queue

        while True:
            first = self.queue.get()
            if first is None:
                self._refuse_the_rest()
                return
            group, items, deadline = [first], len(first[0]), time.monotonic() + self.max_delay_s
            while items < self.max_items:
                try:
                    nxt = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self.queue.put(None)
                    break
                group.append(nxt)
                items += len(nxt[0])
            by_shape: dict[tuple[int, ...], list[tuple[np.ndarray, Any]]] = {}
            for member in group:
                by_shape.setdefault(tuple(member[0].shape[1:]), []).append(member)
            for members in by_shape.values():
                self._encode(members)

    def _refuse_the_rest(self) -> None:
        import queue

        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[1].set_exception(BackendError(f"the server is stopping; the {self.kind} request was not run"))

    def _encode(self, members: list[tuple[np.ndarray, Any]]) -> None:
        try:
            batch = members[0][0] if len(members) == 1 else np.concatenate([b for b, _ in members])
            out = self.embedder.encode(self.kind, batch, normalize=True)
        except Exception as exc:  # noqa: BLE001 -- handed to the request(s) it belongs to
            if len(members) == 1:
                members[0][1].set_exception(exc)
            else:
                for member in members:
                    self._encode([member])
            return
        start = 0
        for b, future in members:
            future.set_result(out[start : start + len(b)])
            start += len(b)


class ModelHandler:
    """The inference callable of one Triton model: PyTriton requests (one per call) -> output dicts."""

    def __init__(self, embedder: Any, spec: protocol.ModelSpec, max_request_bytes: int, coalescer: Coalescer) -> None:
        self.embedder = embedder
        self.spec = spec
        self.kind = spec.kind
        self.max_request_bytes = max_request_bytes
        self.coalescer = coalescer

    def __call__(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        """Without a dynamic batcher Triton hands over one request per call; if it ever hands over
        more, they are answered together or, if one fails, all with that request's error."""
        outputs = []
        for request in requests:
            try:
                outputs.append({protocol.OUTPUT_NAME: self.embed({name: request[name] for name in request.keys()})})
            except Exception as exc:  # noqa: BLE001 -- the request's own error, as text the client maps back
                raise RequestFailed(protocol.error_message(exc)) from None
        return outputs

    def embed(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """One request: size caps, decoding and preprocessing, the batch check, then the shared encoder call."""
        self._check_request(arrays)
        batch = self.embedder.check_batch(self.kind, self.prepare(arrays))
        return self.coalescer.submit(batch)

    def _check_request(self, arrays: dict[str, np.ndarray]) -> int:
        """Size caps before anything is decoded; returns the number of items."""
        if not arrays:
            raise InputError(f"the request has no inputs; expected {', '.join(t.name for t in self.spec.inputs)}")
        nbytes = sum(_nbytes(a) for a in arrays.values())
        if nbytes > self.max_request_bytes:
            raise LimitError(
                f"the request holds {nbytes:,} bytes of input, over the server's limit max_request_bytes="
                f"{self.max_request_bytes:,}; send fewer or smaller items per request, or start `bindrt serve` "
                "with a larger --max-request-bytes",
                modality=self.kind,
            )
        items = {int(a.shape[0]) if a.ndim else 1 for a in arrays.values()}
        if len(items) != 1:
            raise InputError(
                f"the request's inputs hold different numbers of items {sorted(items)}", modality=self.kind
            )
        n = items.pop()
        if n > protocol.MAX_REQUEST_ITEMS:
            raise LimitError(
                f"the request holds {n} items, over the limit of {protocol.MAX_REQUEST_ITEMS} per request; "
                "split it into several requests",
                modality=self.kind,
            )
        if n == 0:
            raise InputError("empty request (0 items); expected at least one item", modality=self.kind)
        return n

    # -- decoding ------------------------------------------------------------------------------
    def prepare(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """One request's inputs -> the preprocessed batch of the kind (raw models) or the tensor as sent."""
        from bindrt.preprocess import preprocess

        kind = self.kind
        if not self.spec.raw:
            return arrays[kind]
        if kind == "text":
            return preprocess("text", [_utf8(b, j) for j, b in enumerate(_bytes_items(arrays["text"], kind))])
        if kind == "audio":
            return preprocess("audio", _audio_items(arrays))
        if kind == "imu":
            return preprocess("imu", list(np.asarray(arrays["imu"], dtype=np.float32)))
        return preprocess(kind, _bytes_items(arrays[kind], kind))


def _nbytes(a: np.ndarray) -> int:
    if a.dtype.hasobject:
        return sum(len(x) if isinstance(x, (bytes, bytearray, str)) else 8 for x in a.flat)
    return int(a.nbytes)


def _bytes_items(arr: np.ndarray, kind: str) -> list[bytes]:
    """A BYTES input of shape (items, 1) -> one ``bytes`` object per item (never a path, never str)."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or arr.shape[1] != 1:
        raise InputError(f"expected a BYTES input of shape (items, 1), got {arr.shape}", modality=kind)
    items = []
    for j, x in enumerate(arr[:, 0]):
        if isinstance(x, str):  # a JSON (non-binary) HTTP request: its text is the content, not a path
            x = x.encode("utf-8")
        if not isinstance(x, (bytes, bytearray, memoryview, np.bytes_)):
            raise InputError(f"expected bytes, got {type(x).__name__}", modality=kind, item=j)
        items.append(bytes(x))
    return items


def _utf8(data: bytes, index: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"is not valid UTF-8 ({exc.reason} at byte {exc.start}); send text as UTF-8 bytes",
            modality="text",
            item=index,
        ) from None


def _audio_items(arrays: dict[str, np.ndarray]) -> list[Any]:
    if "audio" in arrays:
        if "waveform" in arrays or "sample_rate" in arrays:
            raise InputError(
                "the request has both 'audio' (encoded files) and 'waveform'/'sample_rate'; send one form per request",
                modality="audio",
            )
        return _bytes_items(arrays["audio"], "audio")
    if "waveform" not in arrays or "sample_rate" not in arrays:
        raise InputError(
            "expected 'audio' (encoded files, BYTES) or both 'waveform' (FP32 (channels, samples)) and "
            f"'sample_rate' (INT32); got {sorted(arrays)}",
            modality="audio",
        )
    waves, rates = np.asarray(arrays["waveform"]), np.asarray(arrays["sample_rate"]).reshape(-1)
    return [(waves[j], int(rates[j])) for j in range(len(waves))]


# ----------------------------------------------------------------------------- environment
def stub_library_dirs() -> list[str]:
    """Directories the Python-backend stub needs on LD_LIBRARY_PATH to load *this* interpreter's libpython.

    The stub shipped with nvidia-pytriton links ``libpython3.X.so.1.0`` by soname; without this
    interpreter's LIBDIR first it picks the system's build (here Debian's 3.11 under a pyenv 3.11),
    and models fail to load (``'_thread.RLock' object has no attribute '_recursion_count'``).
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    soname = sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY")
    if libdir and soname and os.path.exists(os.path.join(libdir, soname)):
        return [libdir]
    return []


#: PyTriton's tensor transport between its Python-backend stubs and this process. Its default, a
#: shared-memory TensorStore (a manager process per model), raced on loaded 2-core machines: models
#: failed to load with ``ConnectionRefusedError`` when two servers started together. Base64 over
#: PyTriton's sockets has no such process; it costs a copy of each tensor, small beside an encoder
#: call on CPU. Set PYTRITON_NO_TENSORSTORE yourself (empty: shared memory) to choose.
TENSOR_TRANSPORT_ENV = ("PYTRITON_NO_TENSORSTORE", "1")


@contextlib.contextmanager
def stub_environment() -> Iterator[None]:
    """LD_LIBRARY_PATH with :func:`stub_library_dirs` first, while Triton starts (PyTriton copies os.environ);
    and, unless set, PyTriton's socket tensor transport (:data:`TENSOR_TRANSPORT_ENV`) for good: this
    process reads it for every model it binds."""
    os.environ.setdefault(*TENSOR_TRANSPORT_ENV)
    old = os.environ.get("LD_LIBRARY_PATH")
    parts = [p for p in (old or "").split(os.pathsep) if p]
    dirs = stub_library_dirs()
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(dirs + [p for p in parts if p not in dirs])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LD_LIBRARY_PATH", None)
        else:
            os.environ["LD_LIBRARY_PATH"] = old


def check_ports(host: str, ports: dict[str, int]) -> None:
    """Each port free on ``host`` (bound and released here) and all different; ConfigError naming the port."""
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"--{name}-port {port!r} is not a port number (1-65535)")
        if port in seen:
            raise ConfigError(f"--{name}-port and --{seen[port]}-port are both {port}; give each its own port")
        seen[port] = name
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ConfigError(f"--host {host!r} is not an address here: {exc.strerror}") from None
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {host}:{port} for {name} ({exc.strerror}): the port is in use or not "
                    f"allowed; choose another with --{name}-port"
                ) from None


def free_ports(host: str = protocol.DEFAULT_HOST, count: int = 3) -> list[int]:
    """``count`` distinct ports that are free on ``host`` right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _url(scheme: str, host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    return f"{scheme}://{shown}:{port}"


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")


# ----------------------------------------------------------------------------- the server
def serve(
    bundle: "str | os.PathLike[str]",
    *,
    backend: str = DEFAULT_BACKEND,
    device: str = "cpu",
    precision: str = "fp32",
    modalities: "list[str] | tuple[str, ...] | str | None" = None,
    host: str = protocol.DEFAULT_HOST,
    http_port: int = protocol.DEFAULT_HTTP_PORT,
    grpc_port: int = protocol.DEFAULT_GRPC_PORT,
    metrics_port: int = protocol.DEFAULT_METRICS_PORT,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
    instances: int = DEFAULT_INSTANCES,
    max_request_bytes: int = protocol.MAX_REQUEST_BYTES,
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S,
    ready_file: "str | os.PathLike[str] | None" = None,
    on_ready: "Callable[[dict[str, Any]], None] | None" = None,
    verbose: bool = False,
    stop_event: "threading.Event | None" = None,
    index: "str | os.PathLike[str] | None" = None,
    **backend_options: Any,
) -> int:
    """Serve ``bundle`` until SIGTERM/SIGINT (or ``stop_event``); returns 0 after a graceful stop.

    Blocks. Signal handlers are installed only when called from the main thread; elsewhere set
    ``stop_event`` to stop. ``ready_file`` gets a JSON object (urls, models, pid) once every model
    is loaded; ``on_ready`` gets the same dict. ``verbose``: Triton's log on stdout and PyTriton's
    log records (otherwise Triton's log is kept only for error messages). ``backend_options`` go to
    ``bindrt.load``. Idle HTTP keep-alive connections hold a stop up to ``exit_timeout_s`` (Triton
    waits for them); close clients when done. ``index``: also serve a ``search`` model over that
    index (:mod:`bindrt.serving.search`), which must hold this bundle's embedding space.
    """
    for name, value, minimum in (
        ("max_batch", max_batch, 1),
        ("max_queue_delay_us", max_queue_delay_us, 0),
        ("instances", instances, 1),
        ("max_request_bytes", max_request_bytes, 1),
        ("exit_timeout_s", exit_timeout_s, 0),
    ):
        _check_int(name, value, minimum)
    if max_batch > protocol.MAX_REQUEST_ITEMS:
        raise ConfigError(f"max_batch={max_batch} is over the per-request item limit {protocol.MAX_REQUEST_ITEMS}")
    check_ports(host, {"http": http_port, "grpc": grpc_port, "metrics": metrics_port})
    try:
        from pytriton.model_config import ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError as exc:
        raise BackendError(f"{INSTALL_HINT}: {exc}") from None

    import logging

    import bindrt

    logging.getLogger("pytriton").setLevel(logging.INFO if verbose else logging.ERROR)
    embedder = bindrt.load(
        bundle,
        backend,
        device=device,
        precision=precision,
        modalities=modalities,
        batch_size=max_batch,
        **backend_options,
    )
    kinds = [k for k in INPUT_KINDS if k in embedder.input_kinds]
    specs = protocol.models_for(kinds, int(embedder.config.out_embed_dim))
    search_index = _open_index(index, bundle) if index is not None else None
    config = TritonConfig(
        http_address=host,
        grpc_address=host,
        metrics_address=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        exit_timeout_secs=exit_timeout_s,
    )
    stop = stop_event or threading.Event()
    handlers = _install_signal_handlers(stop)
    triton = None
    coalescers: dict[str, Coalescer] = {}
    try:
        with stub_environment():
            triton = Triton(config=config)
            _quiet(triton, verbose)
            coalescers.update({k: Coalescer(embedder, k, max_batch, max_queue_delay_us / 1e6) for k in kinds})
            for spec in specs:
                handler = ModelHandler(embedder, spec, max_request_bytes, coalescers[spec.kind])
                triton.bind(
                    model_name=spec.name,
                    infer_func=[handler] * instances,
                    inputs=[
                        Tensor(name=t.name, dtype=_pytriton_dtype(t.dtype), shape=t.dims, optional=t.optional)
                        for t in spec.inputs
                    ],
                    outputs=[Tensor(name=spec.output.name, dtype=np.float32, shape=spec.output.dims)],
                    config=ModelConfig(max_batch_size=max_batch, batcher=None),  # one request per call: see above
                    strict=False,
                )
            if search_index is not None:
                _bind_search(triton, search_index, max_batch, Tensor, ModelConfig)
            try:
                triton.run()
            except Exception as exc:  # noqa: BLE001 -- PyTriton's own errors, timeouts, a dead tritonserver
                raise BackendError(
                    f"Triton Inference Server did not start: {_one_line(exc)}{_log_tail(triton)}"
                ) from None
        info = {
            "http": _url("http", host, http_port),
            "grpc": _url("grpc", host, grpc_port),
            "metrics": _url("http", host, metrics_port) + "/metrics",
            "models": [s.name for s in specs] + (["search"] if search_index is not None else []),
            "pid": os.getpid(),
        }
        if ready_file is not None:
            _write_atomic(Path(ready_file), json.dumps(info))
        if on_ready is not None:
            on_ready(info)
        while not stop.wait(0.5):
            if not triton.is_alive():
                raise BackendError(f"Triton Inference Server stopped unexpectedly{_log_tail(triton)}")
        return 0
    finally:
        if triton is not None:
            triton.stop()  # SIGINT to tritonserver: it finishes accepted requests, then the proxies stop
        for coalescer in coalescers.values():  # after Triton: the requests it finishes still need them
            coalescer.close()
        _restore_signal_handlers(handlers)
        embedder.close()
        if search_index is not None:
            search_index.close()


def _open_index(path: "str | os.PathLike[str]", bundle: "str | os.PathLike[str]") -> Any:
    """The index to search, refused unless it holds ``bundle``'s embedding space."""
    from bindrt.bundle import Bundle
    from bindrt.index import Index
    from bindrt.index.store import IndexStore, embedding_space

    return Index(IndexStore.open(path, space=embedding_space(Bundle.open(bundle))))


def _bind_search(triton: Any, index: Any, max_batch: int, Tensor: Any, ModelConfig: Any) -> None:
    from bindrt.serving.search import OUTPUTS, SEARCH_MODEL, SearchHandler

    triton.bind(
        model_name=SEARCH_MODEL,
        infer_func=SearchHandler(index),
        inputs=[
            Tensor(name="embedding", dtype=np.float32, shape=(int(index.space["dim"]),)),
            Tensor(name="k", dtype=np.int32, shape=(1,), optional=True),
        ],
        outputs=[Tensor(name=name, dtype=dtype, shape=(-1,)) for name, dtype in OUTPUTS],
        config=ModelConfig(max_batch_size=max_batch, batcher=None),
        strict=False,
    )


def _quiet(triton: Any, verbose: bool) -> None:
    """Triton's log goes to stdout only with ``verbose`` (PyTriton prints it by default; it still keeps it for errors)."""
    initialize = getattr(triton, "_initialize_server", None)
    if initialize is None:
        return

    def initialize_quietly() -> None:
        initialize()
        server = getattr(triton, "_triton_server", None)
        if server is not None and hasattr(server, "_verbose"):
            server._verbose = verbose

    triton._initialize_server = initialize_quietly


def _pytriton_dtype(triton_dtype: str) -> Any:
    return bytes if triton_dtype == "BYTES" else np.dtype(protocol.TRITON_TO_NUMPY[triton_dtype]).type


def _install_signal_handlers(stop: threading.Event) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        old[sig] = signal.signal(sig, lambda *_: stop.set())
    return old


def _restore_signal_handlers(old: dict[int, Any]) -> None:
    for sig, handler in old.items():
        signal.signal(sig, handler)


def _one_line(exc: BaseException) -> str:
    """A multi-line error (Triton quotes Python tracebacks) as one line: its first line and the exception lines."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    raised = [ln for ln in lines[1:] if re.match(r"^[\w.]+(Error|Exception|Exit|Timeout)\b.*:", ln)]
    return " ... ".join(dict.fromkeys([lines[0], *raised[-2:]])) if lines else type(exc).__name__


def _log_tail(triton: Any, lines: int = 8) -> str:
    server = getattr(triton, "_triton_server", None)
    try:
        text = server.logs() if server is not None else ""
    except Exception:  # noqa: BLE001
        text = ""
    tail = [ln for ln in text.splitlines() if ln.strip()][-lines:]
    return ("; Triton's last log lines: " + " | ".join(tail)) if tail else ""


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- a server in a subprocess
class ServerHandle:
    """A ``bindrt serve`` subprocess: its URLs, its process, and a graceful :meth:`stop`."""

    def __init__(self, process: subprocess.Popen, info: dict[str, Any], log_path: Path, workdir: Any) -> None:
        self.process = process
        self.info = info
        self.url_http: str = info["http"]
        self.url_grpc: str = info["grpc"]
        self.url_metrics: str = info["metrics"]
        self.models: list[str] = list(info["models"])
        self.log_path = log_path
        self._workdir = workdir
        self._log_text = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, protocol_name: str = "http", **options: Any):
        from bindrt.client import Client

        return Client(self.url_http if protocol_name == "http" else self.url_grpc, **options)

    def log(self) -> str:
        """The server's stdout and stderr so far (kept after :meth:`stop`)."""
        if self._workdir is None:
            return self._log_text
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 90.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (graceful), wait up to ``timeout`` s (then kill); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._workdir is not None:
            self._log_text = self.log()
            self._workdir.cleanup()
            self._workdir = None
        return int(self.process.returncode)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_command(bundle: "str | os.PathLike[str]", **options: Any) -> list[str]:
    """The ``python -m bindrt serve`` command line for :func:`serve`'s keyword options."""
    cmd = [sys.executable, "-m", "bindrt", "serve", os.fspath(bundle)]
    for name, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            cmd.append(flag)
        else:
            cmd += [flag, ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    return cmd


def start_server(
    bundle: "str | os.PathLike[str]",
    *,
    host: str = protocol.DEFAULT_HOST,
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    startup_timeout: float = 180.0,
    env: "dict[str, str] | None" = None,
    **options: Any,
) -> ServerHandle:
    """Start ``bindrt serve`` in a subprocess (free ports unless given); return once every model is loaded.

    ``options``: :func:`serve`'s keywords (backend, device, precision, modalities, max_batch,
    max_queue_delay_us, instances, max_request_bytes, exit_timeout_s, verbose). Its stdout and
    stderr go to a log file (``handle.log()``). A server that exits or does not get ready in time
    raises BackendError with its last log lines.
    """
    free = iter(free_ports(host if host not in ("0.0.0.0", "") else "127.0.0.1", 3))
    ports = {
        name: port if port is not None else next(free)
        for name, port in (("http_port", http_port), ("grpc_port", grpc_port), ("metrics_port", metrics_port))
    }
    workdir = tempfile.TemporaryDirectory(prefix="bindrt-serve-")
    ready = Path(workdir.name) / "ready.json"
    log_path = Path(workdir.name) / "server.log"
    cmd = serve_command(bundle, host=host, **ports, ready_file=str(ready), **options)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    deadline = time.monotonic() + startup_timeout
    while not ready.exists():
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            if code is None:
                process.kill()
                process.wait()
            text = log_path.read_text(errors="replace").strip().splitlines()
            workdir.cleanup()
            what = f"exited with status {code}" if code is not None else f"was not ready after {startup_timeout:g} s"
            raise BackendError(f"`bindrt serve` {what}: " + " | ".join(text[-6:]))
        time.sleep(0.1)
    return ServerHandle(process, json.loads(ready.read_text()), log_path, workdir)


__all__ = [
    "ModelHandler",
    "RequestFailed",
    "ServerHandle",
    "check_ports",
    "free_ports",
    "serve",
    "serve_command",
    "start_server",
    "stub_environment",
    "stub_library_dirs",
]
