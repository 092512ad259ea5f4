"""PyTorch encoder -> ONNX, with ``torch.onnx.export(dynamo=True)``.

Why the dynamo (``torch.export``) exporter and not the legacy TorchScript one
(measured with torch 2.13 on every ImageBind encoder):

* both keep the batch and clip axes dynamic and both are exact (row-relative
  error ~2e-7 against the reference embeddings), but the dynamo graphs are 2-3x
  smaller (the golden vision encoder: 99 vs 251 nodes): the legacy exporter
  traces Python shape arithmetic into Shape/Gather/Cast/Equal/Where chains and
  decomposes SDPA's scale into Sqrt/Div, the dynamo exporter emits symbolic
  shapes once, ``LayerNormalization`` directly and folds constants with the
  onnxscript optimizer;
* symbolic axes are named from ``torch.export.Dim`` (``batch``, ``clips``), so
  the graph's input signature is the manifest's, and unsupported dynamism fails
  at export time (torch.export's guards) instead of silently specialising;
* custom ops map to ONNX functions through ``custom_translation_table``: the
  fused variant routes each attention module through an op that lowers to
  ``com.microsoft.Attention`` (see :mod:`bindrt.export.fusion`).

Known torch 2.13 quirk worked around here: naming the output of the text graph
through ``output_names`` produces a graph that is not in SSA form (the name is
assigned twice); we leave outputs unnamed and rename afterwards.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

from bindrt.errors import ExportError
from bindrt.export.spec import GRAPH_KINDS, OUTPUT_NAME
from bindrt.layouts import EOT_TOKEN, SOT_TOKEN
from bindrt.model.encoders import ModalityEncoder

EXPORTER = "torch.onnx.export(dynamo=True)"
#: Generous upper bounds for torch.export's symbolic dims (they only bound the guards).
MAX_BATCH = 1 << 16
MAX_CLIPS = 1 << 10


class SingleInput(nn.Module):
    """An encoder on one fixed-rank input kind (no ndim-dependent branching left in the graph).

    ``pooled_last_block`` traces :meth:`ModalityEncoder.embed_pooled` (the last block for the
    pooled token only; same embeddings, ~1/12 less work in a 12-block tower).
    """

    def __init__(self, encoder: ModalityEncoder, pooled_last_block: bool = True) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooled_last_block = pooled_last_block

    def embed(self, x: Tensor) -> Tensor:
        return self.encoder.embed_pooled(x) if self.pooled_last_block else self.encoder.embed(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.embed(x)


class MultiClip(SingleInput):
    """(B, S, ...) -> fold clips into the batch, embed, average the S embeddings (the reference's rule)."""

    def forward(self, x: Tensor) -> Tensor:
        batch, clips = x.shape[0], x.shape[1]
        emb = self.embed(x.flatten(0, 1))
        return emb.reshape(batch, clips, -1).mean(dim=1)


def example_input(kind: str, batch: int = 2, clips: int = 2) -> Tensor:
    spec = GRAPH_KINDS[kind]
    shape = [batch if d == "batch" else clips if d == "clips" else d for d in spec.shape]
    if spec.dtype == "int64":  # text: SOT ... EOT, padded (argmax finds EOT)
        ids = torch.zeros(shape, dtype=torch.int64)
        ids[:, 0], ids[:, 1:4], ids[:, 4] = SOT_TOKEN, 320, EOT_TOKEN
        return ids
    gen = torch.Generator().manual_seed(0)
    return torch.randn(shape, generator=gen)


def wrap(kind: str, encoder: ModalityEncoder, pooled_last_block: bool = True) -> nn.Module:
    return (MultiClip if GRAPH_KINDS[kind].multi_clip else SingleInput)(encoder, pooled_last_block).eval()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress and warns about optional torchvision ops; keep the CLI clean."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "torch.fx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_encoder(
    kind: str,
    encoder: ModalityEncoder,
    *,
    opset: int,
    custom_translation_table: dict[Callable, Callable] | None = None,
    pooled_last_block: bool = True,
) -> Any:
    """Export one graph kind of ``encoder``; returns the ``onnx.ModelProto`` (output renamed, not yet checked)."""
    spec = GRAPH_KINDS[kind]
    if spec.raw:
        raise ExportError(
            f"{kind!r} is a raw-input graph; it is composed from {spec.based_on!r}, not exported from torch"
        )
    module = wrap(kind, encoder, pooled_last_block)
    x = example_input(kind)
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}
    if spec.multi_clip:
        dims[1] = torch.export.Dim("clips", min=1, max=MAX_CLIPS)
    try:
        with _quiet(), torch.inference_mode(False), torch.no_grad():
            program = torch.onnx.export(
                module,
                (x,),
                dynamo=True,
                dynamic_shapes={"x": dims},
                input_names=[spec.input_name],
                opset_version=opset,
                optimize=True,
                custom_translation_table=custom_translation_table,
                verbose=False,
            )
            fold_weight_slices(program.model)
            model = program.model_proto
            del program
    except ExportError:
        raise
    except Exception as exc:  # torch.export / onnxscript errors are long; keep the first lines
        first = "; ".join(str(exc).strip().splitlines()[:3])
        raise ExportError(
            f"[{kind}] torch.onnx.export (dynamo, opset {opset}) failed: {type(exc).__name__}: {first}"
        ) from exc
    rename_output(model)
    strip_debug_info(model)
    return convert_opset(model, opset, kind)


def fold_weight_slices(model: Any) -> None:
    """Fold ops computed from weights alone (the pooled last block's Q / KV slices of the packed
    projection, their transposes) into initializers.

    The exporter's own folding stops at 8192-element inputs, which would leave those slices to
    run on every call and hand ONNX Runtime a MatMul whose weight is not a constant (no
    prepacking): measured ~10% slower on the imagebind_huge depth tower. Runs in place on the
    exporter's IR model, before it becomes a proto (no extra copy of the weights).
    """
    import onnxscript.optimizer

    limit = 1 << 40
    onnxscript.optimizer.optimize(model, input_size_limit=limit, output_size_limit=limit)


def convert_opset(model: Any, opset: int, kind: str) -> Any:
    """The dynamo exporter emits opset >= 18; older targets (17) go through onnx's version converter."""
    import onnx
    from onnx import version_converter

    current = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if current == opset:
        return model
    if opset == 17 and current == 18:
        from bindrt.export.onnx_utils import downgrade_to_opset17

        return downgrade_to_opset17(model)
    try:
        converted = version_converter.convert_version(model, opset)
    except Exception as exc:
        raise ExportError(
            f"[{kind}] cannot convert the exported opset-{current} graph to opset {opset}: "
            f"{str(exc).splitlines()[0][:300]}"
        ) from exc
    if not isinstance(converted, onnx.ModelProto):
        raise ExportError(f"[{kind}] opset conversion to {opset} failed")
    return converted


def strip_debug_info(model: Any) -> None:
    """Drop per-node stack traces / FX names the exporter records (they hold local source paths)."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.graph.doc_string = ""


def rename_output(model: Any, name: str = OUTPUT_NAME) -> None:
    """Give the single graph output a stable name (see the module docstring for why not output_names)."""
    graph = model.graph
    if len(graph.output) != 1:
        raise ExportError(f"expected one graph output, found {len(graph.output)}")
    old = graph.output[0].name
    if old == name:
        return
    taken = {v for n in graph.node for v in (*n.input, *n.output)} | {t.name for t in graph.initializer}
    if name in taken:  # e.g. the text tower's token-embedding Gather is called "embedding": move it aside
        other = next(f"{name}_{k}" for k in range(1, 1 << 20) if f"{name}_{k}" not in taken)
        _rename(graph, name, other)
    _rename(graph, old, name)
    graph.output[0].name = name


def _rename(graph: Any, old: str, name: str) -> None:
    for node in graph.node:
        for i, n in enumerate(node.input):
            if n == old:
                node.input[i] = name
        for i, n in enumerate(node.output):
            if n == old:
                node.output[i] = name
    for vi in graph.value_info:
        if vi.name == old:
            vi.name = name
