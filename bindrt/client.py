"""A client for bindrt models on Triton Inference Server (``bindrt serve``, or a ``bindrt triton-repo`` repository).

``Client(url).embed(text=[...], vision=[...], audio=[...])`` returns what
``bindrt.load(bundle, ...).embed(..., normalize=True)`` returns for the same inputs: one float32
``(N, out_dim)`` array of unit rows per input kind. Paths are read here, on the client; the server
only ever gets bytes. ``encode(kind, batch)`` sends preprocessed batches to the ``<kind>_encoder``
models. Server errors come back as bindrt's error types (:mod:`bindrt.errors`), with item
indices counted in the caller's list. Torch-free; needs ``tritonclient[http]`` / ``tritonclient[grpc]``.

One Client per thread over HTTP (tritonclient's HTTP client is not thread-safe); gRPC clients may be shared.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bindrt.errors import BackendError, BindrtError, InputError, UnknownModalityError
from bindrt.layouts import INPUT_KINDS, INPUT_LAYOUTS
from bindrt.serving import protocol

DEFAULT_TIMEOUT_S = 120.0
_ITEM_PREFIX = re.compile(r"^\[(\w+)(?: item (\d+))?\] (.*)$", re.S)
#: Triton's own checks of a request against the model config (dtype, shape, batch size).
_TRITON_INPUT_ERRORS = re.compile(
    r"unexpected datatype|unexpected shape|unexpected inference input|expected \d+ inputs|batch-size must be|"
    r"byte size|unable to find|unexpected number of|expecting input|the input .* was not found|input .* shape",
    re.I,
)
_UNKNOWN_MODEL = re.compile(r"unknown model|is not found|has no available versions", re.I)


class _NotBindrt(BindrtError):
    """A server message that names no bindrt error class."""


class Client:
    """bindrt's models on a Triton server at ``url`` (``http://host:port``, ``grpc://host:port`` or ``host:port``).

    ``protocol``: ``"http"`` or ``"grpc"``; by default from the URL's scheme, else ``grpc`` for
    port 8001 and ``http`` otherwise. ``timeout``: seconds per call. ``batch_size``: the most items
    per request (default: each model's ``max_batch_size``, at most ``protocol.MAX_REQUEST_ITEMS``).
    ``max_request_bytes``: raw items are packed into requests of at most this many bytes (the
    server's default cap); a single larger item still goes alone and the server refuses it (LimitError).
    """

    def __init__(
        self,
        url: str = f"http://{protocol.DEFAULT_HOST}:{protocol.DEFAULT_HTTP_PORT}",
        protocol: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        batch_size: int | None = None,
        max_request_bytes: int = protocol.MAX_REQUEST_BYTES,
    ) -> None:
        self.protocol, self.address = _parse_url(url, protocol)
        self.url = f"{self.protocol}://{self.address}"
        self.timeout = float(timeout)
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise InputError(f"batch_size={batch_size!r} must be an int >= 1")
        self.batch_size = batch_size
        self.max_request_bytes = int(max_request_bytes)
        self._max_batch: dict[str, int] = {}
        try:
            if self.protocol == "http":
                import tritonclient.http as tc
            else:
                import tritonclient.grpc as tc
        except ImportError as exc:
            raise BackendError(
                f"bindrt.client needs tritonclient with {self.protocol} support "
                f"(pip install 'tritonclient[{self.protocol}]'): {exc}"
            ) from None
        self._tc = tc
        try:
            if self.protocol == "http":
                self._client = tc.InferenceServerClient(
                    self.address, connection_timeout=self.timeout, network_timeout=self.timeout
                )
            else:
                self._client = tc.InferenceServerClient(self.address)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"cannot open a client for {self.url}: {exc}") from None

    # -- server state ------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether the server answers ``/v2/health/ready`` with ready (False when it cannot be reached)."""
        try:
            return bool(self._client.is_server_ready())
        except Exception:  # noqa: BLE001
            return False

    def max_batch(self, model: str) -> int:
        """The model's ``max_batch_size`` (cached); UnknownModalityError when the server has no such model."""
        if model not in self._max_batch:
            try:
                if self.protocol == "http":
                    config = self._client.get_model_config(model)
                else:
                    config = self._client.get_model_config(model, as_json=True, client_timeout=self.timeout)["config"]
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc, model, None, 0) from None
            self._max_batch[model] = max(1, int(config.get("max_batch_size", 1) or 1))
        limit = min(self._max_batch[model], protocol.MAX_REQUEST_ITEMS)
        return min(limit, self.batch_size) if self.batch_size else limit

    # -- raw inputs ----------------------------------------------------------------------------
    def embed(self, **inputs: Any) -> dict[str, np.ndarray]:
        """Embed raw inputs per kind: ``text`` (str), ``vision``/``video``/``depth``/``thermal`` (bytes or
        paths, read here), ``audio`` (bytes, paths or ``(waveform, sample_rate)``), ``imu`` (arrays
        ``(6, N)`` or ``(N, 6)``, or CSV/.npy paths read here). Returns ``{kind: (N, out_dim) float32}``."""
        if not inputs:
            raise InputError("no inputs given; expected keyword arguments such as text=[...], vision=[...]")
        out: dict[str, np.ndarray] = {}
        for kind, items in inputs.items():
            if kind not in INPUT_KINDS:
                raise UnknownModalityError(f"unknown input kind {kind!r}; expected one of {', '.join(INPUT_KINDS)}")
            items = _as_items(kind, items)
            if not items:
                raise InputError("empty input list; expected at least one item", modality=kind)
            parts = [self._infer(kind, tensors, offset) for tensors, offset in self._requests(kind, items)]
            out[kind] = np.concatenate(parts, axis=0)
        return out

    def _requests(self, kind: str, items: list[Any]) -> Iterator[tuple[list[tuple[str, np.ndarray]], int]]:
        """(tensors, index of the first item) per request: runs of items of one form, cut at the model's batch."""
        step = self.max_batch(kind)
        runs: list[tuple[Any, int, list[Any]]] = []  # (signature, start, payloads)
        run_bytes = 0
        for i, item in enumerate(items):
            signature, payload = _payload(kind, item, i)
            size = _payload_bytes(payload)
            if (
                runs
                and runs[-1][0] == signature
                and len(runs[-1][2]) < step
                and run_bytes + size <= self.max_request_bytes
            ):
                runs[-1][2].append(payload)
                run_bytes += size
            else:
                runs.append((signature, i, [payload]))
                run_bytes = size
        for signature, start, payloads in runs:
            yield _tensors(kind, signature, payloads), start

    # -- preprocessed inputs -------------------------------------------------------------------
    def encode(self, kind: str, batch: Any) -> np.ndarray:
        """Embed a preprocessed batch in ``kind``'s reference layout via ``<kind>_encoder``; (B, out_dim) unit rows."""
        if kind not in INPUT_LAYOUTS:
            raise UnknownModalityError(
                f"no encoder model for input kind {kind!r} on a Triton server; expected one of {', '.join(INPUT_LAYOUTS)}"
            )
        layout = INPUT_LAYOUTS[kind]
        array = batch if isinstance(batch, np.ndarray) else _asarray(batch, kind)
        if layout.dtype == "int64" and np.issubdtype(array.dtype, np.integer):
            array = array.astype(np.int64, copy=False)
        elif layout.dtype == "float32" and np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float32, copy=False)
        if kind == "audio" and array.ndim == 4:  # one clip per item, as Embedder.encode accepts
            array = array[:, None]
        if array.ndim == 0 or array.shape[0] == 0:
            raise InputError(f"empty batch {tuple(array.shape)}; expected at least one item", modality=kind)
        if array.dtype.name not in protocol.NUMPY_TO_TRITON:
            raise InputError(f"dtype {array.dtype} cannot be sent; expected {layout.dtype}", modality=kind)
        model = kind + protocol.ENCODER_SUFFIX
        step = self.max_batch(model)
        parts = [
            self._infer(kind, [(kind, np.ascontiguousarray(array[i : i + step]))], i, model=model)
            for i in range(0, array.shape[0], step)
        ]
        return np.concatenate(parts, axis=0)

    # -- the wire ------------------------------------------------------------------------------
    def _infer(self, kind: str, tensors: list[tuple[str, np.ndarray]], offset: int, model: str | None = None):
        model = model or kind
        tc = self._tc
        inputs = []
        for name, array in tensors:
            dtype = "BYTES" if array.dtype.hasobject else protocol.NUMPY_TO_TRITON[array.dtype.name]
            tensor = tc.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        try:
            if self.protocol == "http":
                result = self._client.infer(model, inputs)
            else:
                result = self._client.infer(model, inputs, client_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, model, kind, offset) from None
        out = result.as_numpy(protocol.OUTPUT_NAME)
        if out is None:
            raise BackendError(f"the server at {self.url} answered model {model!r} without an {protocol.OUTPUT_NAME!r}")
        return np.asarray(out, dtype=np.float32)

    def _error(self, exc: Exception, model: str, kind: str | None, offset: int) -> BindrtError:
        """The bindrt error for a failed call: the server's bindrt error, Triton's checks, or the connection."""
        message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
        message = str(message or exc or type(exc).__name__)
        status = str(exc.status()) if hasattr(exc, "status") and callable(exc.status) else ""
        if isinstance(exc, BindrtError):
            return exc
        if (
            isinstance(exc, OSError)
            or "UNAVAILABLE" in status
            or "DEADLINE_EXCEEDED" in status
            or re.search(
                r"failed to connect|connection refused|connect call failed|timed out|Socket closed", message, re.I
            )
        ):
            return BackendError(f"cannot reach the Triton server at {self.url}: {_one_line(message)}")
        error = protocol.error_from_message(message, default=_NotBindrt)
        if not isinstance(error, _NotBindrt):
            return _shifted(error, offset)
        if _UNKNOWN_MODEL.search(message):
            return UnknownModalityError(
                f"the server at {self.url} has no model {model!r} ({_one_line(message)}); "
                "it serves the modalities it was started with (bindrt serve --modalities)"
            )
        if _TRITON_INPUT_ERRORS.search(message):
            return InputError(f"the server rejected the request to {model!r}: {_one_line(message)}", modality=kind)
        return BackendError(f"the server at {self.url} failed on model {model!r}: {_one_line(message)}")

    def search(self, vector: Any = None, *, k: int = 10, **query: Any) -> list[dict[str, Any]]:
        """Nearest items of the server's index (``bindrt serve --index``): to ``vector``, or to one query
        embedded by the server first (``text="a dog"``, ``vision=path``...). Hits: score, row, path, line, kind, text."""
        import json

        if vector is None:
            if len(query) != 1:
                raise InputError("search takes a vector, or exactly one query such as text='a dog'")
            ((kind, value),) = query.items()
            vector = self.embed(**{kind: [value]})[kind][0]
        q = np.asarray(vector, np.float32).reshape(1, -1)
        tc = self._tc
        inputs = [tc.InferInput("embedding", list(q.shape), "FP32"), tc.InferInput("k", [1, 1], "INT32")]
        inputs[0].set_data_from_numpy(q)
        inputs[1].set_data_from_numpy(np.array([[k]], np.int32))
        try:
            result = self._client.infer("search", inputs)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc, "search", None, 0) from None
        scores, rows, items = (result.as_numpy(n)[0] for n in ("scores", "rows", "items"))
        return [
            {"score": float(s), "row": int(r), **json.loads(bytes(i).decode())}
            for s, r, i in zip(scores, rows, items)
            if r >= 0
        ]

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            self._client = None
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"


# ----------------------------------------------------------------------------- helpers
def _parse_url(url: str, protocol_name: str | None) -> tuple[str, str]:
    if not isinstance(url, str) or not url.strip():
        raise InputError(f"url {url!r} is not a server address; expected e.g. http://127.0.0.1:8000")
    text = url.strip()
    parts = urlsplit(text if "://" in text else "//" + text)
    scheme = parts.scheme.lower()
    if scheme and scheme not in ("http", "grpc"):
        raise InputError(f"url {url!r}: unsupported scheme {scheme!r}; expected http:// or grpc://")
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"url {url!r} has an invalid port") from None
    if not parts.hostname:
        raise InputError(f"url {url!r} names no host; expected e.g. http://127.0.0.1:8000")
    chosen = protocol_name or scheme or ("grpc" if port == protocol.DEFAULT_GRPC_PORT else "http")
    if chosen not in ("http", "grpc"):
        raise InputError(f"protocol={protocol_name!r}; expected 'http' or 'grpc'")
    if port is None:
        port = protocol.DEFAULT_HTTP_PORT if chosen == "http" else protocol.DEFAULT_GRPC_PORT
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return chosen, f"{host}:{port}"


def _one_line(text: str, limit: int = 400) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _shifted(error: BindrtError, offset: int) -> BindrtError:
    """An InputError from the server with its ``[kind item N]`` prefix parsed and N counted from ``offset``."""
    if not isinstance(error, InputError):
        return error
    match = _ITEM_PREFIX.match(str(error))
    if not match:
        return error
    modality, item, detail = match.group(1), match.group(2), match.group(3)
    return type(error)(detail, modality=modality, item=int(item) + offset if item is not None else None)


def _as_items(kind: str, items: Any) -> list[Any]:
    if isinstance(items, list):
        return items
    if isinstance(items, tuple):
        is_pair = (
            kind == "audio"
            and len(items) == 2
            and isinstance(items[0], np.ndarray)
            and not isinstance(items[1], np.ndarray)
        )
        return [items] if is_pair else list(items)
    return [items]


def _asarray(batch: Any, kind: str) -> np.ndarray:
    try:
        return np.asarray(batch)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"could not convert input to an array: {exc}", modality=kind) from None


def _read(item: Any, kind: str, index: int) -> bytes:
    """Bytes as they are; a path read here, on the client."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise InputError(
                f"cannot read {os.fspath(item)!r}: {exc.strerror or exc}", modality=kind, item=index
            ) from None
    raise InputError(
        f"unsupported item type {type(item).__name__} (expected bytes or a path, read on the client)",
        modality=kind,
        item=index,
    )


def _payload(kind: str, item: Any, index: int) -> tuple[Any, Any]:
    """(signature, payload) of one item: items of one signature can share a request."""
    if kind == "text":
        if isinstance(item, str):
            return "text", item.encode("utf-8", errors="surrogatepass")
        if isinstance(item, (bytes, bytearray)):
            return "text", bytes(item)  # sent as given; the server checks it is UTF-8
        raise InputError(f"unsupported item type {type(item).__name__} (expected str)", modality=kind, item=index)
    if kind == "imu":
        from bindrt.preprocess.imu import load_imu  # reads CSV/.npy paths here; checks and transposes arrays

        wave = load_imu(item, index=index)
        return ("imu", wave.shape), wave
    if kind == "audio" and isinstance(item, tuple):
        wave, rate = _waveform(item, index)
        return ("waveform", wave.shape), (wave, rate)
    if kind == "audio" and isinstance(item, np.ndarray):
        raise InputError(
            "got a bare array; its sample rate is unknown (expected a (waveform, sample_rate) pair)",
            modality=kind,
            item=index,
        )
    return kind, _read(item, kind, index)


def _waveform(item: tuple, index: int) -> tuple[np.ndarray, int]:
    if len(item) != 2 or not isinstance(item[0], np.ndarray):
        raise InputError(
            f"got a tuple of length {len(item)} (expected a (waveform, sample_rate) pair)", modality="audio", item=index
        )
    wave, rate = item
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or not 0 < rate < 2**31:
        raise InputError(f"sample_rate {rate!r} is not a positive int", modality="audio", item=index)
    if wave.ndim not in (1, 2):
        raise InputError(
            f"waveform has shape {wave.shape} (expected (samples,) or (channels, samples))",
            modality="audio",
            item=index,
        )
    if wave.dtype == np.int16:
        wave = wave.astype(np.float32) / np.float32(32768.0)
    elif wave.dtype.kind != "f":
        raise InputError(
            f"array has dtype {wave.dtype} (expected float in [-1, 1] or int16)", modality="audio", item=index
        )
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    return (wave.reshape(1, -1) if wave.ndim == 1 else wave), int(rate)


def _payload_bytes(payload: Any) -> int:
    if isinstance(payload, bytes):
        return len(payload)
    if isinstance(payload, tuple):  # (waveform, rate)
        return int(payload[0].nbytes) + 4
    return int(payload.nbytes)


def _tensors(kind: str, signature: Any, payloads: list[Any]) -> list[tuple[str, np.ndarray]]:
    if kind == "imu":
        return [("imu", np.stack(payloads))]
    if kind == "audio" and isinstance(signature, tuple) and signature[0] == "waveform":
        waves = np.stack([w for w, _ in payloads])
        rates = np.array([[r] for _, r in payloads], dtype=np.int32)
        return [("waveform", waves), ("sample_rate", rates)]
    array = np.empty((len(payloads), 1), dtype=object)
    for i, p in enumerate(payloads):
        array[i, 0] = p
    return [(kind, array)]


__all__ = ["Client", "DEFAULT_TIMEOUT_S"]
