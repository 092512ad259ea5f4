"""The manifest schema: records read and write every manifest bindrt writes, the shipped JSON Schema is current,
and a wrong manifest fails ``Bundle.open`` naming the field."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import GOLDEN_DIR

from bindrt.bundle import MANIFEST, Bundle
from bindrt.errors import BundleError
from bindrt.schema import SCHEMA_FILE, Manifest, OnnxArtifact, OnnxGraph, json_schema, json_schema_text, main

OLD_BUNDLE = Path(__file__).parent / "data" / "bundle-64f1869"

jsonschema = pytest.importorskip(
    "jsonschema", reason="the JSON Schema checks need jsonschema (pip install 'bindrt[dev]')"
)


@pytest.fixture(scope="module")
def validator():
    jsonschema.Draft202012Validator.check_schema(json_schema())
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text()))


@pytest.fixture(scope="module")
def exported_bundle(tmp_path_factory) -> Path:
    """Every kind of graph record in ~20 s: imu fp32/fp16/int8 + fused (validated, then re-validated: ``time``),
    text (tokenizer contract), audio with its raw-input graph (``composed_from``)."""
    pytest.importorskip("onnxruntime")
    from bindrt.convert import convert_checkpoint
    from bindrt.export import export_bundle, validate_bundle

    out = tmp_path_factory.mktemp("schema") / "bundle"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", out, modalities=["audio", "text", "imu"])
    export_bundle(out, modalities=["imu"], precisions="fp32,fp16,bf16,int8", fused=True)
    export_bundle(out, modalities=["text", "audio"], precisions="fp32", with_preprocessing=True, validate=False)
    validate_bundle(out, modalities=["imu"], precisions="fp32")
    return out


def test_shipped_json_schema_is_generated_from_the_records():
    assert SCHEMA_FILE.read_text() == json_schema_text(), "run `python -m bindrt.schema` to regenerate it"
    assert main(["--check"]) == 0


def test_schema_command_writes_and_checks(tmp_path, capsys):
    target = tmp_path / "schema.json"
    assert main(["--check", str(target)]) == 1
    assert main([str(target)]) == 0 and target.read_text() == json_schema_text()
    assert main(["--check", str(target)]) == 0


@pytest.mark.parametrize("which", ["golden", "old", "exported"])
def test_every_manifest_validates_and_round_trips(request, validator, which):
    path = {
        "golden": lambda: request.getfixturevalue("golden_bundle"),
        "old": lambda: OLD_BUNDLE,
        "exported": lambda: request.getfixturevalue("exported_bundle"),
    }[which]()
    text = (path / MANIFEST).read_text()
    manifest = json.loads(text)
    validator.validate(manifest)
    record = Bundle.open(path).record
    assert record.to_dict() == manifest
    assert json.dumps(record.to_dict(), indent=1) + "\n" == text  # key order too: writers go through the records
    assert not record.extra and all(not e.extra for e in record.modalities.values())  # every field is modelled


def test_exported_records_are_typed(exported_bundle):
    record = Bundle.open(exported_bundle).record
    imu = record.modalities["imu"].onnx
    assert isinstance(imu, OnnxArtifact) and set(imu.graphs) == {
        "imu.fp32",
        "imu.fp16",
        "imu.bf16",
        "imu.int8",
        "imu.fp32.fused",
        "imu.int8.fused",
    }
    fused = imu.graphs["imu.int8.fused"]
    assert fused.quantization.method == "dynamic" and fused.quantization.calibration is None
    assert fused.fusions.fused_operator_statistics["Attention"] >= 1 and fused.validation.passed
    assert imu.graphs["imu.fp16"].fp16.strongly_typed and imu.graphs["imu.fp32"].validation.time
    assert imu.graphs["imu.bf16"].bf16.low_dtype == "bfloat16" and imu.graphs["imu.fp16"].fp16.low_dtype == "float16"
    assert not any(g.extra for g in imu.graphs.values())
    audio = record.modalities["audio"].onnx.graphs
    assert audio["audio_waveform.fp32"].composed_from == "audio.fp32" and audio["audio.fp32"].validation is None
    assert record.modalities["text"].onnx.graphs["text.fp32"].preprocessing["eot_token"] == 49407
    assert [h.stage for h in record.history] == ["convert", "export", "export", "validate"]


def test_runtime_reads_the_schema_not_the_exporter():
    code = (
        "import sys, bindrt.runtime.onnxruntime_backend, bindrt.bundle, bindrt.schema; "
        "bad = sorted(m for m in sys.modules if m.startswith(('bindrt.export', 'torch', 'onnx.')) or m == 'onnx'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ----------------------------------------------------------------------------- wrong manifests
def _graph(m: dict, key: str = "depth.fp32") -> dict:
    return m["modalities"]["depth"]["artifacts"]["onnx"]["graphs"][key]


_ONNX = r"manifest\.json: modalities\.depth\.artifacts\.onnx"
_GRAPH = _ONNX + r'\.graphs\["depth\.fp32"\]'

#: (edit, message, whether the JSON Schema rejects it too: False for the checks only the records make)
INVALID = {
    "wrong type": (lambda m: _graph(m).update(opset="18"), _GRAPH + r'\.opset: expected int, got "18"$', True),
    "wrong type in a list": (
        lambda m: _graph(m)["inputs"][0].update(shape=["batch", 1.5]),
        _GRAPH + r"\.inputs\[0\]\.shape\[1\]: expected int or str, got 1\.5",
        True,
    ),
    "bool is not an int": (lambda m: _graph(m).update(opset=True), _GRAPH + r"\.opset: expected int, got true", True),
    "unknown artefact version": (
        lambda m: m["modalities"]["depth"]["artifacts"]["onnx"].update(version=2),
        _ONNX + r"\.version: unsupported version 2 of 'bindrt-onnx'; this bindrt reads version 1",
        True,
    ),
    "artefact version as a string": (
        lambda m: m["modalities"]["depth"]["artifacts"]["onnx"].update(version="1"),
        _ONNX + r'\.version: expected int, got "1"',
        True,
    ),
    "wrong artefact format": (
        lambda m: m["modalities"]["depth"]["artifacts"]["onnx"].update(format="onnx"),
        _ONNX + r'\.format: expected "bindrt-onnx", got "onnx"',
        True,
    ),
    "missing required field": (lambda m: _graph(m).pop("file"), _GRAPH + r"\.file: required field is missing", True),
    "missing graphs": (
        lambda m: m["modalities"]["depth"]["artifacts"]["onnx"].pop("graphs"),
        _ONNX + r"\.graphs: required field is missing",
        True,
    ),
    "missing nested field": (
        lambda m: _graph(m, "depth.int8")["quantization"].pop("method"),
        r'graphs\["depth\.int8"\]\.quantization\.method: required field is missing',
        True,
    ),
    "unknown precision": (
        lambda m: _graph(m).update(precision="fp4"),
        _GRAPH + r'\.precision: expected one of "fp32", "fp16", "bf16", "int8", "fp8", got "fp4"',
        True,
    ),
    "graph path outside the bundle": (
        lambda m: _graph(m).update(external_data=["../x.data"]),
        _GRAPH + r"\.external_data\[0\]: points outside the bundle directory",
        True,
    ),
    "validation of the wrong type": (
        lambda m: _graph(m)["validation"].update(passed="yes"),
        _GRAPH + r'\.validation\.passed: expected bool, got "yes"',
        True,
    ),
    "unknown artefact without a version": (
        lambda m: m["modalities"]["depth"]["artifacts"].update(coreml={"format": "x"}),
        r"artifacts\.coreml\.version: required field is missing",
        True,
    ),
    "graph key that lies": (
        lambda m: _graph(m).update(precision="int8", file="onnx/depth/depth.int8.onnx"),
        _ONNX + r"""\.graphs\["depth\.fp32"\]: key does not match its kind, precision and variant \('depth\.int8'\)""",
        False,
    ),
    "graph of another modality": (
        lambda m: _graph(m).update(modality="imu"),
        _GRAPH + r"\.modality: 'imu' is not the modality of its entry \('depth'\)",
        False,
    ),
    "history without a stage": (
        lambda m: m["history"][1].pop("stage"),
        r"history\[1\]\.stage: required field is missing",
        True,
    ),
    "unknown config field": (
        lambda m: m["config"].update(depth_num_layers=2),
        r"config: invalid config: unknown config field",
        True,
    ),
}


@pytest.fixture()
def old_copy(tmp_path) -> Path:
    return Path(shutil.copytree(OLD_BUNDLE, tmp_path / "bundle"))


@pytest.mark.parametrize("case", list(INVALID))
def test_wrong_manifest_fails_naming_the_field(old_copy, validator, case):
    edit, message, schema_rejects = INVALID[case]
    manifest = json.loads((old_copy / MANIFEST).read_text())
    edit(manifest)
    (old_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        Bundle.open(old_copy)
    assert validator.is_valid(manifest) is not schema_rejects


def test_unknown_keys_and_artefacts_are_kept(old_copy, validator):
    """Forward compatibility: a newer bindrt's optional fields and new artefact kinds open here and survive a save."""
    manifest = json.loads((old_copy / MANIFEST).read_text())
    manifest["signed_by"] = "someone"
    _graph(manifest)["coreml_hints"] = {"units": "all"}
    manifest["modalities"]["depth"]["artifacts"]["coreml"] = {
        "format": "bindrt-coreml",
        "version": 7,
        "packages": {"depth.fp16": {"file": "engines/x.mlpackage"}},
    }
    (old_copy / MANIFEST).write_text(json.dumps(manifest))
    validator.validate(manifest)
    bundle = Bundle.open(old_copy)
    record = bundle.record
    assert record.extra == {"signed_by": "someone"}
    assert record.modalities["depth"].onnx.graphs["depth.fp32"].extra == {"coreml_hints": {"units": "all"}}
    unknown = record.modalities["depth"].artifacts["coreml"]
    assert type(unknown).__name__ == "Artifact" and unknown.version == 7 and "packages" in unknown.extra
    assert record.to_dict() == manifest
    bundle.save()
    assert json.loads((old_copy / MANIFEST).read_text()) == manifest


def test_records_check_what_writers_build():
    graph = OnnxGraph.from_dict(_graph(json.loads((OLD_BUNDLE / MANIFEST).read_text())), "depth/depth.fp32")
    assert graph.key == "depth.fp32" and graph.inputs[0].shape == ("batch", 1, 224, 224)
    with pytest.raises(BundleError, match=r'^depth/depth\.fp32: opset: expected int, got "18"$'):
        OnnxGraph.from_dict(graph.replace(opset="18").to_dict(), "depth/depth.fp32")
    with pytest.raises(BundleError, match=r"^manifest\.json: expected object, got \[\]$"):
        Manifest.from_dict([])
