"""TensorRT engines, decided and checked on any machine (no TensorRT, no GPU) before one is built.

* :mod:`bindrt.tensorrt.compat`: an ONNX graph against the ONNX-TensorRT parser's operator matrix;
* :mod:`bindrt.tensorrt.adapter`: what each TensorRT version needs (flags, strong typing, GPUs);
* :mod:`bindrt.tensorrt.plan`: profiles, builder options, trtexec lines, engine cache keys;
* :mod:`bindrt.tensorrt.build`: ``bindrt build``'s plans and the TensorRT builder calls.
"""
