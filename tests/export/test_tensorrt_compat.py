"""The TensorRT compatibility check (bindrt.tensorrt.compat): hand-built graphs, then every exported graph.

It runs without TensorRT: graphs meant for TensorRT (plain fp32/fp16 of every kind, the NNCF
Q/DQ int8 graphs) must pass; the ONNX Runtime-only graphs (fused com.microsoft variants, the
dynamic-quantization int8 graphs) must be reported by operator name.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bindrt.bundle import Bundle
from bindrt.config import MODALITIES
from bindrt.errors import ExportError
from bindrt.schema import RAW_KINDS, onnx_graphs
from bindrt.tensorrt import compat
from bindrt.tensorrt.compat import check_bundle_graphs, check_graph, raise_if_incompatible

#: float precisions of TensorRT-bound graphs
FLOAT_PRECISIONS = ("fp32", "fp16", "bf16")


def _model(nodes, inputs, outputs, *, opset=18, initializers=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(graph, opset_imports=imports)


def _x(name="x", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, [2, 4])


def _y(name="y", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, None)


# ----------------------------------------------------------------------------- the matrix
def test_matrix_loads_and_states_the_opset_range():
    matrix = compat.load_support_matrix()
    assert compat.matrix_opset_range() == compat.OPSET_RANGE == (9, 20)
    assert "TensorRT 10.0" in compat.matrix_header()
    assert matrix["MatMul"].supported and matrix["MatMul"].types == {"FP32", "FP16", "BF16"}
    assert not matrix["DynamicQuantizeLinear"].supported and not matrix["MatMulInteger"].supported
    # the upstream doc's "INF64" typo is read as INT64; "Selu ... BF16," has a trailing comma
    assert "INT64" in matrix["ConstantOfShape"].types
    assert matrix["Selu"].types == {"FP32", "FP16", "BF16"}
    assert matrix["LayerNormalization"].restrictions and not matrix["Add"].restrictions


def test_import_is_onnx_and_torch_free():
    import subprocess
    import sys

    code = "import sys, bindrt.tensorrt.compat; print(sorted({'onnx', 'torch', 'tensorrt'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- hand-built graphs
def test_clean_graph_passes():
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Relu", ["h"], ["y"], name="relu"),
    ]
    report = check_graph(_model(nodes, [_x()], [_y()], initializers=[w]))
    assert report.ok, report.summary()
    assert report.problems == [] and report.opset == 18
    assert report.op_counts == {"MatMul": 1, "Relu": 1}
    raise_if_incompatible(report, "clean")  # no error
    assert report.to_dict()["ok"] is True


def test_unsupported_operator_is_reported_by_name():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("DynamicQuantizeLinear", ["r"], ["q", "s", "z"], name="dql_0"),
        helper.make_node("Cast", ["q"], ["y"], to=TensorProto.FLOAT, name="cast"),
    ]
    report = check_graph(_model(nodes, [_x()], [_y()]))
    assert not report.ok
    [p] = report.problems
    assert (p.op_type, p.node_name, p.kind) == ("DynamicQuantizeLinear", "dql_0", "operator")
    assert "DynamicQuantizeLinear (node 'dql_0')" in report.summary()
    with pytest.raises(ExportError, match=r"unsupported operators: DynamicQuantizeLinear x1"):
        raise_if_incompatible(report, "test/graph")


def test_operator_missing_from_the_matrix_is_reported():
    nodes = [helper.make_node("NoSuchOp", ["x"], ["y"], name="mystery")]
    [p] = check_graph(_model(nodes, [_x()], [_y()])).problems
    assert (p.op_type, p.node_name, p.kind) == ("NoSuchOp", "mystery", "operator")
    assert "not in the ONNX-TensorRT operator matrix" in p.detail


def test_ort_contrib_op_is_a_domain_problem():
    nodes = [helper.make_node("FastGelu", ["x"], ["y"], name="fg", domain="com.microsoft")]
    report = check_graph(_model(nodes, [_x()], [_y()], extra_opsets=[("com.microsoft", 1)]))
    [p] = report.problems
    assert (p.op_type, p.node_name, p.kind) == ("FastGelu", "fg", "domain")
    assert "ORT-only" in p.detail and "--fused" in p.detail
    with pytest.raises(ExportError, match=r"com\.microsoft ops .*FastGelu x1"):
        raise_if_incompatible(report, "fused")


def test_unlisted_type_is_reported():
    """FP64 is listed for no operator; shape inference carries the type from the Cast to the Sqrt."""
    nodes = [
        helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE, name="to_double"),
        helper.make_node("Sqrt", ["xd"], ["y"], name="sqrt_0"),
    ]
    report = check_graph(_model(nodes, [_x()], [_y(dtype=TensorProto.DOUBLE)]))
    [p] = report.problems
    assert (p.op_type, p.node_name, p.kind) == ("Sqrt", "sqrt_0", "type")
    assert "FP64" in p.detail and "FP32, FP16, BF16" in p.detail
    with pytest.raises(ExportError, match=r"FP64 inputs .*Sqrt x1"):
        raise_if_incompatible(report, "double")


def test_auxiliary_inputs_are_not_type_checked():
    """A CumSum's INT64 axis and a DequantizeLinear's FP32 scale are not the types the matrix lists."""
    inits = [
        numpy_helper.from_array(np.array(1, np.int64), "axis"),
        numpy_helper.from_array(np.ones((4, 4), np.int8), "wq"),
        numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("CumSum", ["x", "axis"], ["c"], name="cumsum"),
        helper.make_node("DequantizeLinear", ["wq", "scale", "zp"], ["w"], name="dq"),
        helper.make_node("QuantizeLinear", ["c", "scale", "zp"], ["cq"], name="q"),
        helper.make_node("DequantizeLinear", ["cq", "scale", "zp"], ["cd"], name="dq_act"),
        helper.make_node("MatMul", ["cd", "w"], ["y"], name="mm"),
    ]
    report = check_graph(_model(nodes, [_x()], [_y()], initializers=inits))
    assert report.ok, report.summary()
    # restrictions are warnings that name the operator, never failures
    assert any(w.startswith("DequantizeLinear (2 nodes)") and compat.RESTRICTIONS_NOTE in w for w in report.warnings)
    assert any(w.startswith("CumSum (1 node)") for w in report.warnings)


def test_opset_out_of_range_is_reported():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    report = check_graph(_model(nodes, [_x()], [_y()], opset=21))
    assert not report.ok and report.opset == 21
    [p] = report.problems
    assert p.kind == "opset" and "21" in p.detail and "9-20" in p.detail
    assert "opset" in report.summary()
    assert check_graph(_model(nodes, [_x()], [_y()], opset=21), opset_range=(9, 21)).ok


def test_subgraph_nodes_are_checked():
    then = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "a"], ["t"], name="inner_mmi")],
        "then",
        [],
        [_y("t", TensorProto.INT32)],
    )
    other = helper.make_graph([helper.make_node("Identity", ["a"], ["e"], name="id")], "else", [], [_y("e")])
    nodes = [
        helper.make_node("Cast", ["c"], ["a"], to=TensorProto.INT8, name="cast"),
        helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other, name="if"),
    ]
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    report = check_graph(_model(nodes, [cond, _x("c")], [_y()]))
    assert any(p.op_type == "MatMulInteger" and p.node_name == "inner_mmi" for p in report.problems)


def test_shape_inference_failure_is_a_warning(monkeypatch):
    def boom(model, *args, **kwargs):
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] boom")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", boom)
    nodes = [helper.make_node("Relu", ["x"], ["h"], name="relu"), helper.make_node("Relu", ["h"], ["y"], name="r2")]
    report = check_graph(_model(nodes, [_x()], [_y()]))
    assert report.ok
    assert any("shape inference failed" in w and "boom" in w for w in report.warnings)
    assert any("no known element type" in w for w in report.warnings)  # "h" was never typed


def test_a_path_is_read_without_external_data(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [_x()], [_y()], initializers=[w])
    path = tmp_path / "m.onnx"
    onnx.save(model, path, save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    (tmp_path / "m.onnx.data").unlink()  # types need no weights
    assert check_graph(path).ok


# ----------------------------------------------------------------------------- exported graphs
@pytest.fixture(scope="module")
def exported(onnx_bundle):
    """(record, report) per ``<modality>/<key>`` of the golden bundle exported with every variant."""
    bundle = Bundle.open(onnx_bundle)
    reports = check_bundle_graphs(onnx_bundle)
    records = {
        f"{m}/{key}": rec
        for m in bundle.modalities
        for key, rec in onnx_graphs(bundle.modality(m), str(bundle.path / "manifest.json"), m).items()
    }
    assert set(reports) == set(records)
    return {key: (records[key], reports[key]) for key in records}


def _failures(items):
    return "\n".join(f"{key}:\n{report.summary()}" for key, (_, report) in items if not report.ok)


def test_plain_float_graphs_pass(exported):
    """Every TensorRT-bound float graph: all six modalities, video and the raw-input graphs, fp32, fp16, bf16."""
    items = [(k, v) for k, v in exported.items() if v[0].variant == "plain" and v[0].precision in FLOAT_PRECISIONS]
    assert not _failures(items), _failures(items)
    kinds = {rec.kind for _, (rec, _) in items}
    assert {"video", *(k for ks in RAW_KINDS.values() for k in ks)} <= kinds
    assert {rec.modality for _, (rec, _) in items} == set(MODALITIES)
    assert {rec.precision for _, (rec, _) in items} == set(FLOAT_PRECISIONS)
    bf16 = {rec.kind for _, (rec, _) in items if rec.precision == "bf16"}
    assert {"video", *(k for ks in RAW_KINDS.values() for k in ks)} <= bf16
    for _, (_, report) in items:
        assert report.opset is not None and compat.OPSET_RANGE[0] <= report.opset <= compat.OPSET_RANGE[1]


def test_nncf_qdq_graphs_pass(exported):
    """The NNCF int8 graphs are Q/DQ (QuantizeLinear/DequantizeLinear around float ops): TensorRT's int8 form."""
    items = [(k, v) for k, v in exported.items() if v[0].variant == "nncf"]
    if not items:
        pytest.skip("no NNCF graphs (the openvino extra is not installed)")
    assert not _failures(items), _failures(items)
    assert all(r.op_counts.get("DequantizeLinear") for _, (_, r) in items)


def test_modelopt_qdq_graphs_pass(exported):
    """Model Optimizer's int8 and fp8 Q/DQ graphs (opset 19, float8 at fp8): TensorRT's explicit quantization."""
    items = [(k, v) for k, v in exported.items() if v[0].variant == "modelopt"]
    if not items:
        pytest.skip("no Model Optimizer graphs (the modelopt extra is not installed)")
    assert not _failures(items), _failures(items)
    assert {rec.precision for _, (rec, _) in items} == {"int8", "fp8"}
    assert {rec.modality for _, (rec, _) in items} == set(MODALITIES)
    assert all(r.op_counts.get("DequantizeLinear") for _, (_, r) in items)


def test_fused_graphs_are_reported_ort_only(exported):
    items = [(k, v) for k, v in exported.items() if v[0].variant == "fused"]
    assert items
    for key, (_, report) in items:
        domain = [p for p in report.problems if p.kind == "domain"]
        assert domain and all("com.microsoft" in p.detail for p in domain), f"{key}: {report.summary()}"
        with pytest.raises(ExportError, match=r"com\.microsoft ops \(ORT-only"):
            raise_if_incompatible(report, key)


def test_ort_dynamic_int8_graphs_are_reported(exported):
    """The plain int8 graphs are ONNX Runtime dynamic quantization (QOperator form): DynamicQuantizeLinear and
    MatMulInteger, which the ONNX-TensorRT matrix marks unsupported (N). TensorRT's int8 is the Q/DQ form
    (the nncf variant), so these graphs are ORT-only and the check names both operators."""
    items = [(k, v) for k, v in exported.items() if v[0].variant == "plain" and v[0].precision == "int8"]
    assert items
    for key, (_, report) in items:
        unsupported = {p.op_type for p in report.problems if p.kind == "operator"}
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= unsupported, f"{key}: {report.summary()}"
        with pytest.raises(ExportError, match=r"unsupported operators: DynamicQuantizeLinear x\d+, MatMulInteger x\d+"):
            raise_if_incompatible(report, key)


def test_variants_filter(onnx_bundle):
    reports = check_bundle_graphs(onnx_bundle, ["depth"], variants=("plain",))
    assert reports and all(k.startswith("depth/") and k.count(".") == 1 for k in reports)


def test_export_target_tensorrt_records_the_check(small_bundle):
    """`bindrt export --target tensorrt`: each graph's record carries the operator check; ORT-only graphs say so."""
    from bindrt.cli import main

    argv = ["export", str(small_bundle), "--modalities", "depth", "--precision", "fp32,int8", "--target", "tensorrt"]
    assert main(argv) == 0
    graphs = json.loads((small_bundle / "manifest.json").read_text())["modalities"]["depth"]["artifacts"]["onnx"][
        "graphs"
    ]
    fp32, int8 = graphs["depth.fp32"]["tensorrt"], graphs["depth.int8"]["tensorrt"]
    assert fp32["ok"] is True and fp32["meant_for_tensorrt"] is True and fp32["opset"] == 18
    assert int8["ok"] is False and int8["meant_for_tensorrt"] is False
    assert {p["op_type"] for p in int8["problems"]} >= {"DynamicQuantizeLinear", "MatMulInteger"}
