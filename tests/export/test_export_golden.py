"""Every golden encoder exported to ONNX, checked against the *reference* embeddings (golden.npz)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from export_test_helpers import (
    GOLDEN_INPUTS,
    KINDS,
    MEDIA_DIR,
    MODALITY,
    batch_of,
    min_cosine,
    row_relative_error,
    session,
)

import bindrt
from bindrt.bundle import Bundle
from bindrt.export import export_bundle
from bindrt.export.spec import graph_records


@pytest.fixture(scope="module")
def records(onnx_bundle):
    bundle = Bundle.open(onnx_bundle)
    return {m: graph_records(bundle.modality(m)) for m in bundle.modalities}


def graph_path(onnx_bundle, kind, key):
    bundle = Bundle.open(onnx_bundle)
    rec = graph_records(bundle.modality(MODALITY.get(kind, kind)))[key]
    return bundle.file(rec["file"], verify=True)


def test_every_kind_and_precision_is_recorded(records):
    for kind in KINDS:
        have = records[MODALITY[kind]]
        for key in (
            f"{kind}.fp32",
            f"{kind}.fp16",
            f"{kind}.bf16",
            f"{kind}.int8",
            f"{kind}.fp32.fused",
            f"{kind}.int8.fused",
        ):
            assert key in have, key
            rec = have[key]
            assert rec["validation"]["passed"], key
            assert rec["opset"] == 18 and rec["outputs"][0]["name"] == "embedding"
            assert rec["outputs"][0]["shape"] == ["batch", 32] and rec["outputs"][0]["dtype"] == "float32"
            want = ["batch", "clips"] if kind in ("audio", "video") else ["batch"]
            assert rec["inputs"][0]["shape"][: len(want)] == want, key
            assert rec["inputs"][0]["dtype"] == ("int64" if kind == "text" else "float32")
            assert set(rec["validation"]["suites"]) == {"random", "real"}
            assert {"batch_1", "batch_5"} <= set(rec["validation"]["suites"]["real"])
    assert "audio_waveform.fp32" in records["audio"] and "vision_uint8.fp32" in records["vision"]


def test_manifest_lists_checksums_and_files_verify(onnx_bundle, records):
    bundle = Bundle.open(onnx_bundle)
    for m, recs in records.items():
        for rec in recs.values():
            assert rec["file"] in bundle.manifest["files"]
            bundle.file(rec["file"], verify=True)
    text = records["text"]["text.fp32"]["preprocessing"]
    assert (
        text["sot_token"] == 49406
        and text["eot_token"] == 49407
        and text["context_length"] == 77
        and text["pad_token"] == 0
    )
    bundle.file(text["vocab_file"], verify=True)
    assert bundle.manifest["history"][-1]["stage"] == "export"


@pytest.mark.parametrize("variant", ["", ".fused"])
@pytest.mark.parametrize("kind", KINDS)
def test_fp32_matches_reference_embeddings_at_batch_1_and_5(onnx_bundle, golden, kind, variant):
    sess = session(graph_path(onnx_bundle, kind, f"{kind}.fp32{variant}"))
    x, ref = golden[GOLDEN_INPUTS[kind]], golden[f"emb_{kind}"]
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: x})[0]
    assert row_relative_error(out, ref) <= 1e-5
    five = sess.run(None, {name: batch_of(x, 5)})[0]
    assert five.shape == (5, 32)
    assert row_relative_error(five, batch_of(ref, 5)) <= 1e-5
    one = sess.run(None, {name: x[:1]})[0]
    assert row_relative_error(one, ref[:1]) <= 1e-5


@pytest.mark.parametrize("precision,bound", [("fp16", 0.999), ("int8", 0.98)])
@pytest.mark.parametrize("kind", KINDS)
def test_reduced_precisions_meet_cosine_tolerance(onnx_bundle, golden, kind, precision, bound):
    sess = session(graph_path(onnx_bundle, kind, f"{kind}.{precision}"))
    x, ref = golden[GOLDEN_INPUTS[kind]], golden[f"emb_{kind}"]
    name = sess.get_inputs()[0].name
    assert min_cosine(sess.run(None, {name: batch_of(x, 5)})[0], batch_of(ref, 5)) >= bound
    assert min_cosine(sess.run(None, {name: x[:1]})[0], ref[:1]) >= bound


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_graphs_meet_near_exact_against_the_reference_in_emulation(onnx_bundle, golden, kind):
    """bf16 graphs run where bf16 kernels exist (TensorRT); here through the fp32 emulation that validates them."""
    from bindrt.export.validate import emulated_bf16_session

    sess = emulated_bf16_session(str(graph_path(onnx_bundle, kind, f"{kind}.bf16")))
    x, ref = golden[GOLDEN_INPUTS[kind]], golden[f"emb_{kind}"]
    name = sess.get_inputs()[0].name
    five = sess.run(None, {name: batch_of(x, 5)})[0]
    assert min_cosine(five, batch_of(ref, 5)) >= 0.999
    assert min_cosine(sess.run(None, {name: x[:1]})[0], ref[:1]) >= 0.999
    assert row_relative_error(five, batch_of(ref, 5)) > 1e-4  # bf16 rounding shows: not the fp32 graph


def test_bf16_graph_types_matmuls_bf16_and_keeps_stems_and_statistics_fp32(onnx_bundle, records):
    from bindrt.export.fp16 import check_strongly_typed

    model = onnx.load(str(graph_path(onnx_bundle, "depth", "depth.bf16")))
    assert check_strongly_typed(model) == []
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*inferred.graph.value_info, *inferred.graph.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    bf16, fp32 = onnx.TensorProto.BFLOAT16, onnx.TensorProto.FLOAT
    for node in model.graph.node:
        float_inputs = {types[i] for i in node.input if i and types.get(i) in (fp32, bf16, onnx.TensorProto.FLOAT16)}
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceL2", "Conv"):  # Conv: no bf16 before opset 22
            assert float_inputs == {fp32}, node.name
        if node.op_type == "MatMul":
            assert float_inputs == {bf16}, node.name
    summary = records["depth"]["depth.bf16"]["bf16"]
    assert summary["low_dtype"] == "bfloat16" and "Conv" in summary["fp32_ops"] and summary["low_nodes"] > 0
    assert records["depth"]["depth.bf16"]["validation"]["runtime"]["emulation"].startswith("bf16 in fp32")


@pytest.mark.parametrize("kind,clips", [("audio", 1), ("video", 1), ("video", 3)])
def test_clip_axis_is_dynamic_and_averaged_in_graph(onnx_bundle, golden, kind, clips):
    import torch

    from bindrt.model import load_encoder

    bundle = Bundle.open(onnx_bundle)
    m = MODALITY[kind]
    encoder = load_encoder(m, bundle.config, bundle.load_weights(m))
    x = golden[GOLDEN_INPUTS[kind]]
    x = x[:, :clips] if clips <= x.shape[1] else np.concatenate([x, x[:, : clips - x.shape[1]]], axis=1)
    with torch.inference_mode():
        ref = encoder(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    sess = session(graph_path(onnx_bundle, kind, f"{kind}.fp32"))
    out = sess.run(None, {kind: np.ascontiguousarray(x)})[0]
    assert row_relative_error(out, ref) <= 1e-5


def test_graphs_pass_checker_and_shape_inference(onnx_bundle, records):
    for m, recs in records.items():
        for key in (k for k in recs if k.endswith(("fp32", "fp16", "int8"))):
            path = str(graph_path(onnx_bundle, m, key))
            onnx.checker.check_model(path, full_check=True)
            inferred = onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)
            assert inferred.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_fp16_graph_is_strongly_typed_with_fp32_islands(onnx_bundle):
    from bindrt.export.fp16 import check_strongly_typed

    model = onnx.load(str(graph_path(onnx_bundle, "audio", "audio.fp16")))
    assert check_strongly_typed(model) == []
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*inferred.graph.value_info, *inferred.graph.input)}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    ops = {n.op_type for n in model.graph.node}
    assert "Cast" in ops
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    for node in model.graph.node:
        float_inputs = [types[i] for i in node.input if i and types.get(i) in floats]
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceL2"):
            assert float_inputs and set(float_inputs) == {onnx.TensorProto.FLOAT}, node.name
        if node.op_type == "MatMul":
            assert float_inputs and set(float_inputs) == {onnx.TensorProto.FLOAT16}, node.name


def test_fused_graphs_record_their_fusions(records, onnx_bundle):
    for m, recs in records.items():
        assert recs[f"{m}.fp32.fused"]["pooled_last_block"] is True
        stats = recs[f"{m}.fp32.fused"]["fusions"]["fused_operator_statistics"]
        # golden trunks have 2 blocks: the first fuses its attention; the last attends from the pooled row only
        assert stats["Attention"] == 1, m
        assert stats.get("BiasGelu", 0) + stats.get("Gelu", 0) + stats.get("FastGelu", 0) == 2, m
        model = onnx.load(str(graph_path(onnx_bundle, m, f"{m}.fp32.fused")))
        assert sum(n.op_type == "Attention" and n.domain == "com.microsoft" for n in model.graph.node) == 1
        int8 = onnx.load(str(graph_path(onnx_bundle, m, f"{m}.int8.fused")))
        assert sum(n.op_type == "QAttention" for n in int8.graph.node) == 1, m
    assert records["audio"]["audio.int8"]["quantization"]["method"] == "dynamic"


def test_waveform_graph_matches_python_fbank_path(onnx_bundle):
    """Raw golden media through the in-graph Kaldi fbank vs the numpy fbank + the fp32 features graph."""
    from bindrt.preprocess.audio import load_audio, resample, sample_clips, waveform_to_melspec

    raw, features = [], []
    for name in ("tone16k.wav", "stereo22k.wav"):
        wav, sr = load_audio(str(MEDIA_DIR / name))
        wav = resample(wav, sr, 16000) if sr != 16000 else wav
        mono = wav[0]
        clips = [mono[s:e] for s, e in sample_clips(mono.size, 16000)]
        n = min(c.size for c in clips)
        clips = [np.ascontiguousarray(c[:n]) for c in clips]
        raw.append(np.stack(clips))
        features.append(np.stack([waveform_to_melspec(c[None]) for c in clips]))
    raw, features = np.stack(raw).astype(np.float32), np.stack(features).astype(np.float32)
    wave_sess = session(graph_path(onnx_bundle, "audio", "audio_waveform.fp32"))
    feat_sess = session(graph_path(onnx_bundle, "audio", "audio.fp32"))
    a = wave_sess.run(None, {"audio_waveform": raw})[0]
    b = feat_sess.run(None, {"audio": features})[0]
    assert min_cosine(a, b) >= 0.9999


@pytest.mark.parametrize("seconds", [1.0, 2.0, 2.5])
def test_in_graph_fbank_features_match_numpy(seconds):
    """The preprocessing subgraph alone: shorter clips pad to 204 frames, longer ones are cut."""
    import onnxruntime as ort

    from bindrt.export.preprocessing import audio_waveform_graph
    from bindrt.preprocess.audio import waveform_to_melspec

    model = audio_waveform_graph("features", opset=18, ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    t = np.arange(int(16000 * seconds)) / 16000
    clips = np.stack(
        [0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size), 0.2 * rng.standard_normal(t.size)]
    )
    clips = clips.astype(np.float32)[None]
    got = sess.run(None, {"audio_waveform": clips})[0]
    want = np.stack([waveform_to_melspec(c[None]) for c in clips[0]])[None]
    assert got.shape == want.shape == (1, 2, 1, 128, 204)
    assert np.abs(got - want).max() < 2e-3  # float32 DFT-by-MatMul vs numpy's FFT, after log and /9.138


def test_uint8_vision_graph_matches_python_preprocessing(onnx_bundle, golden):
    from PIL import Image

    from bindrt.preprocess.image import center_crop, preprocess_images, resize_short_side

    imgs = [
        np.asarray(
            center_crop(resize_short_side(Image.open(MEDIA_DIR / n).convert("RGB"), 224, Image.Resampling.BICUBIC), 224)
        )
        for n in ("logo.png", "photo.jpg")
    ]
    x = np.stack(imgs)
    pre = preprocess_images(list(x))
    np.testing.assert_allclose(pre, golden["pre_vision"], atol=1e-6)  # the crop of a 224 crop is itself
    out = session(graph_path(onnx_bundle, "vision", "vision_uint8.fp32")).run(None, {"vision_uint8": x})[0]
    assert row_relative_error(out, golden["emb_vision"]) <= 1e-5


def test_validate_command_rechecks_and_records(onnx_bundle):
    from bindrt.cli import main

    assert main(["validate", str(onnx_bundle), "--modalities", "imu", "--precision", "fp32,int8", "--json"]) == 0
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    assert manifest["history"][-1]["stage"] == "validate" and manifest["history"][-1]["passed"]
    assert "imu/imu.int8" in manifest["history"][-1]["graphs"]


def test_cli_help_describes_commands(capsys):
    from bindrt.cli import main

    for cmd in ("export", "validate"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "ONNX" in out and "BUNDLE" in out.upper()


def test_full_last_block_export_is_the_reference_trace_and_agrees(small_bundle, golden):
    """--full-last-block traces every token of the last block (the reference forward as is): one more fused
    Attention, more MatMul work, and the same embeddings as the default pooled-row graph and the reference."""
    from bindrt.cli import main

    pooled = export_bundle(small_bundle, modalities=["depth"], precisions="fp32", fused=True)
    pooled_out = bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"], variant="fused").encode(
        "depth", golden["in_depth"]
    )
    assert main(["export", str(small_bundle), "--modalities", "depth", "--fused", "--full-last-block"]) == 0
    rec = graph_records(Bundle.open(small_bundle).modality("depth"))
    assert rec["depth.fp32.fused"]["pooled_last_block"] is False
    assert rec["depth.fp32.fused"]["fusions"]["fused_operator_statistics"]["Attention"] == 2
    assert pooled["depth/depth.fp32.fused"]["fusions"]["fused_operator_statistics"]["Attention"] == 1
    full_out = bindrt.load(small_bundle, backend="onnxruntime", modalities=["depth"], variant="fused").encode(
        "depth", golden["in_depth"]
    )
    bound = 1e-5 * np.linalg.norm(golden["emb_depth"], axis=-1).min()
    assert np.abs(full_out - golden["emb_depth"]).max() <= bound
    assert np.abs(pooled_out - golden["emb_depth"]).max() <= bound


@pytest.mark.parametrize("kind", KINDS)
def test_int8_batch_dependence_is_as_recorded_and_bounded(onnx_bundle, golden, records, kind):
    """Dynamic int8 measures activation ranges over the whole batch: the manifest must say so, and
    batch-mates far larger than the item must not push it outside the int8 tolerance."""
    rec = records[MODALITY[kind]][f"{kind}.int8"]
    sess = session(graph_path(onnx_bundle, kind, f"{kind}.int8"))
    x, ref = golden[GOLDEN_INPUTS[kind]][:1], golden[f"emb_{kind}"][:1]
    rng = np.random.default_rng()
    if np.issubdtype(x.dtype, np.integer):  # token ids: random tokens, same length
        mates = rng.integers(1, int(golden[GOLDEN_INPUTS[kind]].max()) + 1, size=(4, *x.shape[1:])).astype(x.dtype)
    else:
        mates = (4.0 * np.abs(x).max() * rng.standard_normal((4, *x.shape[1:]))).astype(x.dtype)
    name = sess.get_inputs()[0].name
    alone = sess.run(None, {name: x})[0]
    batched = sess.run(None, {name: np.concatenate([mates[:2], x, mates[2:]])})[0][2:3]
    assert rec["quantization"]["batch_invariant"] is bool(np.array_equal(alone, batched))
    assert min_cosine(batched, ref) >= 0.98
    assert min_cosine(alone, ref) >= 0.98


def test_int8_keeps_raw_signal_stem_fp32(onnx_bundle, records):
    """IMU's Linear stem reads the raw signal: quantizing it per batch would let one loud item coarsen the rest."""
    for key in ("imu.int8", "imu.int8.fused"):
        nodes = list(onnx.load(str(graph_path(onnx_bundle, "imu", key))).graph.node)
        first_norm = next(i for i, n in enumerate(nodes) if n.op_type == "LayerNormalization")
        before = {n.op_type for n in nodes[:first_norm]}
        assert "MatMul" in before and not before & {
            "DynamicQuantizeMatMul",
            "MatMulInteger",
            "DynamicQuantizeLinear",
        }, key
        assert records["imu"][key]["quantization"]["kept_fp32"], key
        after = {n.op_type for n in nodes[first_norm:]}
        assert "DynamicQuantizeMatMul" in after or "MatMulInteger" in after, key
    assert records["depth"]["depth.int8"]["quantization"]["kept_fp32"] == []  # Conv stem: nothing to keep


def test_int8_fused_gelu_bias_is_folded_into_the_quantized_matmul(onnx_bundle, records, tmp_path):
    """The int8 fused graphs hand GELU's bias to ONNX Runtime as an Add; its load-time fusion must
    fold it into DynamicQuantizeMatMul, or the split would only add a pass over the activation."""
    import onnxruntime as ort

    assert records["depth"]["depth.int8.fused"]["fusions"]["fused_operator_statistics"]["Gelu"] == 2
    path = graph_path(onnx_bundle, "depth", "depth.int8.fused")
    nodes = list(onnx.load(str(path)).graph.node)
    gelus = [n for n in nodes if n.op_type == "Gelu" and n.domain == "com.microsoft"]
    assert len(gelus) == 2 and not any(n.op_type in ("BiasGelu", "FastGelu") for n in nodes)
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    producers = {out: n for n in optimized.graph.node for out in n.output}
    for gelu in (n for n in optimized.graph.node if n.op_type == "Gelu"):
        producer = producers[gelu.input[0]]
        assert producer.op_type == "DynamicQuantizeMatMul" and len(producer.input) >= 5 and producer.input[4], (
            producer.op_type
        )
