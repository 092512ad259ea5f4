"""A small bundle to serve: the golden model (all six modalities) exported at fp32, one per test module."""

from __future__ import annotations

import pytest
from helpers import GOLDEN_DIR


@pytest.fixture(scope="module")
def serving_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the served bundle runs on the onnxruntime backend")
    from bindrt.convert import convert_checkpoint
    from bindrt.export import export_bundle

    out = tmp_path_factory.mktemp("serve") / "bundle"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", out)
    export_bundle(out, precisions=("fp32",))
    return out
