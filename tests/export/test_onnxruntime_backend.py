"""``bindrt.load(bundle, backend="onnxruntime")``: same embeddings as the torch backend, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from export_test_helpers import GOLDEN_INPUTS, KINDS, MEDIA_DIR, NO_TORCH, min_cosine, row_relative_error

import bindrt
from bindrt.errors import BackendError, InputError

BOUNDS = {"fp16": 0.999, "int8": 0.98}


@pytest.mark.parametrize("variant", ["plain", "fused"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_encode_golden_inputs(onnx_bundle, golden, precision, variant):
    if precision == "fp16" and variant == "fused":
        pytest.skip("fused variants are exported for fp32 and int8 (fp16 is the GPU/TensorRT graph)")
    model = bindrt.load(
        onnx_bundle, backend="onnxruntime", precision=precision, variant=variant, intra_op_num_threads=2, batch_size=5
    )
    for kind in KINDS:
        out = model.encode(kind, golden[GOLDEN_INPUTS[kind]])
        ref = golden[f"emb_{kind}"]
        if precision == "fp32":
            assert row_relative_error(out, ref) <= 1e-5, kind
        else:
            assert min_cosine(out, ref) >= BOUNDS[precision], kind
    info = model.backend.describe()
    assert info["backend"] == "onnxruntime" and info["graphs"]["video"]["variant"] == variant


def test_fused_variant_needs_fused_export(onnx_bundle):
    with pytest.raises(BackendError, match="--fused"):
        bindrt.load(onnx_bundle, backend="onnxruntime", precision="fp16", variant="fused", modalities=["imu"])


def test_raw_input_graphs_through_the_backend(onnx_bundle, golden):
    model = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["vision", "audio"], preprocessing=True)
    waves = np.random.default_rng(0).standard_normal((2, 3, 32000)).astype(np.float32) * 0.1
    from bindrt.preprocess.audio import waveform_to_melspec

    feats = np.stack([np.stack([waveform_to_melspec(c[None]) for c in item]) for item in waves])
    a = model.encode("audio_waveform", waves)  # through the Embedder: validated and split like every kind
    b = model.encode("audio", feats)
    assert min_cosine(a, b) >= 0.9999
    assert min_cosine(model.encode("audio_waveform", waves[:1]), a[:1]) >= 0.9999
    with pytest.raises(InputError, match=r"\[audio_waveform item 1\] contains NaN"):
        model.encode("audio_waveform", np.where(np.arange(2)[:, None, None] == 1, np.nan, waves).astype(np.float32))
    images = np.random.default_rng(1).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    small = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["vision"], preprocessing=True, batch_size=2)
    assert small.encode("vision_uint8", images).shape == (3, 32)  # split into batches of 2 and 1
    with pytest.raises(InputError, match="expected uint8"):
        small.encode("vision_uint8", images.astype(np.float32))
    plain = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["audio"])
    with pytest.raises(BackendError, match="preprocessing=True"):
        plain.encode("audio_waveform", waves)


def test_device_buffer_reads_cuda_array_interface_and_dlpack():
    from bindrt.runtime.onnxruntime_backend import device_buffer

    class FakeCuda:
        __cuda_array_interface__ = {
            "shape": (2, 3),
            "typestr": "<f4",
            "data": (1234, False),
            "version": 3,
            "strides": None,
        }

    ptr, shape, dtype, _ = device_buffer(FakeCuda())
    assert (ptr, shape, dtype) == (1234, (2, 3), np.float32)
    assert device_buffer(np.zeros(3, np.float32)) is None  # host DLPack (numpy): copied, not bound


def test_io_binding_path_on_cpu(onnx_bundle, golden):
    """The IO-binding code path used on CUDA, exercised with host buffers (no GPU here)."""
    model = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], io_binding=True)
    assert model.backend.io_binding
    out = model.encode("imu", golden["in_imu"])
    assert row_relative_error(out, golden["emb_imu"]) <= 1e-5
    backend = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], io_binding=True).backend
    value = backend.run_on_device("imu", golden["in_imu"])  # the OrtValue, left where ONNX Runtime put it
    assert row_relative_error(value.numpy(), golden["emb_imu"]) <= 1e-5
    assert isinstance(backend.run("imu", golden["in_imu"]), np.ndarray)  # run itself always returns numpy
    with pytest.raises(BackendError, match="run_on_device needs IO binding"):
        bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"]).backend.run_on_device(
            "imu", golden["in_imu"]
        )


@pytest.mark.parametrize("io_binding", [False, True])
def test_runtime_failure_is_a_backend_error_naming_the_graph(onnx_bundle, io_binding):
    """``Backend.run`` takes validated batches; should ONNX Runtime still fail, the error names the graph."""
    model = bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], io_binding=io_binding)
    wrong = np.zeros((1, 6, 1999), np.float32)  # bypasses the Embedder's shape check
    with pytest.raises(
        BackendError,
        match=r"ONNX Runtime failed running onnx/imu/imu\.fp32(\.fused)?\.onnx \(imu, fp32\) on cpu: "
        r".*invalid dimensions for input: imu",
    ) as info:
        model.backend.run("imu", wrong)
    assert info.value.__cause__ is not None  # ONNX Runtime's own exception, chained for debugging


def test_unknown_options_and_devices(onnx_bundle):
    with pytest.raises(BackendError, match="unknown option"):
        bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], bogus=1)
    with pytest.raises(BackendError, match="tpu"):
        bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], device="tpu")
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="onnxruntime-gpu"):
            bindrt.load(onnx_bundle, backend="onnxruntime", modalities=["imu"], device="cuda")


TORCH_FREE = NO_TORCH + textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import bindrt

    bundle, golden_path, media, out = sys.argv[1:5]
    golden = dict(np.load(golden_path))
    inputs = {"vision": "pre_vision", "text": "pre_text", "audio": "pre_audio", "depth": "in_depth",
              "thermal": "in_thermal", "imu": "in_imu", "video": "in_video"}
    model = bindrt.load(bundle, backend="onnxruntime", intra_op_num_threads=2)
    errors = {}
    for kind, key in inputs.items():
        emb = model.encode(kind, golden[key])
        ref = golden["emb_" + kind]
        errors[kind] = float((np.abs(emb - ref).max(-1) / np.linalg.norm(ref, axis=-1)).max())
    raw = model.embed(vision=[media + "/logo.png", media + "/photo.jpg"], audio=[media + "/tone16k.wav"],
                      text=["a dog barking", "A photo of a car."])
    np.savez(out, **raw)
    print(json.dumps({"errors": errors, "torch_loaded": any(m == "torch" or m.startswith("torch.") for m in sys.modules)}))
    """
)


def test_runs_without_torch(onnx_bundle, tmp_path):
    from export_test_helpers import GOLDEN_DIR

    script = tmp_path / "no_torch.py"
    script.write_text(TORCH_FREE)
    out = tmp_path / "raw.npz"
    proc = subprocess.run(
        [sys.executable, str(script), str(onnx_bundle), str(GOLDEN_DIR / "golden.npz"), str(MEDIA_DIR), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not result["torch_loaded"]
    for kind, err in result["errors"].items():
        assert err <= 1e-5, kind
    # raw media through Embedder.embed: the same embeddings as the torch backend
    torch_model = bindrt.load(onnx_bundle, backend="torch")
    want = torch_model.embed(
        vision=[str(MEDIA_DIR / "logo.png"), str(MEDIA_DIR / "photo.jpg")],
        audio=[str(MEDIA_DIR / "tone16k.wav")],
        text=["a dog barking", "A photo of a car."],
    )
    got = dict(np.load(out))
    for kind in ("vision", "audio", "text"):
        assert row_relative_error(got[kind], want[kind]) <= 1e-5, kind
