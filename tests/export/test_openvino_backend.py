"""``bindrt.load(bundle, backend="openvino")``: the bundle's ONNX graphs on OpenVINO, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_test_helpers import GOLDEN_DIR, GOLDEN_INPUTS, KINDS, NO_TORCH, min_cosine, row_relative_error

import bindrt
from bindrt.errors import BackendError, ConfigError
from bindrt.tiers import TIERS, tier_met

ov = pytest.importorskip("openvino", reason="the openvino backend needs openvino (pip install 'bindrt[openvino]')")
pytest.importorskip("nncf", reason="the NNCF int8 graphs need nncf (pip install 'bindrt[openvino]')")
RECIPES = pytest.importorskip("bindrt.export.int8_nncf").RECIPES

BOUNDS = {"bf16": 0.999, "int8": 0.98}


def _cpu_offers(capability: str) -> bool:
    return capability in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


TORCH_FREE = NO_TORCH + textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import bindrt

    bundle, golden_path = sys.argv[1:3]
    golden = dict(np.load(golden_path))
    inputs = json.loads(sys.argv[3])
    model = bindrt.load(bundle, backend="openvino", precision="fp32", inference_num_threads=2, batch_size=5)
    errors = {}
    for kind, key in inputs.items():
        emb = model.encode(kind, golden[key])
        ref = golden["emb_" + kind]
        errors[kind] = float((np.abs(emb - ref).max(-1) / np.linalg.norm(ref, axis=-1)).max())
    print(json.dumps({"errors": errors, "describe": model.backend.describe(),
                      "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules)}))
    """
)


def test_fp32_golden_without_torch_and_hint_read_back(onnx_bundle, tmp_path):
    """Every kind within 1e-5 of the row norm, in a process where ``import torch`` fails; the hint really is f32."""
    script = tmp_path / "no_torch.py"
    script.write_text(TORCH_FREE)
    proc = subprocess.run(
        [sys.executable, str(script), str(onnx_bundle), str(GOLDEN_DIR / "golden.npz"), json.dumps(GOLDEN_INPUTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"]
    assert set(result["errors"]) == set(KINDS)
    for kind, err in result["errors"].items():
        assert err <= 1e-5, kind
    info = result["describe"]
    assert info["backend"] == "openvino" and info["device"] == "CPU"
    assert info["inference_precision"] == "f32"  # read back from the compiled models, not what was asked
    assert info["inference_num_threads"] == 2 and info["openvino"] == ov.__version__
    assert info["cache_dir"] == str(onnx_bundle / "engines" / "openvino")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precisions_meet_their_bounds(onnx_bundle, golden, precision):
    if precision == "bf16" and not _cpu_offers("BF16"):
        pytest.skip("this CPU does not report BF16 in OPTIMIZATION_CAPABILITIES")
    model = bindrt.load(onnx_bundle, backend="openvino", precision=precision, inference_num_threads=2)
    for kind in KINDS:
        assert min_cosine(model.encode(kind, golden[GOLDEN_INPUTS[kind]]), golden[f"emb_{kind}"]) >= BOUNDS[precision]
    info = model.backend.describe()
    assert info["inference_precision"] == {"bf16": "bf16", "int8": "f32"}[precision]
    if precision == "int8":  # the graph NNCF quantized for OpenVINO where there is one, else ONNX Runtime's
        assert info["graphs"]["depth"]["file"] == "onnx/depth/depth.int8.nncf.onnx"
        assert info["graphs"]["text"]["file"] == "onnx/text/text.int8.onnx"


def test_nncf_graphs_record_how_they_were_made_and_their_tier(onnx_bundle):
    """Every kind's NNCF graph: validated on OpenVINO, its tier the one its worst metrics meet, stems kept fp32."""
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    seen = set()
    for modality, entry in manifest["modalities"].items():
        for key, rec in entry["artifacts"]["onnx"]["graphs"].items():
            if rec["variant"] != "nncf":
                continue
            seen.add(rec["kind"])
            v, q = rec["validation"], rec["quantization"]
            assert (
                v["passed"]
                and v["runtime"]["openvino"] == ov.__version__
                and v["runtime"]["inference_precision"] == "f32"
            )
            assert v["tier"] == tier_met(v["worst"]["max_rel_diff"], v["worst"]["min_cosine"])
            assert v["tier"] in ("near-exact", "int8")
            assert q["tool"].startswith("nncf ") and q["method"] == "static" and q["batch_invariant"] is True
            assert q["recipe"] in RECIPES and q["quantized_nodes"] > 0
            if modality != "imu":  # every patch-embedding stem reads the raw signal, so it stays fp32
                assert any("Conv" in name for name in q["kept_fp32"])
            assert (onnx_bundle / rec["file"]).is_file()
    assert seen == set(KINDS) - {"text"}  # text: int8_nncf.SKIPPED_KINDS


def test_every_graph_records_the_tier_its_validation_met(onnx_bundle):
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    floor = {"fp32": "exact", "fp16": "near-exact", "bf16": "near-exact", "int8": "int8", "fp8": "int8"}
    for entry in manifest["modalities"].values():
        for key, rec in entry["artifacts"]["onnx"]["graphs"].items():
            tier = rec["validation"]["tier"]
            assert list(TIERS).index(tier) <= list(TIERS).index(floor[rec["precision"]]), key


def test_nncf_calibration_is_held_out_from_the_validation_suites():
    from bindrt.export.validate import calibration_inputs, suite_inputs

    for kind in KINDS:
        calibration = calibration_inputs(kind)
        assert len(calibration) >= 5 and all(len(x) == 1 for x in calibration)
        validated = [v for s in ("random", "real") for v in suite_inputs(kind, s)[0]]
        for x in calibration:
            assert not any(np.array_equal(x[0], v) for v in validated), kind


def test_int8_falls_back_to_the_onnxruntime_graph_and_variant_is_checked(small_bundle):
    from bindrt.export import export_bundle

    export_bundle(small_bundle, modalities=["imu"], precisions=("int8",))
    model = bindrt.load(small_bundle, backend="openvino", precision="int8", modalities=["imu"])
    assert model.backend.describe()["graphs"]["imu"]["file"] == "onnx/imu/imu.int8.onnx"
    with pytest.raises(BackendError, match=r"no exported ONNX graph imu/imu\.int8\.nncf.*--nncf"):
        bindrt.load(small_bundle, backend="openvino", precision="int8", variant="nncf", modalities=["imu"])
    with pytest.raises(BackendError, match="variant='nncf' graphs are int8"):
        bindrt.load(small_bundle, backend="openvino", precision="fp32", variant="nncf", modalities=["imu"])


def test_precision_the_device_lacks_is_one_clear_error(onnx_bundle):
    lacking = next((p for p, cap in (("fp16", "FP16"), ("bf16", "BF16")) if not _cpu_offers(cap)), None)
    if lacking is None:
        pytest.skip("this CPU offers both FP16 and BF16")
    with pytest.raises(BackendError, match=rf"precision '{lacking}' needs .* CPU offers .*FP32") as info:
        bindrt.load(onnx_bundle, backend="openvino", precision=lacking, modalities=["imu"])
    assert "\n" not in str(info.value)


def test_raw_input_kinds_agree_with_the_feature_path(onnx_bundle):
    model = bindrt.load(
        onnx_bundle, backend="openvino", modalities=["vision", "audio"], preprocessing=True, inference_num_threads=2
    )
    assert {"audio_waveform", "vision_uint8"} <= set(model.input_kinds)
    waves = np.random.default_rng(0).standard_normal((2, 3, 32000)).astype(np.float32) * 0.1
    from bindrt.preprocess.audio import waveform_to_melspec

    feats = np.stack([np.stack([waveform_to_melspec(c[None]) for c in item]) for item in waves])
    assert min_cosine(model.encode("audio_waveform", waves), model.encode("audio", feats)) >= 0.9999
    images = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    assert model.encode("vision_uint8", images).shape == (3, 32)
    plain = bindrt.load(onnx_bundle, backend="openvino", modalities=["audio"])
    with pytest.raises(BackendError, match="preprocessing=True"):
        plain.encode("audio_waveform", waves)


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"device": "NOPE"}, BackendError, r"OpenVINO device 'NOPE' is not available here; this OpenVINO has .*CPU"),
        ({"device": "AUTO:NOPE"}, BackendError, r"'AUTO:NOPE' is not available here"),
        ({"bogus": 1}, BackendError, r"unknown option\(s\) for the openvino backend: \['bogus'\]"),
        ({"variant": "fused"}, BackendError, r"runs the plain graphs.*com\.microsoft.*variant='plain'"),
        (
            {"variant": "qdq"},
            BackendError,
            r"unknown variant 'qdq' for the openvino backend; expected one of auto, plain, nncf",
        ),
        ({"inference_num_threads": -1}, ConfigError, r"inference_num_threads=-1 is invalid; expected int >= 0"),
        ({"inference_num_threads": "2"}, ConfigError, r"inference_num_threads='2' is invalid"),
        ({"num_streams": 0}, ConfigError, r"num_streams=0 is invalid; expected int >= 1"),
        ({"performance_hint": "FAST"}, ConfigError, r"performance_hint='FAST' is invalid; expected one of LATENCY"),
        ({"cache_dir": 3}, ConfigError, r"cache_dir=3 is invalid"),
        ({"precision": "int4"}, BackendError, r"runs precisions fp32, bf16, fp16, int8, not 'int4'"),
    ],
)
def test_bad_options_are_one_line_errors(onnx_bundle, options, error, message):
    with pytest.raises(error, match=message) as info:
        bindrt.load(onnx_bundle, backend="openvino", modalities=["imu"], **options)
    assert "\n" not in str(info.value)


def test_options_reach_the_compiled_model_and_cache_is_optional(onnx_bundle, golden, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")  # a cache directory that cannot be created: no cache, no error
    model = bindrt.load(
        onnx_bundle,
        backend="openvino",
        device="cpu",
        modalities=["imu"],
        num_streams=2,
        performance_hint="THROUGHPUT",
        inference_num_threads=2,
        cache_dir=blocked / "cache",
    )
    info = model.backend.describe()
    assert (info["num_streams"], info["performance_hint"], info["cache_dir"]) == (2, "THROUGHPUT", None)
    assert row_relative_error(model.encode("imu", golden["in_imu"]), golden["emb_imu"]) <= 1e-5
    no_cache = bindrt.load(onnx_bundle, backend="openvino", modalities=["imu"], cache_dir=False)
    assert no_cache.backend.describe()["cache_dir"] is None


def test_cli_bad_device_exits_2_with_one_line(onnx_bundle, capsys, tmp_path):
    from bindrt import cli

    argv = ["embed", str(onnx_bundle), "--backend", "openvino", "--device", "NOPE", "--text", "a"]
    assert cli.main([*argv, "--out", str(tmp_path / "e.npz")]) == cli.EXIT_ERROR == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OpenVINO device 'NOPE' is not available here" in err[0]


def test_cli_export_nncf_writes_the_graph_openvino_int8_runs(small_bundle, capsys):
    from bindrt.cli import main

    assert main(["export", str(small_bundle), "--modalities", "depth", "--precision", "fp32", "--nncf"]) == 0
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    graphs = manifest["modalities"]["depth"]["artifacts"]["onnx"]["graphs"]
    assert set(graphs) == {"depth.fp32", "depth.int8.nncf"}
    assert graphs["depth.fp32"]["validation"]["tier"] == "exact"
    x = np.random.default_rng(3).standard_normal((2, 1, 224, 224)).astype(np.float32)
    ref = bindrt.load(small_bundle, backend="openvino", modalities=["depth"]).encode("depth", x)
    int8 = bindrt.load(small_bundle, backend="openvino", precision="int8", modalities=["depth"])
    assert int8.backend.describe()["graphs"]["depth"]["file"] == "onnx/depth/depth.int8.nncf.onnx"
    assert min_cosine(int8.encode("depth", x), ref) >= TIERS[graphs["depth.int8.nncf"]["validation"]["tier"]].bound


def test_cli_calibrate_nncf_on_your_own_media(small_bundle, tmp_path, capsys):
    """`--calibrate depth=DIR`: the NNCF graph is calibrated on those files (recorded), and still validated."""
    from PIL import Image

    from bindrt.cli import main

    media = tmp_path / "depths"
    media.mkdir()
    rng = np.random.default_rng(4)
    for i in range(6):  # 16-bit depth maps in millimetres, as depth sensors write them
        Image.fromarray(rng.integers(500, 4500, (120, 160), dtype=np.uint16)).save(media / f"d{i}.png")
    argv = ["export", str(small_bundle), "--modalities", "depth", "--nncf", "--calibrate", f"depth={media}"]
    assert main(argv) == 0
    manifest = json.loads((small_bundle / "manifest.json").read_text())
    q = manifest["modalities"]["depth"]["artifacts"]["onnx"]["graphs"]["depth.int8.nncf"]["quantization"]
    assert q["calibration"]["inputs"].startswith("user media (6 items") and q["calibration"]["items"] == 11
    for argv, message in (
        (
            ["--calibrate", f"depth={media}"],
            "--calibrate calibrates the static int8/fp8 graphs; add --nncf or --modelopt",
        ),
        (["--nncf", "--calibrate", "depth"], "expected KIND=PATH"),
        (["--nncf", "--calibrate", f"depth={tmp_path / 'none*.png'}"], "no such file, directory or matching"),
        (["--nncf", "--calibrate", f"smell={media}"], "unknown input kind"),
    ):
        capsys.readouterr()
        assert main(["export", str(small_bundle), "--modalities", "depth", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
