"""bindrt: ImageBind-style multimodal encoders, from training to verified inference artefacts.

``bindrt.load(bundle, backend=...)`` is the entry point; importing bindrt never
imports torch (the ONNX Runtime and TensorRT paths run without it).
"""

from bindrt.config import MODALITIES, PRESETS, ImageBindConfig
from bindrt.errors import *  # noqa: F401,F403  (the one error hierarchy)
from bindrt.runtime import load, similarity

__version__ = "0.1.0"


def __getattr__(name: str):
    """``bindrt.Index`` and ``bindrt.classify``, imported on first use (importing bindrt stays cheap)."""
    if name == "Index":
        from bindrt.index import Index

        return Index
    if name == "classify":
        from bindrt.classification import classify

        return classify
    raise AttributeError(f"module 'bindrt' has no attribute {name!r}")


__all__ = ["load", "similarity", "Index", "classify", "ImageBindConfig", "PRESETS", "MODALITIES", "__version__"]  # noqa: F405
