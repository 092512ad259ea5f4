"""The reference-exact PyTorch backend (and the base of the Triton-kernel backend)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bindrt.config import ImageBindConfig
from bindrt.errors import BackendError
from bindrt.layouts import INPUT_KINDS
from bindrt.loaders import EncodersFromSource
from bindrt.model.encoders import ModalityEncoder
from bindrt.runtime.base import Backend, ModelSource

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise BackendError(f"unsupported device {device!r}; expected 'cpu' or 'cuda[:N]'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} requested but torch sees no CUDA device; use device='cpu'")
    return dev


def load_encoders(source: ModelSource, modalities: tuple[str, ...], verify: bool = True) -> dict[str, ModalityEncoder]:
    """Eval-mode fp32 CPU encoders for ``modalities`` only; other towers are never read."""
    return EncodersFromSource(source, tuple(modalities), verify)()


class TorchBackend(Backend):
    name = "torch"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(
        self,
        encoders: dict[str, ModalityEncoder],
        config: ImageBindConfig,
        device: str = "cpu",
        precision: str = "fp32",
        compile: "bool | str" = False,
    ) -> None:
        """``precision`` is one of ``precisions``: ``bindrt.load`` checks it, once, for every backend.

        ``compile``: wrap each encoder in ``torch.compile`` (True: its default mode; a string:
        that mode, e.g. ``"max-autotune"``). Compilation happens on the first call of each
        input shape, so the first embed of a new batch size takes seconds.
        """
        super().__init__(config, tuple(encoders), device, precision)
        self.torch_device = resolve_device(device)
        self.dtype = DTYPES[precision]
        self.encoders = {m: e.to(self.torch_device, self.dtype).eval() for m, e in encoders.items()}
        self.compile_mode = None if compile is False else ("default" if compile is True else str(compile))
        if self.compile_mode is not None:
            self.encoders = {m: torch.compile(e, mode=self.compile_mode) for m, e in self.encoders.items()}

    @classmethod
    def open(
        cls,
        source: ModelSource,
        *,
        modalities: tuple[str, ...],
        device: str = "cpu",
        precision: str = "fp32",
        verify: bool = True,
        compile: "bool | str" = False,
        **options: Any,
    ) -> "TorchBackend":
        if options:
            raise BackendError(f"unknown option(s) for the {cls.name} backend: {sorted(options)}")
        if not isinstance(compile, (bool, str)) or compile in ("", "none"):
            raise BackendError(f"compile={compile!r}; expected True/False or a torch.compile mode name")
        resolve_device(device)
        return cls(load_encoders(source, modalities, verify), source.config, device, precision, compile=compile)

    def to_tensor(self, kind: str, batch: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(batch).to(self.torch_device, non_blocking=True)
        return tensor if kind == "text" else tensor.to(self.dtype)

    def encoder_for(self, kind: str) -> ModalityEncoder:
        return self.encoders[INPUT_KINDS[kind]]

    @torch.inference_mode()
    def run(self, kind: str, batch: np.ndarray) -> np.ndarray:
        out = self.encoder_for(kind)(self.to_tensor(kind, batch))
        return out.float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "compile": self.compile_mode,
        }

    def close(self) -> None:
        self.encoders.clear()
        if self.torch_device.type == "cuda":
            torch.cuda.empty_cache()
