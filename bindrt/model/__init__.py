"""PyTorch encoders that reproduce the ImageBind reference model."""

from bindrt.model.encoders import ModalityEncoder, init_weights
from bindrt.model.imagebind import ImageBind, build_encoder, load_encoder

__all__ = ["ModalityEncoder", "ImageBind", "build_encoder", "load_encoder", "init_weights"]
