"""The ONNX Runtime backend gets the same input-range and output-finiteness guard as torch (it lives above every backend)."""

from __future__ import annotations

import numpy as np
import pytest

import bindrt
from bindrt.errors import InputError


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_huge_imu_values_are_rejected_not_embedded_as_nan(onnx_bundle, precision):
    rng = np.random.default_rng()
    batch = rng.standard_normal((2, 6, 2000)).astype(np.float32)
    with bindrt.load(onnx_bundle, "onnxruntime", precision=precision, modalities=["imu"]) as model:
        assert np.isfinite(model.encode("imu", batch)).all()
        batch[1, 3, int(rng.integers(2000))] = 1e30
        with pytest.raises(InputError, match=r"\[imu item 1\] holds a value of magnitude 1e\+30"):
            model.encode("imu", batch)
