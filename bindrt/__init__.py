"""bindrt: ImageBind-style multimodal encoders, from training to verified inference artefacts.

``bindrt.load(bundle, backend=...)`` is the entry point; importing bindrt never
imports torch (the ONNX Runtime and TensorRT paths run without it).
"""

from bindrt.config import MODALITIES, PRESETS, ImageBindConfig
from bindrt.errors import *  # noqa: F401,F403  (the one error hierarchy)
from bindrt.runtime import load, similarity

__version__ = "0.1.0"

__all__ = ["load", "similarity", "ImageBindConfig", "PRESETS", "MODALITIES", "__version__"]
