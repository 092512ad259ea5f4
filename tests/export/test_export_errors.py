"""Bad inputs to export / validate / the ONNX Runtime backend give clear typed errors and leave bundles intact."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from export_test_helpers import min_cosine

import bindrt
from bindrt.bundle import Bundle
from bindrt.errors import BackendError, BundleError, ConfigError, ExportError, OutputError, UnknownModalityError
from bindrt.export import export_bundle, validate_bundle
from bindrt.export.spec import graph_records


def test_exporting_a_modality_the_bundle_lacks(small_bundle):
    with pytest.raises(UnknownModalityError, match="audio"):
        export_bundle(small_bundle, modalities=["audio"])


@pytest.mark.parametrize("opset", [16, 99, 0])
def test_unsupported_opset(small_bundle, opset):
    with pytest.raises(ExportError, match=f"unsupported opset {opset}.*17"):
        export_bundle(small_bundle, modalities=["imu"], opset=opset)


def test_unsupported_precision(small_bundle):
    with pytest.raises(
        ConfigError, match=r"unsupported precision\(s\) \['fp4'\]; expected some of fp32, fp16, bf16, int8"
    ):
        export_bundle(small_bundle, modalities=["imu"], precisions="fp32,fp4")
    with pytest.raises(ConfigError, match=r"fp8 Q/DQ graphs: --modelopt"):
        export_bundle(small_bundle, modalities=["imu"], precisions="fp8")


def test_unwritable_output_directory(small_bundle, monkeypatch):
    (small_bundle / "onnx").write_text("not a directory")
    with pytest.raises(OutputError, match="not a directory"):
        export_bundle(small_bundle, modalities=["imu"])
    (small_bundle / "onnx").unlink()
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if str(p) == str(small_bundle) else real_access(p, mode, **kw)
    )
    with pytest.raises(OutputError, match="not writable"):
        export_bundle(small_bundle, modalities=["imu"])


def test_failed_validation_leaves_no_graph_and_manifest_unchanged(small_bundle, monkeypatch):
    from bindrt.export import validate as v

    before = (small_bundle / "manifest.json").read_bytes()
    monkeypatch.setitem(v.TOLERANCES, "int8", ("min_cosine", 1.0000001, "min"))  # unreachable
    with pytest.raises(ExportError, match=r"imu/imu\.int8.*min_cosine"):
        export_bundle(small_bundle, modalities=["imu"], precisions="fp32,int8")
    assert (small_bundle / "manifest.json").read_bytes() == before
    assert not (small_bundle / "onnx").exists() or not any((small_bundle / "onnx").rglob("*.onnx"))
    assert not [p for p in small_bundle.iterdir() if p.name.startswith(".onnx-staging")]


def test_backend_without_exported_graphs_says_how_to_export(small_bundle):
    with pytest.raises(BackendError, match="bindrt export"):
        bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"])


def test_altered_graph_fails_checksum_and_precision_missing(small_bundle, golden):
    export_bundle(small_bundle, modalities=["depth"], precisions="fp32")
    with pytest.raises(BackendError, match=r"depth\.fp16.*--precision fp16"):
        bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"], precision="fp16")
    model = bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"])
    assert model.encode("depth", golden["in_depth"]).shape == (3, 32)
    path = small_bundle / "onnx" / "depth" / "depth.fp32.onnx"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupted or was modified"):
        bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"])
    with pytest.raises(BundleError, match="corrupted or was modified"):
        validate_bundle(small_bundle)


def test_external_data_with_forced_small_threshold(small_bundle, golden):
    records = export_bundle(small_bundle, modalities=["imu"], precisions="fp32,fp16", external_data_threshold=1024)
    rec = records["imu/imu.fp32"]
    assert rec["external_data"] == ["onnx/imu/imu.fp32.onnx.data"]
    bundle = Bundle.open(small_bundle)
    assert rec["external_data"][0] in bundle.manifest["files"]
    onnx_bytes = (small_bundle / rec["file"]).stat().st_size
    data_bytes = (small_bundle / rec["external_data"][0]).stat().st_size
    assert data_bytes > 3 * onnx_bytes  # the tensors really live in the .data file
    import onnx

    proto = onnx.load(str(small_bundle / rec["file"]), load_external_data=False)
    big = [t for t in proto.graph.initializer if np.prod(t.dims) * 4 >= 1024]
    assert big and all(t.data_location == onnx.TensorProto.EXTERNAL for t in big)
    model = bindrt.load(small_bundle, backend="onnxruntime", modalities=["imu"])
    out = model.encode("imu", golden["in_imu"])
    assert np.abs(out - golden["emb_imu"]).max() <= 1e-5 * np.linalg.norm(golden["emb_imu"], axis=-1).min()
    half = bindrt.load(small_bundle, backend="onnxruntime", modalities=["imu"], precision="fp16")
    assert min_cosine(half.encode("imu", golden["in_imu"]), golden["emb_imu"]) >= 0.999
    validate_bundle(small_bundle)
    data = small_bundle / rec["external_data"][0]
    blob = bytearray(data.read_bytes())
    blob[100] ^= 0x01
    data.write_bytes(bytes(blob))
    with pytest.raises(BundleError, match=r"imu\.fp32\.onnx\.data is corrupted"):
        bindrt.load(small_bundle, backend="onnxruntime", modalities=["imu"])


def test_reexport_replaces_records_and_keeps_others(small_bundle):
    export_bundle(small_bundle, modalities=["imu"], precisions="fp32", external_data_threshold=1024)
    export_bundle(small_bundle, modalities=["imu"], precisions="fp32,int8")
    bundle = Bundle.open(small_bundle)
    recs = graph_records(bundle.modality("imu"))
    assert set(recs) == {"imu.fp32", "imu.int8"}
    assert recs["imu.fp32"]["external_data"] == []
    assert "onnx/imu/imu.fp32.onnx.data" not in bundle.manifest["files"]
    assert not (small_bundle / "onnx/imu/imu.fp32.onnx.data").exists()
    json.loads((small_bundle / "manifest.json").read_text())


def test_opset_17_graphs(small_bundle, golden):
    """The dynamo exporter emits opset 18; opset 17 (TensorRT 8.6-era runtimes) is a structural downgrade."""
    records = export_bundle(small_bundle, modalities=["imu"], precisions="fp32,int8", fused=True, opset=17)
    assert {r["opset"] for r in records.values()} == {17}
    model = bindrt.load(small_bundle, backend="onnxruntime", modalities=["imu"], variant="fused")
    out = model.encode("imu", golden["in_imu"])
    assert np.abs(out - golden["emb_imu"]).max() <= 1e-5 * np.linalg.norm(golden["emb_imu"], axis=-1).min()


def test_cli_export_and_error_exit_codes(small_bundle, capsys):
    from bindrt.cli import main

    assert main(["export", str(small_bundle), "--modalities", "imu", "--precision", "fp32", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert list(records) == ["imu/imu.fp32"] and records["imu/imu.fp32"]["validation"]["passed"]
    assert main(["export", str(small_bundle), "--modalities", "audio"]) == 2
    assert "audio" in capsys.readouterr().err
    assert main(["export", str(small_bundle), "--opset", "16"]) == 2
    assert "unsupported opset 16" in capsys.readouterr().err


def _relist(bundle_path, rel: str) -> None:
    """Re-record a file's checksum, as if the swap came with a consistent manifest."""
    from bindrt.fileio import sha256_file

    bundle = Bundle.open(bundle_path)
    full = bundle_path / rel
    bundle.manifest["files"][rel] = {"sha256": sha256_file(full), "bytes": full.stat().st_size}
    bundle.save()


def test_graph_swapped_for_another_modality_is_rejected_at_load(small_bundle):
    import shutil

    export_bundle(small_bundle, modalities=["depth", "imu"], precisions="fp32")
    shutil.copy(small_bundle / "onnx/imu/imu.fp32.onnx", small_bundle / "onnx/depth/depth.fp32.onnx")
    _relist(small_bundle, "onnx/depth/depth.fp32.onnx")
    with pytest.raises(
        BundleError,
        match=r"onnx/depth/depth\.fp32\.onnx \(depth graph\) declares input\(s\) 'imu' \(batch, 6, 2000\) "
        r"float32, expected 'depth' \(batch, 1, 224, 224\) float32; to re-export it, run `bindrt export",
    ):
        bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"])
    bindrt.load(small_bundle, backend="onnxruntime", modalities=["imu"])  # the intact graph still loads


_ONNX_TYPES = {"float": 1, "int64": 7, "float16": 10}  # onnx.TensorProto element types


def _arg(name: str, dtype: str, shape: list) -> tuple[str, str, list]:
    return name, dtype, shape


def _session(inputs: list, outputs: list):
    """A real ONNX Runtime session over a tiny graph declaring exactly these inputs and outputs.

    Each output is a constant of its declared type expanded to the first input's batch size,
    so ONNX Runtime's shape inference keeps the declared symbolic batch axis.
    """
    import onnxruntime as ort
    from onnx import helper

    first = inputs[0][0] if inputs else None
    nodes = [helper.make_node("Shape", [first], ["batch_dim"], start=0, end=1)] if first else []
    for name, dtype, shape in outputs:
        dims = [d if isinstance(d, int) else 1 for d in shape]
        value = helper.make_tensor(f"{name}_value", _ONNX_TYPES[dtype], dims, [0.5] * int(np.prod(dims)))
        nodes.append(helper.make_node("Constant", [], [name if not first else f"{name}_one"], value=value))
        if first:
            rest = helper.make_tensor(f"{name}_rest_value", _ONNX_TYPES["int64"], [len(dims) - 1], dims[1:])
            nodes += [
                helper.make_node("Constant", [], [f"{name}_rest"], value=rest),
                helper.make_node("Concat", ["batch_dim", f"{name}_rest"], [f"{name}_shape"], axis=0),
                helper.make_node("Expand", [f"{name}_one", f"{name}_shape"], [name]),
            ]
    graph = helper.make_graph(
        nodes,
        "contract",
        [helper.make_tensor_value_info(n, _ONNX_TYPES[t], s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, _ONNX_TYPES[t], s) for n, t, s in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


DEPTH_IN = _arg("depth", "float", ["batch", 1, 224, 224])
EMB_OUT = _arg("embedding", "float", ["batch", 32])


@pytest.mark.parametrize(
    "inputs, outputs, message",
    [
        (
            [_arg("depth", "int64", ["batch", 1, 224, 224])],
            [EMB_OUT],
            r"input\(s\) 'depth' \(batch, 1, 224, 224\) int64, expected",
        ),
        (
            [_arg("depth", "float", ["batch", 1, 224, 225])],
            [EMB_OUT],
            r"input\(s\) 'depth' \(batch, 1, 224, 225\) float32, expected 'depth' \(batch, 1, 224, 224\)",
        ),
        (
            [_arg("depth", "float", [1, 1, 224, 224])],
            [EMB_OUT],
            r"input\(s\) 'depth' \(1, 1, 224, 224\) float32, expected 'depth' \(batch,",
        ),
        (
            [_arg("depth", "float", ["batch", 224, 224])],
            [EMB_OUT],
            r"input\(s\) 'depth' \(batch, 224, 224\) float32, expected",
        ),
        ([DEPTH_IN, _arg("extra", "float", [1])], [EMB_OUT], r"input\(s\) 'depth' .*, 'extra' \(1\) float32, expected"),
        ([], [EMB_OUT], r"input\(s\) none, expected"),
        (
            [DEPTH_IN],
            [_arg("embedding", "float", ["batch", 64])],
            r"output\(s\) 'embedding' \(batch, 64\) float32, expected 'embedding' \(batch, 32\) float32",
        ),
        (
            [DEPTH_IN],
            [_arg("embedding", "float16", ["batch", 32])],
            r"output\(s\) 'embedding' \(batch, 32\) float16, expected",
        ),
        (
            [DEPTH_IN],
            [_arg("logits", "float", ["batch", 32])],
            r"output\(s\) 'logits' \(batch, 32\) float32, expected 'embedding'",
        ),
    ],
)
def test_graph_io_contract(inputs, outputs, message):
    from bindrt.runtime.onnxruntime_backend import check_graph_io

    with pytest.raises(BundleError, match=r"^B: onnx/depth/x\.onnx \(depth graph\) declares " + message):
        check_graph_io(_session(inputs, outputs), "depth", 32, where="B: onnx/depth/x.onnx", hint="run this")
    check_graph_io(
        _session([DEPTH_IN], [EMB_OUT]), "depth", 32, where="B", hint="run this"
    )  # the contract itself passes
    check_graph_io(
        _session([_arg("depth", "float", [None, 1, 224, 224])], [_arg("embedding", "float", ["b", 32])]),
        "depth",
        32,
        where="B",
        hint="run this",
    )  # unnamed symbolic axes are fine


def test_validate_a_read_only_bundle(small_bundle, monkeypatch, capsys):
    """Checking needs no write access; recording is skipped with a note (exit 0 when the graphs pass)."""
    from bindrt.cli import main

    export_bundle(small_bundle, modalities=["imu"], precisions="fp32")
    before = (small_bundle / "manifest.json").read_bytes()
    modes = {p: p.stat().st_mode for p in [small_bundle, *small_bundle.rglob("*")]}
    for p in modes:
        p.chmod(p.stat().st_mode & ~0o222)
    if os.geteuid() == 0:  # root ignores permission bits: make the bundle look read-only (as a read-only mount would)
        real_access = os.access
        monkeypatch.setattr(
            os,
            "access",
            lambda p, mode, **kw: (
                False if str(p) == str(small_bundle) and mode & os.W_OK else real_access(p, mode, **kw)
            ),
        )
    try:
        assert main(["validate", str(small_bundle)]) == 0
        out = capsys.readouterr().out
        assert f"note: {small_bundle} is not writable; validating without recording the results in manifest.json" in out
        assert "imu/imu.fp32" in out
        assert (small_bundle / "manifest.json").read_bytes() == before
        assert sorted(p.name for p in small_bundle.iterdir()) == ["manifest.json", "onnx", "weights"]
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
