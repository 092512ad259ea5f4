"""Bad inputs to export / validate / the ONNX Runtime backend give clear typed errors and leave bundles intact."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import bindrt
from bindrt.bundle import Bundle
from bindrt.errors import BackendError, BundleError, ConfigError, ExportError, OutputError, UnknownModalityError
from bindrt.export import export_bundle, validate_bundle
from bindrt.export.spec import graph_records
from export_test_helpers import min_cosine


def test_exporting_a_modality_the_bundle_lacks(small_bundle):
    with pytest.raises(UnknownModalityError, match="audio"):
        export_bundle(small_bundle, modalities=["audio"])


@pytest.mark.parametrize("opset", [16, 99, 0])
def test_unsupported_opset(small_bundle, opset):
    with pytest.raises(ExportError, match=f"unsupported opset {opset}.*17"):
        export_bundle(small_bundle, modalities=["imu"], opset=opset)


def test_unsupported_precision(small_bundle):
    with pytest.raises(ConfigError, match="bf16"):
        export_bundle(small_bundle, modalities=["imu"], precisions="fp32,bf16")


def test_unwritable_output_directory(small_bundle, monkeypatch):
    (small_bundle / "onnx").write_text("not a directory")
    with pytest.raises(OutputError, match="not a directory"):
        export_bundle(small_bundle, modalities=["imu"])
    (small_bundle / "onnx").unlink()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(small_bundle) else real_access(p, mode, **kw))
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

