"""Precision tiers and ``backend="auto"``: the decision on recorded machines, then one real measurement here."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from export_test_helpers import GOLDEN_DIR, min_cosine

import bindrt
from bindrt.errors import BackendError, ConfigError
from bindrt.tiers import TIERS, Measurement, choose, tier_met


def rec(
    backend: str, precision: str, ms: float | None, rel: float | None = None, cos: float | None = None, skipped=None
):
    return Measurement(backend, precision, median_ms=ms, max_rel_diff=rel, min_cosine=cos, skipped=skipped)


#: An AMX machine: bf16 is fast and near-exact, int8 fastest but only int8-tier.
AMX = [
    rec("torch", "fp32", 30.0, 0.0, 1.0),
    rec("torch", "bf16", 12.0, 4e-3, 0.9995),
    rec("onnxruntime", "fp32", 20.0, 3e-7, 1.0),
    rec("onnxruntime", "int8", 7.0, 0.05, 0.991),
    rec("openvino", "fp32", 18.0, 2e-7, 1.0),
    rec("openvino", "bf16", 9.0, 3e-3, 0.9996),
    rec("openvino", "int8", 8.0, 0.04, 0.993),
]
#: No BF16 at all: openvino bf16 cannot load, torch bf16 is emulated (slow).
NO_AMX = [
    rec("torch", "fp32", 30.0, 0.0, 1.0),
    rec("torch", "bf16", 95.0, 4e-3, 0.9995),
    rec("onnxruntime", "fp32", 21.0, 3e-7, 1.0),
    rec("onnxruntime", "int8", 15.0, 0.05, 0.991),
    rec("openvino", "fp32", 19.0, 2e-7, 1.0),
    rec("openvino", "bf16", None, skipped="the CPU device does not offer BF16"),
    rec("openvino", "int8", 16.0, 0.04, 0.993),
]


def test_tier_met_is_the_strictest_bound_met():
    assert tier_met(1e-6, 1.0) == "exact"
    assert tier_met(1e-3, 0.9995) == "near-exact"
    assert tier_met(0.05, 0.985) == "int8"
    assert tier_met(0.2, 0.9) is None
    assert list(TIERS) == ["exact", "near-exact", "int8"]


def test_choose_on_an_amx_machine():
    assert choose(AMX, "near-exact").name == "openvino bf16"
    assert choose(AMX, "int8").name == "onnxruntime int8"
    assert choose(AMX, "exact").name == "openvino fp32"


def test_choose_without_amx_skips_bf16():
    assert choose(NO_AMX, "near-exact").name == "openvino fp32"
    assert choose([m for m in NO_AMX if m.backend != "openvino"], "near-exact").name == "onnxruntime fp32"
    assert choose(NO_AMX, "int8").name == "onnxruntime int8"


def test_exact_never_picks_bf16_or_int8():
    fast_lossy = [*AMX, rec("openvino", "fp16", 1.0, 1e-3, 0.9999)]
    for records in (AMX, NO_AMX, fast_lossy):
        assert choose(records, "exact").precision == "fp32"


def test_no_engine_meets_the_tier_names_each_reach():
    records = [rec("torch", "fp32", 30.0, 2e-4, 0.99999), NO_AMX[3], NO_AMX[5]]
    with pytest.raises(BackendError) as exc:
        choose(records, "exact")
    msg = str(exc.value)
    assert "\n" not in msg and "no engine here meets tier 'exact'" in msg
    assert "torch fp32: max rel diff 0.0002" in msg and "(near-exact)" in msg
    assert "onnxruntime int8:" in msg and "openvino bf16: skipped (the CPU device does not offer BF16)" in msg


def test_unknown_tier_and_misused_tier_are_config_errors(onnx_bundle):
    with pytest.raises(ConfigError, match="unknown tier 'fast'; expected one of exact, near-exact, int8"):
        choose(AMX, "fast")
    with pytest.raises(ConfigError, match="unknown tier"):
        bindrt.load(onnx_bundle, backend="auto", tier="fast", modalities=["imu"])
    with pytest.raises(ConfigError, match="tier='int8' is for backend='auto'"):
        bindrt.load(onnx_bundle, backend="onnxruntime", tier="int8", modalities=["imu"])
    with pytest.raises(ConfigError, match="chooses the precision itself"):
        bindrt.load(onnx_bundle, backend="auto", precision="int8", modalities=["imu"])


@pytest.fixture(scope="module")
def auto_bundle(onnx_bundle, tmp_path_factory):
    """A writable copy: the measurement is cached inside the bundle."""
    out = tmp_path_factory.mktemp("auto") / "bundle"
    shutil.copytree(onnx_bundle, out, ignore=shutil.ignore_patterns("auto"))
    return out


def test_auto_measures_caches_reuses_and_meets_the_tier(auto_bundle):
    golden = np.load(GOLDEN_DIR / "golden.npz")
    model = bindrt.load(auto_bundle, backend="auto", tier="int8", modalities=["imu"])
    auto = model.describe()["auto"]
    cache = auto_bundle / "engines" / "auto" / f"{auto['machine']}.json"
    assert auto["cache"] == {"path": str(cache), "reused": False, "written": True} and cache.is_file()
    names = [f"{m['backend']} {m['precision']}" for m in auto["measurements"]]
    assert names[0] == "torch fp32" and "onnxruntime int8" in names and "openvino fp32" in names
    chosen = f"{auto['chosen']['backend']} {auto['chosen']['precision']}"
    winner = next(m for m in auto["measurements"] if f"{m['backend']} {m['precision']}" == chosen)
    assert winner["tier"] in ("exact", "near-exact", "int8")
    assert all(m["median_ms"] >= winner["median_ms"] for m in auto["measurements"] if m["tier"])
    assert model.describe()["backend"] == auto["chosen"]["backend"]
    assert min_cosine(model.encode("imu", golden["in_imu"]), golden["emb_imu"]) >= TIERS["int8"].bound
    print(f"auto chose {chosen}:", json.dumps(auto["measurements"]))

    before = cache.stat().st_mtime_ns
    again = bindrt.load(auto_bundle, backend="auto", tier="int8", modalities=["imu"])
    assert again.describe()["auto"]["cache"]["reused"] is True and cache.stat().st_mtime_ns == before
    assert again.describe()["auto"]["chosen"] == auto["chosen"]
    refreshed = bindrt.load(auto_bundle, backend="auto", tier="int8", modalities=["imu"], refresh=True)
    assert refreshed.describe()["auto"]["cache"]["reused"] is False


def test_cli_prints_the_choice(auto_bundle, capsys, tmp_path):
    from bindrt import cli

    out = tmp_path / "e.npz"
    argv = [
        "embed",
        str(auto_bundle),
        "--backend",
        "auto",
        "--tier",
        "near-exact",
        "--text",
        "a dog",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("auto: ") and "(near-exact" in lines[0] and "measured on this machine" in lines[0]
    assert str(auto_bundle / "engines" / "auto") in lines[0] and out.is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "auto", "--tier", "fast"], "unknown tier 'fast'"),
        (["--backend", "onnxruntime", "--tier", "int8"], "tier='int8' is for backend='auto'"),
        (["--backend", "auto", "--precision", "int8"], "chooses the precision itself"),
    ],
)
def test_cli_tier_errors_exit_2_with_one_line(onnx_bundle, capsys, tmp_path, extra, message):
    from bindrt import cli

    argv = ["embed", str(onnx_bundle), *extra, "--text", "a", "--out", str(tmp_path / "e.npz")]
    assert cli.main(argv) == cli.EXIT_ERROR == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
