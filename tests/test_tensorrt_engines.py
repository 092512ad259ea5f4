"""TensorRT engine records without TensorRT: manifest round trip, which engine runs here, cache hits, refusals.

Everything that needs TensorRT and a GPU (deserialising and running engines) is marked and
skipped here; no machine this project has reached can install TensorRT.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

import pytest

import bindrt
from bindrt.bundle import Bundle
from bindrt.errors import BackendError
from bindrt.tensorrt.adapter import TrtVersion
from bindrt.tensorrt.build import plan_engines
from bindrt.tensorrt.engines import engine_records, is_cache_hit, make_record, record_engine, select_engine
from bindrt.tensorrt.plan import BuildOptions, engine_cache_key

V10_8, V10_12 = TrtVersion(10, 8), TrtVersion(10, 12)


@pytest.fixture(scope="module")
def exported(golden_bundle, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="needs the onnx extras to export graphs")
    from bindrt.export import export_bundle

    out = tmp_path_factory.mktemp("trt-engines") / "bundle"
    shutil.copytree(golden_bundle, out)
    export_bundle(out, modalities=["depth"], precisions=("fp16",))
    return out


def _recorded(bundle_dir: Path, tmp_path: Path, options: BuildOptions = BuildOptions(), cc=(8, 0), gpu="NVIDIA A100"):
    """A bundle copy whose depth engine record says it was built with TensorRT 10.8 on ``gpu``.

    The engine file holds placeholder bytes: these tests read records and checksums, never the engine.
    """
    work = tmp_path / "b"
    shutil.copytree(bundle_dir, work)
    bundle = Bundle.open(work)
    (plan,) = plan_engines(bundle, precision="fp16", version=V10_8, options=options)
    bundle.add_file(plan.engine_relpath, lambda tmp: tmp.write_bytes(b"placeholder, not an engine"))
    graph_sha = bundle.manifest["files"][plan.graph.file]["sha256"]
    key = engine_cache_key(
        onnx_sha256=graph_sha,
        tensorrt_version="10.8.0",
        gpu_name=gpu,
        compute_capability=cc,
        shapes=plan.shapes,
        precision="fp16",
        options=options,
    )
    record = make_record(
        plan, graph_sha256=graph_sha, gpu=gpu, compute_capability=cc, cache_key=key, seconds=1.0, layers=None, log=None
    )
    record_engine(bundle, record)
    bundle.save()
    return Bundle.open(work), key


def test_records_round_trip_through_the_manifest(exported, tmp_path):
    bundle, key = _recorded(exported, tmp_path)
    (record,) = engine_records(bundle, "depth").values()
    assert record.key == "depth.fp16" and record.cache_key == key and record.tensorrt == "10.8.0"
    assert record.graph == "onnx/depth/depth.fp16.onnx" and record.shapes.max == (32, 1, 224, 224)
    assert record.trtexec.startswith("trtexec --onnx=") and "--fp16" in record.trtexec
    assert record.graph_sha256 == hashlib.sha256((bundle.path / record.graph).read_bytes()).hexdigest()


def test_cache_hit_only_for_the_same_inputs_and_an_intact_file(exported, tmp_path):
    bundle, key = _recorded(exported, tmp_path)
    record = engine_records(bundle, "depth")["depth.fp16"]
    assert is_cache_hit(bundle, record, key)
    assert not is_cache_hit(bundle, record, "0" * 64)
    assert not is_cache_hit(bundle, None, key)
    (bundle.path / record.file).write_bytes(b"changed on disk")
    assert not is_cache_hit(bundle, record, key)


@pytest.mark.parametrize(
    "options, here_version, here_cc, message",
    [
        (BuildOptions(), V10_12, (8, 0), "built with TensorRT 10.8.0, this is TensorRT 10.12.0"),
        (BuildOptions(), V10_8, (9, 0), r"built for compute capability 8.0 \(NVIDIA A100\), this GPU \(H200\) is 9.0"),
        (BuildOptions(version_compatible=True), TrtVersion(10, 7), (8, 0), "older than the 10.8.0 that built it"),
        (BuildOptions(hardware_compatibility="ampere+"), V10_8, (7, 5), "built for Ampere and newer"),
    ],
)
def test_an_engine_that_cannot_run_here_says_what_differs(exported, tmp_path, options, here_version, here_cc, message):
    bundle, _ = _recorded(exported, tmp_path, options)
    records = engine_records(bundle, "depth")
    with pytest.raises(BackendError, match=message) as info:
        select_engine(
            records, "depth", "fp16", tensorrt=here_version, gpu="H200", compute_capability=here_cc, where="b"
        )
    assert "\n" not in str(info.value) and "rebuild it with `bindrt build`" in str(info.value)


def test_compatible_engines_are_selected(exported, tmp_path):
    bundle, _ = _recorded(exported, tmp_path, BuildOptions(version_compatible=True, hardware_compatibility="ampere+"))
    records = engine_records(bundle, "depth")
    found = select_engine(records, "depth", "fp16", tensorrt=V10_12, gpu="H200", compute_capability=(9, 0), where="b")
    assert found.key == "depth.fp16"
    with pytest.raises(BackendError, match=r"no int8 TensorRT engine for depth \(it has: depth.fp16\)"):
        select_engine(records, "depth", "int8", tensorrt=V10_8, gpu="A100", compute_capability=(8, 0), where="b")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_refuses_clearly_without_tensorrt(exported):
    with pytest.raises(BackendError, match="runs on CUDA devices"):
        bindrt.load(exported, backend="tensorrt", precision="fp16", modalities=["depth"])
    with pytest.raises(BackendError, match="TensorRT is not installed") as info:
        bindrt.load(exported, backend="tensorrt", device="cuda", precision="fp16", modalities=["depth"])
    assert "\n" not in str(info.value)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT and an NVIDIA GPU (not installable here)"
)
def test_tensorrt_engine_matches_onnxruntime_and_splits_batches(exported):
    import numpy as np

    from bindrt.cli import main

    assert main(["build", str(exported), "--modalities", "depth", "--precision", "fp16", "--batch", "1:2:4"]) == 0
    x = np.random.default_rng(0).standard_normal((9, 1, 224, 224)).astype(np.float32)  # > profile max: split
    trt = bindrt.load(exported, backend="tensorrt", device="cuda", precision="fp16", modalities=["depth"])
    ref = bindrt.load(exported, backend="onnxruntime", modalities=["depth"]).encode("depth", x)
    got = trt.encode("depth", x)
    cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert got.shape == ref.shape and cos.min() >= 0.999


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_validate_says_engines_were_not_validated_without_tensorrt(exported, tmp_path):
    from bindrt.export import validate_bundle

    bundle, _ = _recorded(exported, tmp_path)
    notes: list[str] = []
    results = validate_bundle(bundle, update_manifest=False, progress=notes.append)
    assert set(results) == {"depth/depth.fp16"}  # the graph; the engine is not claimed validated
    assert "note: 1 TensorRT engine(s) not validated: TensorRT is not installed here" in notes


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT and an NVIDIA GPU (not installable here)"
)
def test_validate_records_engine_validation(exported):
    from bindrt.cli import main
    from bindrt.export import validate_bundle

    assert main(["build", str(exported), "--modalities", "depth", "--precision", "fp16", "--batch", "1:2:8"]) == 0
    results = validate_bundle(exported)
    assert results["depth/tensorrt/depth.fp16"]["passed"]
    record = engine_records(Bundle.open(exported), "depth")["depth.fp16"]
    assert record.validation is not None and record.validation.worst["min_cosine"] >= 0.999


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT and an NVIDIA GPU (not installable here)"
)
def test_second_build_is_a_cache_hit(exported, capsys):
    from bindrt.cli import main

    argv = ["build", str(exported), "--modalities", "depth", "--precision", "fp16", "--batch", "1:2:4"]
    assert main(argv) == 0
    before = engine_records(Bundle.open(exported), "depth")["depth.fp16"]
    capsys.readouterr()
    assert main(argv) == 0
    assert "cached" in capsys.readouterr().out
    assert engine_records(Bundle.open(exported), "depth")["depth.fp16"].created == before.created


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("cupy") is None,
    reason="needs TensorRT, an NVIDIA GPU and CuPy (not installable here)",
)
def test_gpu_arrays_are_used_in_place(exported):
    import cupy
    import numpy as np

    from bindrt.cli import main

    assert main(["build", str(exported), "--modalities", "depth", "--precision", "fp16", "--batch", "1:2:4"]) == 0
    x = np.random.default_rng(1).standard_normal((3, 1, 224, 224)).astype(np.float32)
    trt = bindrt.load(exported, backend="tensorrt", device="cuda", precision="fp16", modalities=["depth"])
    on_host = trt.backend.run("depth", x)
    on_device = trt.backend.run("depth", cupy.asarray(x))
    np.testing.assert_allclose(on_device, on_host, rtol=0, atol=0)
