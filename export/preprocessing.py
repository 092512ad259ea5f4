"""In-graph preprocessing with standard ONNX ops (``bindrt export --with-preprocessing``). Torch-free.

``audio_waveform`` graphs take raw 16 kHz mono clips ``(batch, clips, samples)``
float32 in [-1, 1] and compute the reference's Kaldi fbank
(``torchaudio.compliance.kaldi.fbank`` with the reference options, as
:func:`bindrt.preprocess.audio.waveform_to_melspec` does in numpy):

1. subtract each clip's mean;
2. frames of 400 samples every 160 (snip_edges: ``1 + (n - 400) // 160`` frames),
   only the first 204 are computed (the model crops to 204 anyway), by ``Gather``
   with a constant index pattern;
3. per-frame DC removal, pre-emphasis 0.97 (``x[0]`` uses itself as predecessor);
4. Hann window, symmetric (``torch.hann_window(400, periodic=False)``, as
   torchaudio's kaldi module builds it: ``0.5 - 0.5 cos(2 pi n / 399)``);
5. power spectrum of the frame zero-padded to 512: the window and the padding are
   folded into constant ``(400, 257)`` cosine / sine matrices, so the DFT is one
   ``MatMul`` against ``[C | S]`` (exact in float32 to ~1e-6 relative, portable to
   every runtime; the ONNX ``DFT`` op is not supported by TensorRT);
6. Kaldi mel banks (128 triangles on ``1127 ln(1 + f/700)`` from 20 Hz to Nyquist)
   as a constant ``(257, 128)`` MatMul, ``log(max(x, float32 eps))``;
7. transpose to (128, frames), zero-pad on the right to 204 frames, then
   ``(x + 4.268) / 9.138``, giving the encoder's ``(batch, clips, 1, 128, 204)``.

Decoding, resampling, clip selection and channel mixing stay in Python (they are
data-dependent); a clip must have at least 400 samples. ``vision_uint8`` graphs
take already resized and centre-cropped ``(batch, 224, 224, 3)`` uint8 RGB and do
``/255``, HWC->CHW and the mean/std normalisation in the graph.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bindrt.preprocess.audio import AUDIO_MEAN, AUDIO_STD, NUM_MEL_BINS, SAMPLE_RATE, TARGET_FRAMES, kaldi_mel_banks
from bindrt.preprocess.image import IMAGE_MEAN, IMAGE_STD

FRAME_LENGTH = 400
FRAME_SHIFT = 160
FFT_SIZE = 512
PREEMPHASIS = 0.97
EPS = float(np.finfo(np.float32).eps)


def dft_matrices(frame: int = FRAME_LENGTH, padded: int = FFT_SIZE) -> np.ndarray:
    """``[C | S]`` (frame, 2*(padded//2+1)): symmetric Hann window folded into a real DFT of the zero-padded frame."""
    n = np.arange(frame, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / (frame - 1))
    k = np.arange(padded // 2 + 1, dtype=np.float64)
    angle = 2.0 * np.pi * np.outer(n, k) / padded
    return np.concatenate([window[:, None] * np.cos(angle), window[:, None] * np.sin(angle)], axis=1).astype(np.float32)


def _const(name: str, value, dtype=None) -> TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def audio_waveform_graph(
    output: str, *, opset: int, ir_version: int, input_name: str = "audio_waveform"
) -> onnx.ModelProto:
    """(batch, clips, samples) float32 waveform -> (batch, clips, 1, 128, 204) normalised log-mel features."""
    bins = FFT_SIZE // 2 + 1
    mel = kaldi_mel_banks()  # (128, 257)
    inits = [
        _const("pp_axis_last", [-1], np.int64),
        _const("pp_frame_len", [FRAME_LENGTH], np.int64),
        _const("pp_shift", [FRAME_SHIFT], np.int64),
        _const("pp_one", [1], np.int64),
        _const("pp_zero", [0], np.int64),
        _const("pp_max_frames", [TARGET_FRAMES], np.int64),
        _const("pp_offsets", np.arange(FRAME_LENGTH, dtype=np.int64)[None, :]),
        _const("pp_preemph", np.float32(PREEMPHASIS)),
        _const("pp_dft", dft_matrices()),
        _const("pp_bins_split", [bins, bins], np.int64),
        _const("pp_mel", np.ascontiguousarray(mel.T)),
        _const("pp_eps", np.float32(EPS)),
        _const("pp_mean", np.float32(AUDIO_MEAN)),
        _const("pp_std", np.float32(AUDIO_STD)),
        _const("pp_scalar_zero", np.int64(0)),
        _const("pp_scalar_one", np.int64(1)),
        _const("pp_pad_prefix", np.zeros(7, np.int64)),
        _const("pp_slice_1_start", [1], np.int64),
        _const("pp_slice_prev_end", [FRAME_LENGTH - 1], np.int64),
        _const("pp_unsq_axis", [2], np.int64),
    ]
    n = helper.make_node
    nodes = [
        # 1. per-clip mean removal
        n("ReduceMean", [input_name, "pp_axis_last"], ["pp_clip_mean"], keepdims=1),
        n("Sub", [input_name, "pp_clip_mean"], ["pp_centered"]),
        # 2. frame count: min(1 + (n - 400) // 160, 204), at least 0
        n("Shape", [input_name], ["pp_len"], start=-1),
        n("Sub", ["pp_len", "pp_frame_len"], ["pp_len_m"]),
        n("Div", ["pp_len_m", "pp_shift"], ["pp_len_d"]),
        n("Add", ["pp_len_d", "pp_one"], ["pp_frames_raw"]),
        n("Min", ["pp_frames_raw", "pp_max_frames"], ["pp_frames_cap"]),
        n("Max", ["pp_frames_cap", "pp_zero"], ["pp_frames"]),
        n("Squeeze", ["pp_frames"], ["pp_frames_s"]),
        n("Range", ["pp_scalar_zero", "pp_frames_s", "pp_scalar_one"], ["pp_frame_idx"]),
        n("Unsqueeze", ["pp_frame_idx", "pp_one"], ["pp_frame_idx_col"]),
        n("Mul", ["pp_frame_idx_col", "pp_shift"], ["pp_starts"]),
        n("Add", ["pp_starts", "pp_offsets"], ["pp_gather_idx"]),  # (frames, 400)
        n("Gather", ["pp_centered", "pp_gather_idx"], ["pp_framed"], axis=-1),  # (B, S, F, 400)
        # 3. DC removal and pre-emphasis
        n("ReduceMean", ["pp_framed", "pp_axis_last"], ["pp_frame_mean"], keepdims=1),
        n("Sub", ["pp_framed", "pp_frame_mean"], ["pp_dc"]),
        n("Slice", ["pp_dc", "pp_zero", "pp_one", "pp_axis_last"], ["pp_first"]),
        n("Slice", ["pp_dc", "pp_zero", "pp_slice_prev_end", "pp_axis_last"], ["pp_prev_tail"]),
        n("Concat", ["pp_first", "pp_prev_tail"], ["pp_prev"], axis=-1),
        n("Mul", ["pp_prev", "pp_preemph"], ["pp_prev_s"]),
        n("Sub", ["pp_dc", "pp_prev_s"], ["pp_emph"]),
        # 4-5. window + zero-padded real DFT as one MatMul, power spectrum
        n("MatMul", ["pp_emph", "pp_dft"], ["pp_reim"]),
        n("Split", ["pp_reim", "pp_bins_split"], ["pp_re", "pp_im"], axis=-1),
        n("Mul", ["pp_re", "pp_re"], ["pp_re2"]),
        n("Mul", ["pp_im", "pp_im"], ["pp_im2"]),
        n("Add", ["pp_re2", "pp_im2"], ["pp_power"]),
        # 6. mel + log
        n("MatMul", ["pp_power", "pp_mel"], ["pp_melspec"]),  # (B, S, F, 128)
        n("Max", ["pp_melspec", "pp_eps"], ["pp_floored"]),
        n("Log", ["pp_floored"], ["pp_logmel"]),
        # 7. (B, S, 128, F) -> pad to 204 frames -> normalise -> (B, S, 1, 128, 204)
        n("Transpose", ["pp_logmel"], ["pp_logmel_t"], perm=[0, 1, 3, 2]),
        n("Sub", ["pp_max_frames", "pp_frames"], ["pp_pad_amount"]),
        n("Concat", ["pp_pad_prefix", "pp_pad_amount"], ["pp_pads"], axis=0),
        n("Pad", ["pp_logmel_t", "pp_pads"], ["pp_padded"], mode="constant"),
        n("Sub", ["pp_padded", "pp_mean"], ["pp_shifted"]),
        n("Div", ["pp_shifted", "pp_std"], ["pp_norm"]),
        n("Unsqueeze", ["pp_norm", "pp_unsq_axis"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "bindrt_audio_fbank",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", "clips", "samples"])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "clips", 1, NUM_MEL_BINS, TARGET_FRAMES])],
        inits,
    )
    return _model(graph, opset, ir_version)


def vision_uint8_graph(
    output: str, *, opset: int, ir_version: int, input_name: str = "vision_uint8"
) -> onnx.ModelProto:
    """(batch, 224, 224, 3) uint8 RGB -> (batch, 3, 224, 224) normalised float32."""
    inits = [
        _const("pp_255", np.float32(255.0)),
        _const("pp_img_mean", np.asarray(IMAGE_MEAN, np.float32)[:, None, None]),
        _const("pp_img_std", np.asarray(IMAGE_STD, np.float32)[:, None, None]),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", [input_name], ["pp_float"], to=TensorProto.FLOAT),
        n("Div", ["pp_float", "pp_255"], ["pp_unit"]),
        n("Transpose", ["pp_unit"], ["pp_chw"], perm=[0, 3, 1, 2]),
        n("Sub", ["pp_chw", "pp_img_mean"], ["pp_centered"]),
        n("Div", ["pp_centered", "pp_img_std"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "bindrt_image_normalize",
        [helper.make_tensor_value_info(input_name, TensorProto.UINT8, ["batch", 224, 224, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", 3, 224, 224])],
        inits,
    )
    return _model(graph, opset, ir_version)


def _model(graph: onnx.GraphProto, opset: int, ir_version: int) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="bindrt")
    model.ir_version = ir_version
    return model


def compose(pre: onnx.ModelProto, encoder: onnx.ModelProto, encoder_input: str) -> onnx.ModelProto:
    """``pre``'s output feeds ``encoder``'s input: one graph, raw input in, embedding out."""
    from onnx import compose as onnx_compose

    opsets = {o.domain: o.version for o in encoder.opset_import}
    del pre.opset_import[:]
    pre.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets.items())
    pre.ir_version = encoder.ir_version
    merged = onnx_compose.merge_models(
        pre, encoder, io_map=[(pre.graph.output[0].name, encoder_input)], prefix1="", prefix2=""
    )
    return merged


PREPROCESSING_BUILDERS = {"audio_waveform": audio_waveform_graph, "vision_uint8": vision_uint8_graph}


def describe(kind: str) -> dict:
    """The manifest's description of a raw-input graph's in-graph preprocessing."""
    if kind == "audio_waveform":
        return {
            "type": "kaldi_fbank",
            "input": "mono 16 kHz waveform clips (batch, clips, samples), float32 in [-1, 1], samples >= 400",
            "sample_rate": SAMPLE_RATE,
            "frame_length": FRAME_LENGTH,
            "frame_shift": FRAME_SHIFT,
            "snip_edges": True,
            "remove_dc_offset": True,
            "preemphasis": PREEMPHASIS,
            "window": "hann, symmetric (periodic=False)",
            "fft_size": FFT_SIZE,
            "dft": "MatMul with constant cos/sin",
            "power": 2.0,
            "num_mel_bins": NUM_MEL_BINS,
            "mel_low_hz": 20.0,
            "mel_high_hz": SAMPLE_RATE / 2,
            "log_floor": EPS,
            "target_frames": TARGET_FRAMES,
            "mean": AUDIO_MEAN,
            "std": AUDIO_STD,
            "outside_graph": "decode, resample to 16 kHz, clip selection (3 x 2 s), channel 0",
        }
    if kind == "vision_uint8":
        return {
            "type": "image_normalize",
            "input": "RGB uint8 (batch, 224, 224, 3), already resized (short side 224, bicubic) and centre-cropped",
            "scale": 1 / 255,
            "mean": list(IMAGE_MEAN),
            "std": list(IMAGE_STD),
            "layout": "HWC -> CHW",
        }
    raise KeyError(kind)
