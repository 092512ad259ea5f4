"""The fp32 emulation that validates bf16 graphs, against bf16 arithmetic done independently (ml_dtypes)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bindrt.export.fp16 import emulate_in_fp32, to_low

ort = pytest.importorskip("onnxruntime", reason="needs the onnx extras")
BF16 = ml_dtypes.bfloat16


def _bf16(a: np.ndarray) -> np.ndarray:
    return a.astype(BF16).astype(np.float32)


def _graph(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    """y = float32(gelu-free MLP step in bf16): Cast(x)->MatMul(W)->Add(b)->Mul(itself)->Reshape->Cast back."""
    nodes = [
        helper.make_node("Cast", ["x"], ["xb"], to=TensorProto.BFLOAT16),
        helper.make_node("MatMul", ["xb", "w"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["hb"]),
        helper.make_node("Mul", ["hb", "hb"], ["sq"]),
        helper.make_node("Reshape", ["sq", "shape"], ["flat"]),
        helper.make_node("Cast", ["flat"], ["y"], to=TensorProto.FLOAT),
    ]
    inits = [
        numpy_helper.from_array(w.astype(BF16), "w"),
        numpy_helper.from_array(b.astype(BF16), "b"),
        numpy_helper.from_array(np.array([-1], np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model, full_check=True)
    return model


def test_emulation_rounds_every_bf16_tensor_like_bf16_arithmetic():
    rng = np.random.default_rng()
    x = rng.standard_normal((4, 16)).astype(np.float32)
    w = rng.standard_normal((16, 16)).astype(np.float32)
    b = rng.standard_normal(16).astype(np.float32)
    emulated, counts = emulate_in_fp32(_graph(w, b))
    assert counts["initializers_widened"] == 2 and counts["casts_widened"] == 1
    assert counts["roundings"] == 3  # MatMul, Add, Mul; not the Reshape, which moves values
    assert all(t.data_type != TensorProto.BFLOAT16 for t in emulated.graph.initializer)
    got = ort.InferenceSession(emulated.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    wb, bb = _bf16(w), _bf16(b)
    h = _bf16(_bf16(x).astype(np.float64) @ wb.astype(np.float64))  # an fp32-accumulating kernel, rounded once
    hb = _bf16(h + bb)
    want = _bf16(hb * hb).reshape(-1)
    # accumulation order may move a value across a rounding boundary: at most one bf16 step (2**-7 relative)
    np.testing.assert_allclose(got, want, rtol=2.0**-7, atol=0)
    assert np.mean(got == want) > 0.9
    fp32 = ((x @ w + b) ** 2).reshape(-1)
    assert np.max(np.abs(got - fp32) / np.abs(fp32).max()) > 1e-4  # the rounding is really there


def test_to_low_saturates_mask_fills_instead_of_overflowing():
    fill = np.array([-3.4e38, 3.4e38, 1.0, np.inf], np.float32)
    out = to_low(fill, TensorProto.BFLOAT16).astype(np.float32)
    top = float(ml_dtypes.finfo(BF16).max)
    assert out.tolist() == [-top, top, 1.0, np.inf]
    assert to_low(fill, TensorProto.FLOAT16).tolist() == [-65504.0, 65504.0, 1.0, np.inf]
