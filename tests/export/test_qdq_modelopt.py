"""Model Optimizer's int8 and fp8 Q/DQ graphs (bindrt.export.qdq_modelopt) validated on ONNX Runtime CPU.

The golden depth and imu towers (a Conv stem and a Linear stem), quantized at int8 and fp8 and
compared with torch fp32 through the validation suites at batch 1 and 5 of one graph.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import ExportError

KINDS = ("depth", "imu")


def _modelopt_or_skip() -> None:
    try:  # absent, or installed without its ONNX dependencies (modelopt.onnx raises a plain ImportError then)
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"needs nvidia-modelopt and its ONNX dependencies (see bindrt.export.qdq_modelopt): {exc}")


@pytest.fixture(scope="module")
def fp32_graphs(golden_bundle, tmp_path_factory) -> tuple[Path, object]:
    """The golden depth and imu fp32 graphs, and the torch reference they are validated against."""
    _modelopt_or_skip()
    from bindrt.bundle import Bundle
    from bindrt.export import export_bundle
    from bindrt.export.validate import Reference
    from bindrt.loaders import EncodersFromSource
    from bindrt.runtime.base import ModelSource

    out = tmp_path_factory.mktemp("modelopt") / "bundle"
    shutil.copytree(golden_bundle, out)
    export_bundle(out, modalities=list(KINDS), precisions=("fp32",))
    bundle = Bundle.open(out)
    encoders = EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), KINDS)()
    return out, Reference(encoders)


@pytest.mark.parametrize("mode", ["int8", "fp8"])
@pytest.mark.parametrize("kind", KINDS)
def test_qdq_graph_meets_tolerance_at_batch_1_and_5(fp32_graphs, tmp_path, kind, mode):
    import onnx
    from onnxruntime.quantization import calibrate, registry

    from bindrt.export import qdq_modelopt as qm
    from bindrt.export.validate import calibration_inputs, validate_graph
    from bindrt.schema import Quantization

    bundle, reference = fp32_graphs
    ort_state = (dict(registry.QDQRegistry), dict(registry.QLinearOpsRegistry), calibrate.create_calibrator)
    calibration = [{kind: x} for x in calibration_inputs(kind)]
    quantized, summary = qm.quantize_modelopt(
        bundle / "onnx" / kind / f"{kind}.fp32.onnx", calibration, mode=mode, where=f"{kind}/{kind}.{mode}"
    )
    # Model Optimizer's patches to ONNX Runtime's quantization do not outlive the call
    assert (dict(registry.QDQRegistry), dict(registry.QLinearOpsRegistry), calibrate.create_calibrator) == ort_state

    # standard ONNX only: Q/DQ pairs in the default domain, at an opset ONNX Runtime runs float8 at
    onnx.checker.check_model(quantized)
    ops = {n.op_type for n in quantized.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert {n.domain for n in quantized.graph.node} <= {"", "ai.onnx"}
    assert next(o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx")) >= 19
    want = onnx.TensorProto.INT8 if mode == "int8" else onnx.TensorProto.FLOAT8E4M3FN
    inits = {i.name: i for i in quantized.graph.initializer}
    zero_points = [n.input[2] for n in quantized.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(inits[z].data_type == want for z in zero_points if z in inits)
    # the stems stay fp32; attention stays fp32 at int8, and the first block's out-projection and fc2
    assert {n.name for n in qm.quantized_nodes(quantized)}.isdisjoint(summary["kept_fp32"])
    plan = qm.RECIPES[mode][summary["recipe"]]
    source = onnx.load(bundle / "onnx" / kind / f"{kind}.fp32.onnx")
    assert {n.name for n in qm.grouped_matmuls(source, plan.fp32_groups)} <= set(summary["kept_fp32"])
    assert not any(n.op_type == "Conv" for n in qm.quantized_nodes(quantized))
    assert qm.quantized_nodes(quantized)

    Quantization.from_dict(summary, f"{kind}.{mode} quantization")  # a valid manifest record
    assert summary["tool"].startswith("nvidia-modelopt ") and summary["format"] == "QDQ"

    path = tmp_path / f"{kind}.{mode}.onnx"
    onnx.save(quantized, path)
    record = validate_graph(
        str(path),
        kind,
        "int8",  # the record's own tolerance; fp8's stricter bound is checked below
        reference,
        where=f"{kind}/{kind}.{mode}",
        session_factory=qm.session_factory(mode),
        runtime=qm.runtime(mode),
    )
    bound = qm.MIN_COSINE[mode]
    for suite, results in record["suites"].items():
        for bs in (1, 5):
            metrics = results[f"batch_{bs}"]
            assert metrics["min_cosine"] >= bound, f"{kind} {mode} {suite} batch {bs}: {metrics}"
            assert metrics["top1_agreement"] == 1.0, f"{kind} {mode} {suite} batch {bs}: {metrics}"
        assert results["batch_consistency_max_rel_diff"] < 1e-5  # static ranges: batch-mates change nothing
    assert record["passed"], record["failures"]


@pytest.mark.parametrize("kind", KINDS)
def test_matmul_groups_find_each_blocks_roles(fp32_graphs, kind):
    """Two golden blocks, the last one pooled (its q and kv projections are two MatMuls)."""
    import onnx

    from bindrt.export import qdq_modelopt as qm

    model = onnx.load(fp32_graphs[0] / "onnx" / kind / f"{kind}.fp32.onnx")
    groups = qm.matmul_groups(model)
    assert {g: len(n) for g, n in groups.items()} == {"qkv": 3, "attn_out": 2, "mlp_in": 2, "mlp_out": 2, "head": 1}
    first = qm.grouped_matmuls(model, qm.FIRST_BLOCK_OUT)
    assert [n.name for n in first] == [groups["attn_out"][0].name, groups["mlp_out"][0].name]
    assert [n.name for n in qm.grouped_matmuls(model, ["mlp_out[-1]", "mlp_out[5]"])] == [groups["mlp_out"][1].name]
    with pytest.raises(ValueError, match="MatMul group"):
        qm.grouped_matmuls(model, ["fc2"])


def test_missing_modelopt_is_an_export_error(monkeypatch):
    onnx = pytest.importorskip("onnx")
    from bindrt.export.qdq_modelopt import quantize_modelopt

    monkeypatch.setitem(sys.modules, "modelopt", None)  # import modelopt -> ImportError
    graph = onnx.helper.make_graph([], "g", [], [])
    with pytest.raises(ExportError, match="Model Optimizer"):
        quantize_modelopt(onnx.helper.make_model(graph), [{"x": np.zeros(1, np.float32)}], mode="fp8", where="x/x.fp8")


def test_unknown_mode_and_recipe():
    onnx = pytest.importorskip("onnx")
    from bindrt.export.qdq_modelopt import quantize_modelopt

    model = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    with pytest.raises(ValueError, match="mode"):
        quantize_modelopt(model, [], mode="int4", where="x")
    with pytest.raises(ValueError, match="recipe"):
        quantize_modelopt(model, [], mode="int8", where="x", recipe="entropy")


def test_export_modelopt_records_validated_qdq_graphs_for_tensorrt(small_bundle, capsys):
    """`bindrt export --modelopt --target tensorrt`: int8 and fp8 Q/DQ graphs recorded, validated, TensorRT-clean,
    and the ones `bindrt build` plans int8 / fp8 engines from."""
    _modelopt_or_skip()
    import json

    from bindrt.cli import main

    argv = ["export", str(small_bundle), "--modalities", "depth", "--precision", "fp32", "--modelopt"]
    assert main([*argv, "--target", "tensorrt"]) == 0
    graphs = json.loads((small_bundle / "manifest.json").read_text())["modalities"]["depth"]["artifacts"]["onnx"][
        "graphs"
    ]
    assert {"depth.int8.modelopt", "depth.fp8.modelopt"} <= set(graphs)
    for key, bound in (("depth.int8.modelopt", 0.98), ("depth.fp8.modelopt", 0.99)):
        rec = graphs[key]
        v = rec["validation"]
        assert v["passed"] and v["worst"]["min_cosine"] >= bound and v["runtime"]["onnxruntime"]
        assert v["tier"] in ("near-exact", "int8") and rec["opset"] >= 19
        assert rec["quantization"]["tool"].startswith("nvidia-modelopt") and rec["tensorrt"]["ok"] is True
    capsys.readouterr()
    for precision, flag in (("int8", "--int8"), ("fp8", "--fp8")):
        assert (
            main(
                ["build", str(small_bundle), "--precision", precision, "--print-trtexec", "--tensorrt-version", "10.8"]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert f"onnx/depth/depth.{precision}.modelopt.onnx" in out and flag in out
