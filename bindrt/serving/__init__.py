"""Serving bindrt encoders on NVIDIA Triton Inference Server: the wire contract, PyTriton, model repositories."""
