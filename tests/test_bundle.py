"""Bundles: manifest schema, checksums, atomic writes, paths that escape."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import GOLDEN_DIR

import bindrt
from bindrt.bundle import MANIFEST, Bundle
from bindrt.convert import convert_checkpoint
from bindrt.errors import BundleError, OutputError, UnknownModalityError


@pytest.fixture()
def bundle_copy(golden_bundle, tmp_path) -> Path:
    dst = tmp_path / "b"
    shutil.copytree(golden_bundle, dst)
    return dst


def _edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    edit(manifest)
    (path / MANIFEST).write_text(json.dumps(manifest))


def test_manifest_describes_the_model(golden_bundle):
    bundle = Bundle.open(golden_bundle)
    m = bundle.manifest
    assert m["schema_version"] == 1 and m["format"] == "bindrt-bundle"
    assert bundle.config == bindrt.PRESETS["golden"]
    assert bundle.modalities == ("vision", "text", "audio", "depth", "thermal", "imu")
    assert m["modalities"]["audio"]["inputs"]["audio"] == {"shape": ["batch", "clips", 1, 128, 204], "dtype": "float32"}
    assert m["modalities"]["vision"]["inputs"]["video"]["shape"] == ["batch", "clips", 3, 2, 224, 224]
    assert m["modalities"]["text"]["inputs"]["text"] == {"shape": ["batch", 77], "dtype": "int64"}
    assert m["modalities"]["imu"]["output"] == {"shape": ["batch", 32], "dtype": "float32"}
    assert {"python", "bindrt", "torch", "safetensors"} <= set(m["producer"])
    assert m["history"][0]["stage"] == "convert" and m["history"][0]["source"] == "weights.pth"
    for rel in m["files"]:
        bundle.file(rel, verify=True)  # every checksum holds


def test_bundle_weights_are_reference_keyed_safetensors(golden_bundle):
    import torch
    from safetensors.torch import load_file

    reference = torch.load(GOLDEN_DIR / "weights.pth", weights_only=True)
    loaded = {}
    for f in sorted((golden_bundle / "weights").iterdir()):
        loaded.update(load_file(f))
    assert set(loaded) == set(reference)
    assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_convert_subset_of_modalities(tmp_path):
    bundle = convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", tmp_path / "v", modalities=["depth", "vision"])
    assert bundle.modalities == ("vision", "depth")
    assert sorted(p.name for p in (tmp_path / "v" / "weights").iterdir()) == ["depth.safetensors", "vision.safetensors"]
    with pytest.raises(UnknownModalityError, match="has no 'text' modality"):
        bundle.modality("text")
    with pytest.raises(UnknownModalityError, match="unknown modality 'smell'"):
        convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", tmp_path / "w", modalities=["smell"])


def test_interrupted_convert_leaves_nothing_that_loads(tmp_path, monkeypatch):
    import safetensors.torch

    calls = {"n": 0}
    real = safetensors.torch.save_file

    def dying_save(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-write
        return real(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []  # no partial directory left behind
    with pytest.raises(BundleError):
        Bundle.open(tmp_path / "out")


def test_existing_output_needs_overwrite(golden_bundle, tmp_path):
    out = tmp_path / "b"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", out, modalities=["imu"])
    with pytest.raises(OutputError, match="already exists"):
        convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", out)
    convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", out, modalities=["depth"], overwrite=True)
    assert Bundle.open(out).modalities == ("depth",)


def test_unwritable_output_directory_even_for_root():
    """/proc refuses new entries whatever the user, so this runs under root CI too."""
    with pytest.raises(OutputError, match="/proc"):
        convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", "/proc/bindrt-test-bundle")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_output_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", locked / "b")
    finally:
        locked.chmod(0o700)


def test_output_parent_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        convert_checkpoint(GOLDEN_DIR / "weights.pth", "golden", tmp_path / "file" / "b")


def test_corrupted_weights_file_is_detected(bundle_copy):
    path = bundle_copy / "weights" / "depth.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="depth.safetensors is corrupted or was modified"):
        bindrt.load(bundle_copy, modalities=["depth"])
    bindrt.load(bundle_copy, modalities=["audio"])  # the intact modalities still load


def test_missing_weights_file_is_detected(bundle_copy):
    (bundle_copy / "weights" / "imu.safetensors").unlink()
    with pytest.raises(BundleError, match="missing weights/imu.safetensors"):
        bindrt.load(bundle_copy, modalities=["imu"])


@pytest.mark.parametrize("evil", ["../outside.safetensors", "/etc/passwd", "weights/../../x", "C:/x", "..\\x"])
def test_manifest_paths_outside_the_bundle_are_rejected(bundle_copy, evil):
    def edit(m):
        m["files"][evil] = m["files"].pop("weights/text.safetensors")
        m["modalities"]["text"]["weights"] = evil

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match="outside the bundle directory"):
        Bundle.open(bundle_copy)


def test_symlink_escaping_the_bundle_is_not_followed(bundle_copy, tmp_path):
    secret = tmp_path / "secret.safetensors"
    shutil.copy(bundle_copy / "weights" / "text.safetensors", secret)
    (bundle_copy / "weights" / "text.safetensors").unlink()
    (bundle_copy / "weights" / "text.safetensors").symlink_to(secret)
    with pytest.raises(BundleError, match="resolves outside the bundle directory"):
        Bundle.open(bundle_copy)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda m: m.update(schema_version=99),
            "schema_version: unsupported version 99 of 'bindrt-bundle'; this bindrt reads version 1",
        ),
        (lambda m: m.update(format="something"), 'format: expected "bindrt-bundle", got "something"'),
        (lambda m: m.pop("files"), "manifest.json: files: required field is missing"),
        (lambda m: m["config"].update(vision_num_heads=7), "not divisible"),
        (lambda m: m["modalities"].update(smell={"weights": "weights/vision.safetensors"}), "unknown modality 'smell'"),
        (lambda m: m.update(schema_version=True), "schema_version: expected int, got true"),  # True == 1 in Python
        (lambda m: m.update(schema_version=1.0), "schema_version: expected int, got 1.0"),
        (
            lambda m: m["files"].update({".": _an_entry(m)}),
            r'files\["\."\]: names the bundle directory itself, expected a file',
        ),
        (lambda m: m["files"].update({"./": _an_entry(m)}), r'files\["\./"\]: names the bundle directory itself'),
        (lambda m: m["files"].update({"": _an_entry(m)}), r'files\[""\]: points outside the bundle directory'),
        (lambda m: m["files"].update({"weights/x\0": _an_entry(m)}), "contains a NUL character"),
        (
            lambda m: m["files"].update({"weights/imu.safetensors": "abc"}),
            r'files\["weights/imu.safetensors"\]: expected object, got "abc"',
        ),
        (
            lambda m: m["files"]["weights/imu.safetensors"].update(bytes=-1),
            r'files\["weights/imu.safetensors"\].bytes: expected int >= 0, got -1',
        ),
        (lambda m: m["files"]["weights/imu.safetensors"].update(bytes=True), r"\.bytes: expected int, got true"),
        (lambda m: m["files"]["weights/imu.safetensors"].update(bytes="12"), r'\.bytes: expected int, got "12"'),
        (
            lambda m: m["files"]["weights/imu.safetensors"].update(sha256="xyz"),
            r'\.sha256: expected 64 lower-case hex digits, got "xyz"',
        ),
        (
            lambda m: m["files"]["weights/imu.safetensors"].pop("sha256"),
            r'files\["weights/imu.safetensors"\]\.sha256: required field is missing',
        ),
        (
            lambda m: m["modalities"]["imu"].update(weights=["weights/imu.safetensors"]),
            r'modalities\.imu\.weights: expected str, got \["weights/imu\.safetensors"\]',
        ),
        (
            lambda m: m["modalities"]["imu"].update(weights="weights/other.safetensors"),
            'modalities.imu.weights: "weights/other.safetensors" is not listed under files',
        ),
        (
            lambda m: (
                m["files"].update({"notes.txt": _an_entry(m)}),
                m["modalities"]["imu"].update(weights="notes.txt"),
            ),
            'modalities.imu.weights: expected a .safetensors file, got "notes.txt"',
        ),
        (
            lambda m: m["modalities"].update(imu="weights/imu.safetensors"),
            'modalities.imu: expected object, got "weights/imu.safetensors"',
        ),
        (lambda m: m["modalities"]["imu"].pop("output"), "modalities.imu.output: required field is missing"),
        (
            lambda m: m["modalities"]["imu"].update(artifacts=[]),
            r"modalities\.imu\.artifacts: expected object, got \[\]",
        ),
    ],
)
def test_invalid_manifests(bundle_copy, edit, message):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        Bundle.open(bundle_copy)


def _an_entry(manifest: dict) -> dict:
    return dict(manifest["files"]["weights/imu.safetensors"])


@pytest.mark.parametrize("key", [1, None])
def test_non_string_keys_in_an_in_memory_manifest(bundle_copy, key):
    """JSON keys are strings, but ``Bundle.save`` validates manifests built in code too."""
    bundle = Bundle.open(bundle_copy)
    bundle.manifest["files"][key] = _an_entry(bundle.manifest)
    with pytest.raises(BundleError, match=f"files: key {key!r} is a {type(key).__name__}, expected a string"):
        bundle.save()


def test_manifest_symlinked_out_of_the_bundle_is_not_read(bundle_copy, tmp_path):
    outside = tmp_path / "elsewhere.json"
    (bundle_copy / MANIFEST).rename(outside)
    (bundle_copy / MANIFEST).symlink_to(outside)
    with pytest.raises(BundleError, match="'manifest.json' resolves outside the bundle directory"):
        Bundle.open(bundle_copy)


def test_manifest_that_is_a_directory(bundle_copy):
    (bundle_copy / MANIFEST).unlink()
    (bundle_copy / MANIFEST).mkdir()
    with pytest.raises(BundleError, match="manifest.json is not a regular file"):
        Bundle.open(bundle_copy)


def test_listed_file_that_is_a_directory(bundle_copy):
    def edit(m):
        m["files"]["weights/extra.safetensors"] = m["files"]["weights/imu.safetensors"]
        m["modalities"]["imu"]["weights"] = "weights/extra.safetensors"

    _edit_manifest(bundle_copy, edit)
    (bundle_copy / "weights" / "extra.safetensors").mkdir()
    with pytest.raises(
        BundleError, match="weights/extra.safetensors .listed in manifest.json. is a directory, expected a file"
    ):
        bindrt.load(bundle_copy, modalities=["imu"])


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no manifest.json"):
        Bundle.open(tmp_path)
    (tmp_path / MANIFEST).write_text("{ nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        Bundle.open(tmp_path)


def test_bundle_embeddings_equal_checkpoint_embeddings(golden_bundle, golden):
    a = bindrt.load(golden_bundle, modalities=["thermal"]).encode("thermal", golden["in_thermal"])
    b = bindrt.load(GOLDEN_DIR / "weights.pth", config="golden", modalities=["thermal"]).encode(
        "thermal", golden["in_thermal"]
    )
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- weights that pass their checksum
def _rewrite_weights(bundle: Path, modality: str, edit) -> None:
    """Edit one modality's tensors and re-list the file, so only the content checks can catch it."""
    from safetensors.torch import load_file, save_file

    path = bundle / "weights" / f"{modality}.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, str(path))
    _relist(bundle, f"weights/{modality}.safetensors")


def _relist(bundle: Path, rel: str) -> None:
    from bindrt.fileio import sha256_file

    full = bundle / rel
    _edit_manifest(
        bundle, lambda m: m["files"].update({rel: {"sha256": sha256_file(full), "bytes": full.stat().st_size}})
    )


def test_weights_with_a_renamed_tensor(bundle_copy):
    key = "modality_heads.depth.2.weight"
    _rewrite_weights(bundle_copy, "depth", lambda t: t.update({"modality_heads.depth.9.weight": t.pop(key)}))
    with pytest.raises(
        BundleError,
        match=r"weights/depth\.safetensors: .*missing keys \(1\): modality_heads\.depth\.2\.weight; "
        r"unexpected keys \(1\): modality_heads\.depth\.9\.weight",
    ):
        bindrt.load(bundle_copy, modalities=["depth"])


def test_weights_with_a_reshaped_tensor(bundle_copy):
    key = "modality_heads.depth.2.weight"
    _rewrite_weights(bundle_copy, "depth", lambda t: t.update({key: t[key][:-1].clone()}))
    with pytest.raises(
        BundleError,
        match=r"shape mismatches \(1\): modality_heads\.depth\.2\.weight: checkpoint \(31, 32\) vs expected \(32, 32\)",
    ):
        Bundle.open(bundle_copy).load_weights("depth")


def test_weights_with_a_missing_tensor(bundle_copy):
    _rewrite_weights(bundle_copy, "imu", lambda t: t.pop("modality_postprocessors.imu.1.log_logit_scale"))
    with pytest.raises(BundleError, match=r"missing keys \(1\): modality_postprocessors\.imu\.1\.log_logit_scale"):
        bindrt.load(bundle_copy, modalities=["imu"])


@pytest.mark.parametrize(
    "modality, key, value",
    [
        ("thermal", "modality_trunks.thermal.blocks.0.attn.in_proj_weight", float("nan")),
        ("thermal", "modality_trunks.thermal.blocks.0.attn.in_proj_weight", float("inf")),
        ("thermal", "modality_trunks.thermal.blocks.0.attn.in_proj_weight", -float("inf")),
        ("imu", "modality_postprocessors.imu.1.log_logit_scale", float("nan")),  # a buffer
        ("text", "modality_preprocessors.text.mask", float("nan")),  # a buffer that is -inf above the diagonal
    ],
)
def test_weights_holding_nan_or_inf(bundle_copy, modality, key, value):
    def poison(tensors):
        tensors[key].view(-1)[-1] = value

    _rewrite_weights(bundle_copy, modality, poison)
    with pytest.raises(
        BundleError, match=rf"weights/{modality}\.safetensors: tensor\(s\) {key} hold NaN or Inf values"
    ):
        bindrt.load(bundle_copy, modalities=[modality])


@pytest.mark.parametrize("damage", ["header", "truncated", "empty"])
def test_corrupt_safetensors_file(bundle_copy, damage):
    path = bundle_copy / "weights" / "imu.safetensors"
    data = path.read_bytes()
    path.write_bytes(
        {"header": data[:8] + b"{not json" + data[17:], "truncated": data[: len(data) // 2], "empty": b""}[damage]
    )
    _relist(bundle_copy, "weights/imu.safetensors")
    with pytest.raises(BundleError, match=r"weights/imu\.safetensors is not a valid safetensors file: "):
        bindrt.load(bundle_copy, modalities=["imu"])
