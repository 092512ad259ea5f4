"""The ONNX Runtime backend under hostile use: the input-range guard (it lives above every backend), typed options."""

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


@pytest.mark.parametrize(
    "options, message",
    [
        ({"intra_op_num_threads": "x"}, "intra_op_num_threads='x' is invalid; expected int"),
        ({"intra_op_num_threads": -1}, "intra_op_num_threads=-1 is invalid; expected int >= 0"),
        ({"inter_op_num_threads": 2.5}, "inter_op_num_threads=2.5 is invalid"),
        ({"session_config": ["a"]}, "session_config=\\['a'\\] is invalid; expected dict"),
    ],
)
def test_wrong_option_types_are_config_errors(onnx_bundle, options, message):
    from bindrt.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        bindrt.load(onnx_bundle, "onnxruntime", modalities=["imu"], **options)


def test_the_full_export_validates_against_the_shipped_json_schema(onnx_bundle):
    """Every graph kind, precision and variant the exporter writes is described by bindrt/manifest.schema.json."""
    import json

    jsonschema = pytest.importorskip(
        "jsonschema", reason="the JSON Schema check needs jsonschema (pip install 'bindrt[dev]')"
    )
    from bindrt.bundle import Bundle
    from bindrt.schema import SCHEMA_FILE

    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(manifest)
    record = Bundle.open(onnx_bundle).record
    assert record.to_dict() == manifest  # the typed records hold every field the exporter wrote
