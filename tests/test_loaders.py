"""The loader layer: sessions and encoders built only when called, with exactly the options asked for."""

from __future__ import annotations

import numpy as np
import pytest

from bindrt.errors import ConfigError
from bindrt.loaders import EncodersFromSource, OrtSessionOptions, SessionFromOnnx


def _tiny_graph() -> bytes:
    from onnx import TensorProto, helper

    node = helper.make_node("Mul", ["x", "x"], ["y"])
    graph = helper.make_graph(
        [node],
        "square",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def test_session_is_built_lazily_with_the_options(tmp_path):
    pytest.importorskip("onnxruntime")
    calls = []

    def graph() -> bytes:
        calls.append(1)
        return _tiny_graph()

    loader = SessionFromOnnx(
        graph,
        OrtSessionOptions(
            intra_op_num_threads=1, optimization_level="basic", config={"session.intra_op.allow_spinning": "0"}
        ),
    )
    assert calls == []  # nothing is built until the loader is called
    session = loader()
    options = session.get_session_options()
    assert calls == [1] and options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    x = np.random.default_rng().standard_normal(5).astype(np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], x * x, rtol=1e-6)
    path = tmp_path / "square.onnx"
    path.write_bytes(_tiny_graph())
    assert SessionFromOnnx(path)().get_inputs()[0].name == "x"  # a path works the same


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"intra_op_num_threads": "2"}, "intra_op_num_threads='2' is invalid"),
        ({"inter_op_num_threads": -1}, "inter_op_num_threads=-1 is invalid"),
        ({"optimization_level": "max"}, "unknown graph_optimization_level 'max'"),
        ({"config": [("a", "b")]}, "session_config="),
    ],
)
def test_bad_session_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        OrtSessionOptions(**kwargs)


def test_encoders_loader_reads_only_the_requested_towers(golden_bundle, golden):
    from helpers import row_relative_error

    from bindrt.bundle import Bundle
    from bindrt.runtime.base import ModelSource

    bundle = Bundle.open(golden_bundle)
    encoders = EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), ("imu",))()
    assert list(encoders) == ["imu"]
    import torch

    with torch.inference_mode():
        out = encoders["imu"](torch.from_numpy(golden["in_imu"])).numpy()
    assert row_relative_error(out, golden["emb_imu"]) <= 1e-5
