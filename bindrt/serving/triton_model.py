"""The ``model.py`` of every Python-backend model ``bindrt triton-repo`` writes (copied there verbatim).

Runs inside Triton's Python backend stub; needs ``bindrt`` (with ``onnxruntime`` for the encoder
roles) installed in the interpreter the stub runs, never torch. The model's ``config.pbtxt``
``parameters`` say what it does:

* ``bindrt_role``: ``raw`` (raw media in, preprocess + encode), ``encoder`` (the preprocessed tensor
  in), ``preprocess`` (raw media in, the preprocessed tensor out: the first step of an ensemble) or
  ``normalize`` (an embedding in, its L2-normalised rows out: the last step of a TensorRT ensemble);
* ``bindrt_kind``: the input kind (:data:`bindrt.layouts.INPUT_KINDS`);
* ``bindrt_bundle``: the bundle (a path relative to this version directory: the repository holds
  the copy it needs), ``bindrt_precision``, ``bindrt_batch_size``, ``bindrt_threads``;
* ``bindrt_max_request_bytes`` / ``bindrt_max_request_items``: the request caps.

Every request is answered on its own: a bad one gets ``TritonError("<bindrt error class>: ...")``
(:func:`bindrt.serving.protocol.error_message`) and its batch-mates are still embedded.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

ROLES = ("raw", "encoder", "preprocess", "normalize")
#: ModelConfig data types of what these models return (the preprocessed tensor: as the encoder declares it)
_NUMPY = {"TYPE_FP32": "float32", "TYPE_FP16": "float16", "TYPE_INT64": "int64", "TYPE_UINT8": "uint8"}


def _parameters(config: dict[str, Any]) -> dict[str, str]:
    return {k: v.get("string_value", "") for k, v in (config.get("parameters") or {}).items()}


class TritonPythonModel:
    """One bindrt model in Triton's Python backend (see the module docstring)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = _parameters(config)
        self.role, self.kind = params["bindrt_role"], params["bindrt_kind"]
        if self.role not in ROLES:
            raise ValueError(f"bindrt_role {self.role!r} is not one of {', '.join(ROLES)}")
        self.inputs = [(i["name"], bool(i.get("optional", False))) for i in config["input"]]
        self.output = config["output"][0]["name"]
        self.output_dtype = _NUMPY.get(config["output"][0].get("data_type", "TYPE_FP32"), "float32")
        from bindrt.serving import protocol

        self.protocol = protocol
        self.max_bytes = int(params.get("bindrt_max_request_bytes") or protocol.MAX_REQUEST_BYTES)
        self.max_items = int(params.get("bindrt_max_request_items") or protocol.MAX_REQUEST_ITEMS)
        self.embedder = None
        if self.role in ("raw", "encoder"):
            import bindrt
            from bindrt.layouts import INPUT_KINDS

            bundle = params["bindrt_bundle"]
            here = os.path.join(args["model_repository"], str(args["model_version"]))
            threads = int(params.get("bindrt_threads") or 0)
            self.embedder = bindrt.load(
                os.path.join(here, bundle),
                backend="onnxruntime",
                precision=params.get("bindrt_precision") or "fp32",
                modalities=[INPUT_KINDS[self.kind]],
                batch_size=int(params.get("bindrt_batch_size") or 32),
                **({"intra_op_num_threads": threads} if threads else {}),
            )

    # -- requests ------------------------------------------------------------------
    def execute(self, requests: list[Any]) -> list[Any]:
        responses: list[Any] = [None] * len(requests)
        ready: list[tuple[int, np.ndarray]] = []
        for i, request in enumerate(requests):
            try:
                tensors = self._tensors(request)
                ready.append((i, self._prepare(tensors)))
            except Exception as exc:  # one bad request never fails its batch-mates
                responses[i] = self._error(exc)
        if ready:
            self._finish(ready, responses)
        return responses

    def _finish(self, ready: list[tuple[int, np.ndarray]], responses: list[Any]) -> None:
        """Run the good requests together (one encoder call), one by one if the batch fails."""
        try:
            outs = self._run_together([a for _, a in ready])
        except Exception:
            outs = []
            for i, array in ready:
                try:
                    outs.append(self._run_together([array])[0])
                except Exception as exc:
                    outs.append(exc)
        for (i, _), out in zip(ready, outs):
            responses[i] = (
                self._error(out)
                if isinstance(out, Exception)
                else self.pb.InferenceResponse(
                    output_tensors=[self.pb.Tensor(self.output, np.ascontiguousarray(out, dtype=self.output_dtype))]
                )
            )

    def _run_together(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        if self.role == "preprocess":
            return arrays
        if self.role == "normalize":
            return [_unit(a) for a in arrays]
        sizes = [len(a) for a in arrays]
        same = all(a.shape[1:] == arrays[0].shape[1:] for a in arrays)
        if not same:  # e.g. different clip counts: one call each
            return [self.embedder.encode(self.kind, a, normalize=True) for a in arrays]
        out = self.embedder.encode(self.kind, np.concatenate(arrays, axis=0), normalize=True)
        return list(np.split(out, np.cumsum(sizes)[:-1], axis=0))

    def _tensors(self, request: Any) -> dict[str, np.ndarray]:
        from bindrt.errors import InputError, LimitError

        found: dict[str, np.ndarray] = {}
        total = 0
        for name, _optional in self.inputs:
            tensor = self.pb.get_input_tensor_by_name(request, name)
            if tensor is None:
                continue
            array = tensor.as_numpy()
            total += _nbytes(array)
            if total > self.max_bytes:
                raise LimitError(
                    f"request inputs exceed {self.max_bytes} bytes (bindrt_max_request_bytes); send fewer or "
                    "smaller items per request",
                    modality=self.kind,
                )
            if array.ndim == 0 or len(array) == 0:
                raise InputError(f"input {name!r} holds no items (shape {array.shape})", modality=self.kind)
            if len(array) > self.max_items:
                raise LimitError(
                    f"{len(array)} items in one request, more than {self.max_items} (bindrt_max_request_items)",
                    modality=self.kind,
                )
            found[name] = array
        return found

    def _prepare(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        """The request's array for ``_run_together``: preprocessed media, or the tensor as sent."""
        from bindrt.errors import InputError

        if self.role in ("encoder", "normalize"):
            (name, _), *_ = self.inputs
            if name not in tensors:
                raise InputError(f"input {name!r} is missing", modality=self.kind)
            if self.role == "encoder":
                self.embedder.check_batch(self.kind, tensors[name])
            return tensors[name]
        from bindrt.preprocess import preprocess

        return preprocess(self.kind, raw_items(self.kind, tensors))

    def _error(self, exc: BaseException) -> Any:
        return self.pb.InferenceResponse(output_tensors=[], error=self.pb.TritonError(self.protocol.error_message(exc)))

    def finalize(self) -> None:
        if self.embedder is not None:
            self.embedder.close()


def raw_items(kind: str, tensors: dict[str, np.ndarray]) -> list[Any]:
    """The items of one request's raw tensors, as :func:`bindrt.preprocess.preprocess` takes them."""
    from bindrt.errors import InputError

    if kind == "audio":
        if "audio" in tensors and ("waveform" in tensors or "sample_rate" in tensors):
            raise InputError(
                "send either 'audio' (encoded files) or 'waveform' + 'sample_rate', not both", modality=kind
            )
        if "audio" not in tensors:
            if "waveform" not in tensors or "sample_rate" not in tensors:
                raise InputError(
                    "expected 'audio' (encoded files as BYTES) or 'waveform' (float32) with 'sample_rate' (INT32)",
                    modality=kind,
                )
            waves, rates = tensors["waveform"], tensors["sample_rate"].reshape(len(tensors["sample_rate"]), -1)
            if len(rates) != len(waves) or rates.shape[1] != 1:
                raise InputError(
                    f"'sample_rate' has shape {tensors['sample_rate'].shape}; expected one rate per waveform "
                    f"({len(waves)}, 1)",
                    modality=kind,
                )
            return [(np.asarray(w, dtype=np.float32), int(r[0])) for w, r in zip(waves, rates)]
    if kind not in tensors:
        raise InputError(f"input {kind!r} is missing", modality=kind)
    array = tensors[kind]
    if kind == "imu":
        return [np.asarray(a, dtype=np.float32) for a in array]
    items = [_one_bytes(row, kind, i) for i, row in enumerate(array.reshape(len(array), -1))]
    if kind == "text":
        out = []
        for i, data in enumerate(items):
            try:
                out.append(data.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InputError(f"text is not valid UTF-8 ({exc.reason} at byte {exc.start})", modality=kind, item=i)
        return out
    return items


def _one_bytes(row: np.ndarray, kind: str, index: int) -> bytes:
    from bindrt.errors import InputError

    if row.size != 1:
        raise InputError(f"expected one BYTES element per item, got {row.size}", modality=kind, item=index)
    value = row[0]
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray, np.bytes_)):
        raise InputError(f"expected BYTES, got {type(value).__name__}", modality=kind, item=index)
    return bytes(value)


def _nbytes(array: np.ndarray) -> int:
    if array.dtype == object:
        return sum(len(v) if isinstance(v, (bytes, bytearray, str)) else 8 for v in array.reshape(-1))
    return int(array.nbytes)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), np.float32(1e-12))
