"""Model input layouts per input kind: the contract between preprocessing, backends and exported graphs.

Shapes exclude the batch axis; ``clips`` marks the axis that multi-clip kinds
average over (the reference folds it into the batch and averages embeddings).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputLayout:
    kind: str
    encoder: str
    shape: tuple[int, ...]  # without batch; for multi-clip kinds, without clips
    dtype: str
    multi_clip: bool = False
    default_clips: int = 1

    @property
    def item_shape(self) -> tuple[int, ...]:
        """One preprocessed item (no batch axis), clips at their default count."""
        return ((self.default_clips,) if self.multi_clip else ()) + self.shape

    def symbolic_shape(self) -> list[int | str]:
        return ["batch", *(["clips"] if self.multi_clip else []), *self.shape]

    def describe(self) -> str:
        return "(" + ", ".join(str(d) for d in self.symbolic_shape()) + f") {self.dtype}"


INPUT_LAYOUTS: dict[str, InputLayout] = {
    "vision": InputLayout("vision", "vision", (3, 224, 224), "float32"),
    "video": InputLayout("video", "vision", (3, 2, 224, 224), "float32", multi_clip=True, default_clips=15),
    "text": InputLayout("text", "text", (77,), "int64"),
    "audio": InputLayout("audio", "audio", (1, 128, 204), "float32", multi_clip=True, default_clips=3),
    "depth": InputLayout("depth", "depth", (1, 224, 224), "float32"),
    "thermal": InputLayout("thermal", "thermal", (1, 224, 224), "float32"),
    "imu": InputLayout("imu", "imu", (6, 2000), "float32"),
}


def kinds_for(modality: str) -> list[str]:
    """Input kinds an encoder accepts (vision takes images and videos)."""
    return [k for k, layout in INPUT_LAYOUTS.items() if layout.encoder == modality]
