"""Bundles written by earlier bindrt keep opening, verifying and embedding like the reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import row_relative_error

import bindrt
from bindrt.bundle import Bundle

OLD_BUNDLE = Path(__file__).parent / "data" / "bundle-64f1869"


@pytest.fixture()
def old_bundle(tmp_path) -> Path:
    """A copy, so no test can modify the committed fixture."""
    return Path(shutil.copytree(OLD_BUNDLE, tmp_path / "bundle"))


def test_old_bundle_opens_and_verifies(old_bundle):
    bundle = Bundle.open(old_bundle)
    assert bundle.modalities == ("depth", "imu")
    for rel in bundle.manifest["files"]:
        bundle.file(rel, verify=True)


@pytest.mark.parametrize(
    "backend, precision, tolerance",
    [("torch", "fp32", 1e-5), ("onnxruntime", "fp32", 1e-5), ("onnxruntime", "int8", None)],
)
def test_old_bundle_embeds_like_the_reference(old_bundle, golden, backend, precision, tolerance):
    pytest.importorskip("onnxruntime") if backend == "onnxruntime" else None
    with bindrt.load(old_bundle, backend, precision=precision) as model:
        for kind in ("depth", "imu"):
            out = model.encode(kind, golden[f"in_{kind}"])
            if tolerance is None:  # int8: the export's own tolerance, min cosine >= 0.98
                cos = (
                    (out * golden[f"emb_{kind}"]).sum(1)
                    / np.linalg.norm(out, axis=1)
                    / np.linalg.norm(golden[f"emb_{kind}"], axis=1)
                )
                assert cos.min() >= 0.98, (kind, cos)
            else:
                assert row_relative_error(out, golden[f"emb_{kind}"]) <= tolerance, kind
