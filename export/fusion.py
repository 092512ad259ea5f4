"""The "fused" ONNX Runtime variant: attention, LayerNorm and GELU fusions.

Attention is fused at the source, not by pattern matching: ImageBind's
attention (``nn.MultiheadAttention`` semantics, with the learned ``bias_k`` /
``bias_v`` appended as one extra key/value position in audio, depth, thermal and
IMU) does not match the BERT/ViT subgraphs that
``onnxruntime.transformers.optimizer`` recognises, so its attention fuser finds
nothing in any exporter's graph. Instead, while exporting, each ``Attention``
module's forward routes the packed input projection *and* the attention through
a custom op that lowers to ``com.microsoft.Attention(input, weights, bias,
past=bias_kv)``: one kernel for QKV projection (MLAS GEMM with prepacked
weights), scaled dot-product, softmax and head merge; text sets
``unidirectional=1`` (causal); the learned bias_k/bias_v enter as the ``past``
state (see :func:`translation_table`). ``onnxruntime.quantization`` turns these
nodes into ``QAttention`` (int8 projection) in the int8 fused graph. Only the
output projection stays a MatMul.

(Lowering only ``Attention.core`` to ``com.microsoft.MultiHeadAttention``, with
projection, Split and the bias_kv Concat outside the kernel, measured 1-3% slower
on the imagebind_huge depth tower, fp32 and int8.)

The rest is ``onnxruntime.transformers.optimizer.optimize_model`` (model_type
``vit``, the encoder's ``num_heads`` / ``hidden_size``, python fusions only,
``opt_level=0`` so the saved graph stays EP-neutral), which fuses
``Add + Div + Erf + Add + Mul + Mul`` into ``BiasGelu``. Its residual
``Add + LayerNormalization -> SkipLayerNormalization`` fusion needs its symbolic
shape inference, which fails on these graphs (opset-18 ``ReduceL2`` in the
post-processing); bindrt does not fuse it another way: ONNX Runtime's CPU
``SkipLayerNormalization`` kernel measured ~7x
slower than the ``Add`` + ``LayerNormalization`` pair it replaces (0.7 ms vs 0.1 ms
per call on a 197x384 depth-tower activation, one thread). int8 fused graphs split
``BiasGelu`` into its bias ``Add`` and ``Gelu`` (:func:`split_gelu_bias`). The counts of fused op
types (``get_fused_operator_statistics`` plus ours) go into the manifest.
"""

from __future__ import annotations

import contextlib
import io
import logging
import types
from typing import Any, Optional

import onnx
import torch
from torch import Tensor

from bindrt.model.encoders import ModalityEncoder
from bindrt.model.layers import Attention

_OP_NAMESPACE = "bindrt_export"


def _reference_attention(
    x: Tensor,
    weight: Tensor,
    bias: Tensor,
    bias_k: Optional[Tensor],
    bias_v: Optional[Tensor],
    num_heads: int,
    causal: bool,
) -> Tensor:
    """Eager math of the custom ops: packed projection + :func:`bindrt.model.layers.sdpa_attention`."""
    from bindrt.model.layers import sdpa_attention

    return sdpa_attention(torch.nn.functional.linear(x, weight.t(), bias), bias_k, bias_v, num_heads, causal)


def _define_ops() -> tuple[Any, Any]:
    ns = getattr(torch.ops, _OP_NAMESPACE)
    if hasattr(ns, "attention") and hasattr(ns, "attention_kv"):
        return ns.attention, ns.attention_kv

    @torch.library.custom_op(f"{_OP_NAMESPACE}::attention", mutates_args=())
    def attention(x: Tensor, weight: Tensor, bias: Tensor, num_heads: int, causal: bool) -> Tensor:
        return _reference_attention(x, weight, bias, None, None, num_heads, causal)

    @attention.register_fake
    def _(x: Tensor, weight: Tensor, bias: Tensor, num_heads: int, causal: bool) -> Tensor:
        return torch.empty_like(x)

    @torch.library.custom_op(f"{_OP_NAMESPACE}::attention_kv", mutates_args=())
    def attention_kv(x: Tensor, weight: Tensor, bias: Tensor, bias_k: Tensor, bias_v: Tensor, num_heads: int) -> Tensor:
        return _reference_attention(x, weight, bias, bias_k, bias_v, num_heads, False)

    @attention_kv.register_fake
    def _(x: Tensor, weight: Tensor, bias: Tensor, bias_k: Tensor, bias_v: Tensor, num_heads: int) -> Tensor:
        return torch.empty_like(x)

    return ns.attention, ns.attention_kv


ATTENTION_OP, ATTENTION_KV_OP = _define_ops()


def _fused_forward(self: Attention, x: Tensor, causal: bool = False) -> Tensor:
    """Attention.forward with projection + attention as one exportable op (weights passed as (D, 3D))."""
    weight = self.in_proj_weight.t()
    if self.bias_k is not None and self.bias_v is not None:
        out = ATTENTION_KV_OP.default(x, weight, self.in_proj_bias, self.bias_k, self.bias_v, self.num_heads)
    else:
        out = ATTENTION_OP.default(x, weight, self.in_proj_bias, self.num_heads, causal)
    return self.out_proj(out)


@contextlib.contextmanager
def fused_attention(encoder: ModalityEncoder):
    """Temporarily route every attention block of ``encoder`` through the exportable fused op."""
    blocks = [m for m in encoder.modules() if isinstance(m, Attention)]
    for b in blocks:
        b.forward = types.MethodType(_fused_forward, b)
    try:
        yield
    finally:
        for b in blocks:
            del b.forward  # back to the class's forward


def translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for torch.onnx.export: the custom ops -> ``com.microsoft.Attention``.

    ``bias_k`` / ``bias_v`` become the op's ``past`` state ``(2, batch, heads, 1, head_dim)``: the
    kernel concatenates past keys/values *before* the sequence's own, where the reference
    appends them *after*; with no causal mask (every bias_kv tower is bidirectional) softmax
    attention is invariant to the order of key/value positions, so the result is the same.
    """
    import onnxscript
    from onnx.defs import OpSchema
    from onnxscript import opset18 as op

    formal = OpSchema.FormalParameter
    opt = OpSchema.FormalParameterOption.Optional

    def schema(with_past: bool) -> OpSchema:
        past = [formal("mask_index", "M", param_option=opt), formal("past", "T", param_option=opt)] if with_past else []
        return OpSchema(
            "Attention",
            "com.microsoft",
            1,
            inputs=[formal("input", "T"), formal("weights", "T"), formal("bias", "T"), *past],
            outputs=[formal("output", "T")] + ([formal("present", "T", param_option=opt)] if with_past else []),
            type_constraints=[
                ("T", ["tensor(float)", "tensor(float16)"], "float tensors"),
                ("M", ["tensor(int32)"], "mask"),
            ],
            attributes=[
                OpSchema.Attribute("num_heads", OpSchema.AttrType.INT, "number of heads"),
                OpSchema.Attribute("unidirectional", OpSchema.AttrType.INT, "causal mask"),
            ],
        )

    msft = onnxscript.values.Opset("com.microsoft", 1)
    attention_plain = onnxscript.values.Op(msft, "Attention", schema(False))
    attention = onnxscript.values.Op(msft, "Attention", schema(True))

    def attention_onnx(x, weight, bias, num_heads: int, causal: bool):
        return attention_plain(x, weight, bias, num_heads=num_heads, unidirectional=int(causal))

    def attention_kv_onnx(x, weight, bias, bias_k, bias_v, num_heads: int):
        dim = bias_k.shape[-1]
        head = dim // num_heads
        per_head = op.Constant(value_ints=[1, 1, num_heads, 1, head])
        k = op.Transpose(op.Reshape(bias_k, op.Constant(value_ints=[1, 1, num_heads, head])), perm=[0, 2, 1, 3])
        v = op.Transpose(op.Reshape(bias_v, op.Constant(value_ints=[1, 1, num_heads, head])), perm=[0, 2, 1, 3])
        past = op.Concat(op.Reshape(k, per_head), op.Reshape(v, per_head), axis=0)  # (2, 1, N, 1, H)
        batch = op.Shape(x, start=0, end=1)
        shape = op.Concat(op.Constant(value_ints=[2]), batch, op.Constant(value_ints=[num_heads, 1, head]), axis=0)
        out, _present = attention(x, weight, bias, None, op.Expand(past, shape), num_heads=num_heads, unidirectional=0)
        return out

    return {ATTENTION_OP.default: attention_onnx, ATTENTION_KV_OP.default: attention_kv_onnx}


def ort_transformer_fusions(
    model: onnx.ModelProto, num_heads: int, hidden_size: int
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Run onnxruntime.transformers' python fusions; returns the model and what they fused."""
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("vit")
    options.enable_attention = False  # attention is already com.microsoft.Attention (see module docstring)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its fusers log through module-named loggers ("fusion_skiplayernorm", ...)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            opt = optimizer.optimize_model(
                model,
                model_type="vit",
                num_heads=num_heads,
                hidden_size=hidden_size,
                optimization_options=options,
                opt_level=0,
                use_gpu=False,
                only_onnxruntime=False,
            )
            stats = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    finally:
        logging.disable(previous)
    model = opt.model
    return model, {
        "tool": "onnxruntime.transformers.optimizer",
        "model_type": "vit",
        "num_heads": num_heads,
        "hidden_size": hidden_size,
        "attention": "com.microsoft.Attention (projection + attention, bias_kv as past) emitted at export",
        "fused_operator_statistics": stats,
        "skip_layernorm": "off (ONNX Runtime's CPU SkipLayerNormalization measured slower than Add + LayerNormalization)",
    }


def split_gelu_bias(model: onnx.ModelProto) -> int:
    """``BiasGelu(y, b)`` -> ``Add(y, b)`` + ``com.microsoft.Gelu`` for int8 graphs.

    ONNX Runtime folds that ``Add`` into the bias input of the ``DynamicQuantizeMatMul`` it
    fuses from the quantized fc1 at load, where it costs nothing, and its bias-free erf
    ``Gelu`` kernel is faster than ``BiasGelu`` or ``FastGelu``: 1.07-1.17x for the whole
    int8 depth tower at batch 8 against ``FastGelu``, no change at batch 1, and exact. fp32
    graphs keep ``BiasGelu``: ``MatMul`` has no bias input, and ``Gemm`` measured slower.
    """
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type == "BiasGelu" and node.domain == "com.microsoft":
            biased = f"{node.output[0]}/biased"
            nodes.append(onnx.helper.make_node("Add", list(node.input), [biased], name=f"{node.name}/bias"))
            nodes.append(
                onnx.helper.make_node("Gelu", [biased], list(node.output), name=node.name, domain="com.microsoft")
            )
            count += 1
        else:
            nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count
