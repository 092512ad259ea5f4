"""One ONNX export of the golden bundle, shared by every test in tests/export (it takes ~1.5 min on 2 cores)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnx", reason="ONNX export needs the onnx extras (pip install 'bindrt[onnx]')")
pytest.importorskip("onnxruntime", reason="ONNX export needs the onnx extras (pip install 'bindrt[onnx]')")

PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def _importable(module: str) -> bool:
    """Whether ``module`` imports (Model Optimizer installed without its ONNX dependencies raises ImportError)."""
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def onnx_bundle(golden_bundle, tmp_path_factory) -> Path:
    """The golden bundle with every graph: 7 kinds x fp32/fp16/bf16/int8, fused variants, raw-input graphs, and the
    NNCF int8 graphs where nncf and openvino are installed (the openvino extra), and the Model Optimizer int8/fp8
    Q/DQ graphs where it is installed (the modelopt extra)."""
    import importlib.util

    from bindrt.export import export_bundle

    out = tmp_path_factory.mktemp("onnx") / "bundle"
    shutil.copytree(golden_bundle, out)
    nncf = all(importlib.util.find_spec(name) for name in ("nncf", "openvino"))
    modelopt = _importable("modelopt.onnx.quantization")
    export_bundle(out, precisions=PRECISIONS, with_preprocessing=True, fused=True, nncf=nncf, modelopt=modelopt)
    return out


@pytest.fixture()
def small_bundle(tmp_path) -> Path:
    """A fresh golden bundle holding only depth and imu (cheap to export in error tests)."""
    from export_test_helpers import GOLDEN_DIR

    from bindrt.convert import convert_checkpoint

    out = tmp_path / "small"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", out, modalities=["depth", "imu"])
    return out
