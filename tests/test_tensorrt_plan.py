"""TensorRT engine plans without TensorRT: version decisions, profiles, trtexec lines, cache keys, CLI errors.

The calls into TensorRT itself (``bindrt.tensorrt.build.build_engine``) need TensorRT and a GPU,
which no machine of this project has had; ``test_build_on_real_tensorrt`` runs where both exist.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from bindrt.errors import BackendError, ConfigError
from bindrt.tensorrt.adapter import TrtVersion, check_gpu, decide
from bindrt.tensorrt.plan import BuildOptions, Profile, engine_cache_key, parse_range, trtexec_command

V86, V10_8, V10_12, V11 = (TrtVersion.parse(v) for v in ("8.6.1.6", "10.8.0.43", "10.12.0.36", "11.4.1"))


def test_versions_parse_and_order():
    assert V86 == TrtVersion(8, 6, 1) and str(V10_12) == "10.12.0"
    assert V86 < V10_8 < V10_12 < V11
    assert TrtVersion.parse("10.13") == TrtVersion(10, 13, 0)
    for bad in ("ten", "", "10", "v10.1"):
        with pytest.raises(ConfigError, match="is not a version"):
            TrtVersion.parse(bad)


@pytest.mark.parametrize(
    "version, precision, network_flags, builder_flags, trtexec_flags",
    [
        (V86, "fp32", ("EXPLICIT_BATCH",), (), ("--noTF32",)),
        (V86, "fp16", ("EXPLICIT_BATCH",), ("FP16",), ("--fp16",)),
        (V86, "int8", ("EXPLICIT_BATCH",), ("INT8",), ("--int8",)),
        (V10_8, "fp16", (), ("FP16",), ("--fp16",)),
        (V10_8, "bf16", (), ("BF16",), ("--bf16",)),
        (V10_8, "fp8", (), ("FP8",), ("--fp8",)),
        (V10_12, "fp16", ("STRONGLY_TYPED",), (), ("--stronglyTyped",)),
        (V10_12, "int8", ("STRONGLY_TYPED",), (), ("--stronglyTyped",)),
        (V10_12, "fp32", ("STRONGLY_TYPED",), (), ("--stronglyTyped", "--noTF32")),
        (V11, "fp16", (), (), ()),
        (V11, "int8", (), (), ()),
        (V11, "fp32", (), (), ()),
    ],
)
def test_decisions_follow_the_version(version, precision, network_flags, builder_flags, trtexec_flags):
    d = decide(version, precision)
    assert d.network_flag_names() == network_flags
    assert d.builder_flags == builder_flags
    assert d.trtexec_precision_flags() == trtexec_flags
    assert d.strongly_typed == (version >= V10_12)


def test_precisions_a_version_cannot_build_are_refused():
    with pytest.raises(ConfigError, match="fp8 engines need TensorRT >= 10.0"):
        decide(V86, "fp8")
    with pytest.raises(ConfigError, match="bf16 engines need TensorRT >= 10.0"):
        decide(V86, "bf16")
    with pytest.raises(ConfigError, match="older than bindrt supports"):
        decide(TrtVersion(8, 5), "fp16")
    with pytest.raises(ConfigError, match="unknown engine precision 'int4'"):
        decide(V10_12, "int4")


def test_gpu_checks_volta_fp8_int8():
    check_gpu(TrtVersion(10, 4), (7, 0), "fp16", "Tesla V100")  # Volta is fine up to 10.4
    with pytest.raises(BackendError, match=r"TensorRT 10.5.0 dropped Volta \(Tesla V100.*10.4 or older"):
        check_gpu(TrtVersion(10, 5), (7, 0), "fp16", "Tesla V100")
    with pytest.raises(BackendError, match=r"fp8 engines need compute capability >= 8.9.*A100 is 8.0"):
        check_gpu(V10_12, (8, 0), "fp8", "A100")
    check_gpu(V10_12, (9, 0), "fp8", "H200")
    with pytest.raises(BackendError, match="int8 engines need compute capability >= 7.5"):
        check_gpu(TrtVersion(10, 4), (7, 0), "int8", "V100")


def test_profiles_span_batch_and_clips():
    assert parse_range("1:8:32", "batch") == (1, 8, 32) and parse_range("4", "batch") == (4, 4, 4)
    for bad, message in (("8:1:32", "MIN <= OPT <= MAX"), ("0:1:2", "1 <= MIN"), ("1:2", "MIN:OPT:MAX"), ("a", "")):
        with pytest.raises(ConfigError, match=f"--batch .*{message}"):
            parse_range(bad, "batch")
    profile = Profile(batch=(1, 4, 16), clips=(1, 3, 5))
    assert profile.shapes(["batch", "clips", 1, 128, 204]) == (
        (1, 1, 1, 128, 204),
        (4, 3, 1, 128, 204),
        (16, 5, 1, 128, 204),
    )
    with pytest.raises(ConfigError, match="'tokens' is neither fixed"):
        profile.shapes(["batch", "tokens"])


def test_trtexec_line_per_version():
    shapes = Profile(batch=(1, 8, 32)).shapes(["batch", 1, 224, 224])
    opts = BuildOptions(workspace_gib=2, opt_level=5, version_compatible=True, hardware_compatibility="ampere+")
    line = trtexec_command("d.onnx", "d.plan", "depth", shapes, decide(V10_8, "fp16"), opts, "t.cache")
    assert line == [
        "trtexec",
        "--onnx=d.onnx",
        "--saveEngine=d.plan",
        "--minShapes=depth:1x1x224x224",
        "--optShapes=depth:8x1x224x224",
        "--maxShapes=depth:32x1x224x224",
        "--memPoolSize=workspace:2048",
        "--builderOptimizationLevel=5",
        "--fp16",
        "--versionCompatible",
        "--hardwareCompatibilityLevel=ampere+",
        "--timingCacheFile=t.cache",
    ]
    eleven = trtexec_command("d.onnx", "d.plan", "depth", shapes, decide(V11, "fp16"), BuildOptions())
    assert not any(f in eleven for f in ("--fp16", "--stronglyTyped", "--int8"))


def test_build_options_are_checked():
    for kwargs, message in (
        ({"workspace_gib": 0}, "--workspace 0"),
        ({"opt_level": 6}, "--opt-level 6"),
        ({"hardware_compatibility": "hopper"}, "unknown hardware compatibility level 'hopper'"),
    ):
        with pytest.raises(ConfigError, match=message):
            BuildOptions(**kwargs)


def test_cache_key_changes_with_every_input():
    base = dict(
        onnx_sha256="a" * 64,
        tensorrt_version="10.12.0",
        gpu_name="NVIDIA H200",
        compute_capability=(9, 0),
        shapes=Profile().shapes(["batch", 1, 224, 224]),
        precision="fp16",
        options=BuildOptions(),
    )
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 64
    changes = {
        "onnx_sha256": "b" * 64,
        "tensorrt_version": "10.13.0",
        "gpu_name": "NVIDIA A100",
        "compute_capability": (8, 0),
        "shapes": Profile(batch=(1, 8, 64)).shapes(["batch", 1, 224, 224]),
        "precision": "int8",
        "options": BuildOptions(opt_level=5),
    }
    keys = {engine_cache_key(**{**base, name: value}) for name, value in changes.items()}
    assert len(keys) == len(changes) and key not in keys


# ----------------------------------------------------------------------------- the CLI, on a real bundle
@pytest.fixture(scope="module")
def exported(golden_bundle, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime", reason="needs the onnx extras to export graphs")
    from bindrt.export import export_bundle

    out = tmp_path_factory.mktemp("trt") / "bundle"
    shutil.copytree(golden_bundle, out)
    export_bundle(out, modalities=["depth", "audio"], precisions=("fp32", "fp16", "bf16"))
    return out


def test_print_trtexec_without_tensorrt(exported, capsys):
    from bindrt.cli import main

    assert main(["build", str(exported), "--print-trtexec", "--tensorrt-version", "10.8", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert {(p["modality"], p["kind"]) for p in plans} == {("depth", "depth"), ("audio", "audio")}
    audio = next(p for p in plans if p["kind"] == "audio")
    assert audio["graph"] == "onnx/audio/audio.fp16.onnx" and audio["shapes"]["max"] == [32, 5, 1, 128, 204]
    assert "--fp16" in audio["trtexec"] and audio["strongly_typed"] is False
    assert main(["build", str(exported), "--print-trtexec", "--tensorrt-version", "11.4", "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "onnx/depth/depth.fp32.onnx" in out and "--noTF32" not in out and "always strongly typed" in out


@pytest.mark.parametrize(
    "version, flag, strongly_typed", [("10.8", "--bf16", False), ("10.12", "--stronglyTyped", True)]
)
def test_bf16_engines_build_from_the_bf16_graph(exported, capsys, version, flag, strongly_typed):
    from bindrt.cli import main

    args = ["build", str(exported), "--print-trtexec", "--tensorrt-version", version, "--precision", "bf16", "--json"]
    assert main(args) == 0
    plans = json.loads(capsys.readouterr().out)
    assert {p["graph"] for p in plans} == {"onnx/depth/depth.bf16.onnx", "onnx/audio/audio.bf16.onnx"}
    assert all(flag in p["trtexec"] and p["strongly_typed"] is strongly_typed for p in plans)
    assert not any("--fp16" in p["trtexec"] for p in plans)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "TensorRT is not installed (`import tensorrt` fails); install it from NVIDIA's index"),
        (["--print-trtexec"], "TensorRT is not installed here; name the target with --tensorrt-version"),
        (["--tensorrt-version", "10.8"], "--tensorrt-version only applies with --print-trtexec"),
        (
            ["--print-trtexec", "--tensorrt-version", "10.8", "--precision", "int8"],
            "no graph depth/depth.int8.modelopt",
        ),
        (["--print-trtexec", "--tensorrt-version", "10.8", "--precision", "fp8"], "depth.fp8.modelopt to build a fp8"),
        (["--print-trtexec", "--tensorrt-version", "8.6", "--precision", "bf16"], "bf16 engines need TensorRT >= 10.0"),
        (["--print-trtexec", "--tensorrt-version", "8.6", "--precision", "fp8"], "fp8 engines need TensorRT >= 10.0"),
        (["--print-trtexec", "--tensorrt-version", "10.8", "--batch", "8:1:2"], "--batch 8:1:2 is invalid"),
        (["--print-trtexec", "--tensorrt-version", "10.8", "--kinds", "video"], "--kinds video: no such input"),
    ],
)
def test_cli_errors_are_one_line_exit_2(exported, capsys, extra, message):
    from bindrt.cli import main

    try:
        code = main(["build", str(exported), "--modalities", "depth", *extra])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None, reason="needs TensorRT and an NVIDIA GPU (not installable here)"
)
def test_build_on_real_tensorrt(exported, tmp_path):
    from bindrt.cli import main

    assert main(["build", str(exported), "--modalities", "depth", "--precision", "fp16", "--batch", "1:2:4"]) == 0
    assert (exported / "engines/tensorrt/depth/depth.fp16.plan").stat().st_size > 0
    assert (exported / "engines/tensorrt/timing.cache").is_file()
