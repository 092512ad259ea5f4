"""``bindrt export`` / ``bindrt validate``: bundle -> validated ONNX graphs recorded in the manifest.

All graphs of one export are built and validated in a hidden staging directory
inside the bundle first; only when every graph passes its checks and its
tolerance are they moved in (``Bundle.add_file``: atomic rename + sha256) and the
manifest rewritten once. A failure therefore leaves no graph behind and the
manifest unchanged.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from bindrt.bundle import Bundle, now_iso, producer_versions
from bindrt.config import check_modalities
from bindrt.errors import BundleError, ConfigError, ExportError, OutputError
from bindrt.export.spec import (
    ARTIFACT_KEY,
    DEFAULT_OPSET,
    EXTERNAL_DATA_THRESHOLD,
    GRAPH_KINDS,
    MIN_OPSET,
    ONNX_FORMAT,
    ONNX_FORMAT_VERSION,
    PRECISIONS,
    RAW_KINDS,
    base_kinds,
    graph_key,
    graph_relpath,
    onnx_graphs,
)
from bindrt.fileio import is_writable_dir
from bindrt.loaders import EncodersFromSource
from bindrt.schema import (
    Fusions,
    GraphTensor,
    LowPrecisionSummary,
    OnnxArtifact,
    OnnxGraph,
    Quantization,
    Validation,
    read_artifact,
    write_artifact,
)

if TYPE_CHECKING:
    import numpy as np

Progress = Callable[[str], None]
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"


@dataclass
class StagedGraph:
    modality: str
    kind: str
    precision: str
    variant: str
    key: str
    path: Path  # staged .onnx
    external: list[str]  # staged external-data file names next to it
    record: OnnxGraph


#: what ``--precision`` exports (fp8 graphs come from ``--modelopt``)
EXPORT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def parse_precisions(precisions: "str | Iterable[str]", allowed: Sequence[str] = EXPORT_PRECISIONS) -> tuple[str, ...]:
    items = [p.strip() for p in (precisions.split(",") if isinstance(precisions, str) else precisions) if p.strip()]
    if not items:
        raise ConfigError(f"no precision given; expected some of {', '.join(allowed)}")
    bad = [p for p in items if p not in allowed]
    if bad:
        hint = " (fp8 Q/DQ graphs: --modelopt)" if "fp8" in bad and "fp8" not in allowed else ""
        raise ConfigError(f"unsupported precision(s) {bad}; expected some of {', '.join(allowed)}{hint}")
    return tuple(p for p in allowed if p in items)


def check_opset(opset: int) -> int:
    from bindrt.export.onnx_utils import max_supported_opset

    top = max_supported_opset()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= top:
        raise ExportError(
            f"unsupported opset {opset!r}; expected {MIN_OPSET}..{top} (LayerNormalization needs >= {MIN_OPSET}; "
            f"the installed onnx {__import__('onnx').__version__} knows opsets up to {top})"
        )
    return opset


def _check_writable(bundle: Bundle) -> None:
    onnx_dir = bundle.path / "onnx"
    if onnx_dir.exists() and not onnx_dir.is_dir():
        raise OutputError(f"cannot write ONNX graphs: {onnx_dir} exists and is not a directory")
    for directory in (bundle.path, onnx_dir):
        if directory.exists() and not is_writable_dir(directory):
            raise OutputError(f"cannot write ONNX graphs into {directory}: directory is not writable")


def tokenizer_contract() -> dict[str, Any]:
    from bindrt.preprocess.text import CONTEXT_LENGTH, EOT_TOKEN, SOT_TOKEN, VOCAB_SIZE

    return {
        "type": "clip_bpe_tokenizer",
        "input": "token ids (batch, 77) int64; the graph pools at argmax(ids) = the end-of-text token",
        "vocab_file": f"onnx/text/{VOCAB_FILE}",
        "merges_used": 48894,
        "sot_token": SOT_TOKEN,
        "eot_token": EOT_TOKEN,
        "context_length": CONTEXT_LENGTH,
        "pad_token": 0,
        "vocab_size": VOCAB_SIZE,
        "truncation": "[sot] + first 75 tokens + [eot], right-padded with pad_token",
        "cleaning": "ftfy.fix_text, html.unescape twice, strip, collapse whitespace, lower-case",
        "reference_implementation": "bindrt.preprocess.text.tokenize",
    }


#: The checks every staged graph passed, recorded among its passes.
PASSES_CHECK = ("onnx.shape_inference (strict, data_prop)", "onnx.checker.check_model(full_check=True)")


@dataclass
class _Keeper:
    """Keeps one kind's graphs for the raw-input compositions, only when a composition needs them."""

    built: dict[tuple[str, str, str], Any]
    kind: str
    wanted: bool

    def __call__(self, precision: str, variant: str, model: Any) -> None:
        if self.wanted:
            self.built[(self.kind, precision, variant)] = model


class _Exporter:
    def __init__(
        self,
        bundle: Bundle,
        staging: Path,
        opset: int,
        threshold: int,
        progress: Progress,
        int8_method: str,
        per_channel: bool,
        pooled_last_block: bool = True,
        nncf: bool = False,
        targets: tuple[str, ...] = (),
        calibration: "Mapping[str, np.ndarray] | None" = None,
        modelopt: bool = False,
    ) -> None:
        self.bundle = bundle
        self.staging = staging
        self.opset = opset
        self.threshold = threshold
        self.progress = progress
        self.int8_method = int8_method
        self.per_channel = per_channel
        self.pooled_last_block = pooled_last_block
        self.nncf = nncf
        self.targets = targets
        self.calibration = dict(calibration or {})
        self.modelopt = modelopt
        self.config = bundle.config
        self.staged: list[StagedGraph] = []

    # -- one graph -------------------------------------------------------------
    def stage(
        self,
        model,
        modality: str,
        kind: str,
        precision: str,
        variant: str,
        extra: dict[str, Any],
        reference,
        validate: bool,
    ) -> StagedGraph:
        from bindrt.export import onnx_utils
        from bindrt.export.validate import raise_if_failed, validate_graph

        key = graph_key(kind, precision, variant)
        where = f"{modality}/{key}"
        directory = self.staging / modality
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key}.onnx"
        t0 = time.perf_counter()
        external = onnx_utils.save(model, path, threshold=self.threshold)
        checked = onnx_utils.check_and_infer(path, where=where)
        inputs, outputs = onnx_utils.io_records(checked)
        record = OnnxGraph(
            kind=kind,
            modality=modality,
            precision=precision,
            variant=variant,
            file=graph_relpath(modality, key),
            external_data=tuple(f"onnx/{modality}/{name}" for name in external),
            opset=onnx_utils.opset_of(checked),
            ir_version=checked.ir_version,
            domains=tuple(sorted({o.domain or "ai.onnx" for o in checked.opset_import})),
            inputs=tuple(GraphTensor.from_dict(t, f"{where} inputs") for t in inputs),
            outputs=tuple(GraphTensor.from_dict(t, f"{where} outputs") for t in outputs),
            op_counts=onnx_utils.op_counts(checked),
            nodes=len(checked.graph.node),
            **extra,
        )
        if "tensorrt" in self.targets:
            record = record.replace(tensorrt=self._tensorrt_check(path, precision, variant, where))
        if validate:
            self.progress(f"  validating {where}")
            result = validate_graph(str(path), kind, precision, reference, where=where, **validator(variant, precision))
            record = record.replace(validation=Validation.from_dict(result, f"{where} validation"))
            raise_if_failed(result, where)
        record = record.replace(seconds=round(time.perf_counter() - t0, 2))
        staged = StagedGraph(modality, kind, precision, variant, key, path, external, record)
        self.staged.append(staged)
        return staged

    @staticmethod
    def _tensorrt_check(path: Path, precision: str, variant: str, where: str) -> dict[str, Any]:
        """The operator check of a staged graph; graphs meant for TensorRT must pass it (ORT-only ones say so)."""
        from bindrt.tensorrt.compat import check_graph, raise_if_incompatible

        meant = variant in ("nncf", "modelopt") or (variant == "plain" and precision in ("fp32", "fp16", "bf16"))
        report = check_graph(path)
        if meant:
            raise_if_incompatible(report, where)
        return {**report.to_dict(), "meant_for_tensorrt": meant}

    # -- one modality ----------------------------------------------------------
    def export_modality(
        self,
        modality: str,
        encoder,
        precisions: tuple[str, ...],
        fused: bool,
        with_preprocessing: bool,
        reference,
        validate: bool,
    ) -> None:
        """Every graph kind of one encoder at each precision (and fused), then its raw-input compositions."""
        # graphs the raw-input variants are composed from: (kind, precision, variant) -> ModelProto. Only those
        # are kept; the rest are dropped as soon as they are staged (imagebind_huge vision is 2.5 GB per fp32 graph)
        built: dict[tuple[str, str, str], Any] = {}
        composed_from = (
            {GRAPH_KINDS[raw].based_on for raw in RAW_KINDS.get(modality, ())} if with_preprocessing else set()
        )
        info = self._base_info()
        for kind in base_kinds(modality):
            keep = _Keeper(built, kind, wanted=kind in composed_from)
            self._export_kind(modality, kind, encoder, precisions, fused, info, reference, validate, keep)
        if with_preprocessing:
            self._compose_raw(modality, precisions, built, info, reference, validate)

    def _base_info(self) -> dict[str, Any]:
        import onnx
        import torch

        from bindrt.export.torch_export import EXPORTER

        return {
            "exporter": EXPORTER,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "created": now_iso(),
            "pooled_last_block": self.pooled_last_block,
        }

    @property
    def _export_passes(self) -> list[str]:
        passes = [
            "torch.onnx.export(dynamo=True, optimize=True): onnxscript constant folding, CSE, dead-code removal",
            "symbolic axes renamed (batch, clips), output named 'embedding'",
        ]
        if self.pooled_last_block:
            passes.insert(0, "last block computed for the pooled token only (ModalityEncoder.embed_pooled; exact)")
        return passes

    def _export_kind(
        self,
        modality: str,
        kind: str,
        encoder,
        precisions: tuple[str, ...],
        fused: bool,
        info: dict[str, Any],
        reference,
        validate: bool,
        keep: "_Keeper",
    ) -> None:
        """One input kind: the plain fp32 graph, its fp16 and int8 conversions, then the fused variants."""
        from bindrt.export import onnx_utils
        from bindrt.export.torch_export import export_encoder

        common = {**info, "preprocessing": {"text": tokenizer_contract()}.get(kind)}
        self.progress(f"exporting {modality}/{kind} (opset {self.opset})")
        fp32 = export_encoder(kind, encoder, opset=self.opset, pooled_last_block=self.pooled_last_block)
        onnx_utils.set_io_signature(fp32, kind, self.config.out_embed_dim)
        if "fp32" in precisions:
            self.stage(
                fp32,
                modality,
                kind,
                "fp32",
                "plain",
                {**common, "passes": (*self._export_passes, *PASSES_CHECK)},
                reference,
                validate,
            )
        keep("fp32", "plain", fp32)
        for low in ("fp16", "bf16"):
            if low in precisions:
                keep(low, "plain", self._stage_low(fp32, low, modality, kind, common, reference, validate))
        if "int8" in precisions:
            q, summary = self._quantize(fp32, kind)
            self.stage(
                q,
                modality,
                kind,
                "int8",
                "plain",
                {
                    **common,
                    "quantization": Quantization.from_dict(summary, f"{modality}/{kind}.int8 quantization"),
                    "passes": (*self._export_passes, "onnxruntime.quantization", *PASSES_CHECK),
                },
                reference,
                validate,
            )
            keep("int8", "plain", q)
        if self.nncf:
            self._stage_nncf(fp32, modality, kind, common, reference, validate)
        if self.modelopt:
            for mode in ("int8", "fp8"):
                self._stage_modelopt(fp32, modality, kind, mode, common, reference, validate)
        del fp32  # the fused variant is exported afresh; only `built` may still hold it
        if fused and ("fp32" in precisions or "int8" in precisions):
            self._export_fused(modality, kind, encoder, precisions, common, reference, validate, keep)

    def _stage_low(
        self, fp32, precision: str, modality: str, kind: str, common: dict[str, Any], reference, validate: bool
    ):
        """The fp16 or bf16 conversion of the fp32 graph (bindrt.export.fp16), staged and validated."""
        import onnx

        from bindrt.export.fp16 import check_strongly_typed, convert_to_low_precision

        half = onnx.ModelProto()
        half.CopyFrom(fp32)
        half, summary = convert_to_low_precision(half, precision)
        mixed = check_strongly_typed(half)
        if mixed:
            raise ExportError(f"[{modality}/{kind}.{precision}] nodes mix float types in their inputs: {mixed[:5]}")
        self.stage(
            half,
            modality,
            kind,
            precision,
            "plain",
            {
                **common,
                precision: LowPrecisionSummary.from_dict(summary, f"{modality}/{kind}.{precision} {precision}"),
                "passes": (*self._export_passes, f"bindrt {precision} conversion (explicit Casts)", *PASSES_CHECK),
            },
            reference,
            validate,
        )
        return half

    def _stage_nncf(self, fp32, modality: str, kind: str, common: dict[str, Any], reference, validate: bool) -> None:
        """The int8 graph NNCF quantizes for OpenVINO (validated on OpenVINO, where it runs)."""
        from bindrt.export.int8_nncf import RECIPES, SKIPPED_KINDS, VARIANT, quantize_nncf

        if kind in SKIPPED_KINDS:
            where = f"{modality}/{graph_key(kind, 'int8', VARIANT)}"
            self.progress(f"  no {where}: static int8 does not hold for {kind} (bindrt.export.int8_nncf)")
            return
        self._stage_calibrated(
            fp32,
            modality,
            kind,
            ("int8", VARIANT),
            "NNCF",
            list(RECIPES),
            lambda model, calibration, where, recipe: quantize_nncf(model, calibration, where=where, recipe=recipe),
            lambda recipe: f"nncf.quantize ({recipe}, QDQ)",
            (common, reference, validate),
            hint="; export without --nncf (OpenVINO's int8 then runs the dynamic int8 graph)",
        )

    def _stage_modelopt(
        self, fp32, modality: str, kind: str, mode: str, common: dict[str, Any], reference, validate: bool
    ) -> None:
        """A Q/DQ graph for TensorRT by NVIDIA Model Optimizer (int8 or fp8, validated on ONNX Runtime)."""
        from bindrt.export.qdq_modelopt import RECIPES, quantize_modelopt

        self._stage_calibrated(
            fp32,
            modality,
            kind,
            (mode, "modelopt"),
            "Model Optimizer",
            list(RECIPES[mode]),
            lambda model, calibration, where, recipe: quantize_modelopt(
                model, calibration, mode=mode, where=where, recipe=recipe
            ),
            lambda recipe: f"modelopt.onnx.quantization ({mode}, {recipe})",
            (common, reference, validate),
        )

    def _stage_calibrated(
        self,
        fp32,
        modality: str,
        kind: str,
        graph: tuple[str, str],
        tool: str,
        recipes: list[str],
        quantize: Callable[..., tuple[Any, dict[str, Any]]],
        pass_name: Callable[[str], str],
        staging: tuple[dict[str, Any], Any, bool],
        hint: str = "",
    ) -> None:
        """A statically quantized graph: ``recipes`` tried in order, the first that validates kept.

        Calibrated on :func:`calibration_inputs` (the user's media for ``kind`` where given).
        """
        import onnx

        from bindrt.export.validate import calibration_inputs

        precision, variant = graph
        common, reference, validate = staging
        where = f"{modality}/{graph_key(kind, precision, variant)}"
        user = self.calibration.get(kind)
        calibration = [{kind: x} for x in calibration_inputs(kind, user=user)]
        misses: list[str] = []
        for recipe in recipes:
            self.progress(f"  quantizing {where} with {tool} ({recipe})")
            source = onnx.ModelProto()
            source.CopyFrom(fp32)
            q, summary = quantize(source, calibration, where, recipe)
            if user is not None:
                summary["calibration"] = {
                    "items": len(calibration),
                    "inputs": f"user media ({len(user)} items, export --calibrate) + layout-random (held out)",
                }
            extra = {
                **common,
                "quantization": Quantization.from_dict(summary, f"{where} quantization"),
                "passes": (*self._export_passes, pass_name(recipe), *PASSES_CHECK),
            }
            try:
                self.stage(q, modality, kind, precision, variant, extra, reference, validate)
                return
            except ExportError as exc:
                misses.append(f"{recipe}: {str(exc).split('validation failed: ', 1)[-1]}")
        raise ExportError(f"[{where}] no {tool} recipe meets the {precision} tolerance: " + " | ".join(misses) + hint)

    def _export_fused(
        self,
        modality: str,
        kind: str,
        encoder,
        precisions: tuple[str, ...],
        common: dict[str, Any],
        reference,
        validate: bool,
        keep: "_Keeper",
    ) -> None:
        """The ONNX Runtime-fused variant (fp32, and int8 with the GELU bias split off)."""
        from bindrt.export.fusion import split_gelu_bias

        fz, fusions = self._fused(kind, encoder, self.config.out_embed_dim)
        passes_fused = [
            *self._export_passes,
            "Attention modules -> com.microsoft.Attention (custom op at export)",
            "onnxruntime.transformers.optimizer fusions",
        ]
        if "fp32" in precisions:
            self.stage(
                fz,
                modality,
                kind,
                "fp32",
                "fused",
                {
                    **common,
                    "fusions": Fusions.from_dict(fusions, f"{modality}/{kind}.fp32.fused fusions"),
                    "passes": (*passes_fused, *PASSES_CHECK),
                },
                reference,
                validate,
            )
            keep("fp32", "fused", fz)
        if "int8" in precisions:
            q, summary = self._quantize(fz, kind)
            split = split_gelu_bias(q)
            fusions_int8 = {**fusions, "fused_operator_statistics": dict(fusions["fused_operator_statistics"])}
            if split:
                stats = fusions_int8["fused_operator_statistics"]
                stats["Gelu"] = split
                stats.pop("BiasGelu", None)
                fusions_int8["gelu"] = (
                    "com.microsoft.Gelu; its bias Add is left for ONNX Runtime to fold "
                    "into DynamicQuantizeMatMul (int8 only)"
                )
            self.stage(
                q,
                modality,
                kind,
                "int8",
                "fused",
                {
                    **common,
                    "fusions": Fusions.from_dict(fusions_int8, f"{modality}/{kind}.int8.fused fusions"),
                    "quantization": Quantization.from_dict(summary, f"{modality}/{kind}.int8.fused quantization"),
                    "passes": (*passes_fused, "onnxruntime.quantization", *PASSES_CHECK),
                },
                reference,
                validate,
            )
            keep("int8", "fused", q)

    def _compose_raw(
        self,
        modality: str,
        precisions: tuple[str, ...],
        built: dict[tuple[str, str, str], Any],
        info: dict[str, Any],
        reference,
        validate: bool,
    ) -> None:
        """Raw-input graphs: in-graph preprocessing composed in front of each kept encoder graph."""
        import onnx

        from bindrt.export import onnx_utils
        from bindrt.export import preprocessing as pp

        for raw_kind in RAW_KINDS.get(modality, ()):
            base = GRAPH_KINDS[raw_kind].based_on
            for (kind, precision, variant), model in list(built.items()):
                if kind != base or precision not in precisions:
                    continue
                self.progress(f"composing {modality}/{graph_key(raw_kind, precision, variant)}")
                target = onnx_utils.opset_of(model)
                pre = pp.PREPROCESSING_BUILDERS[raw_kind](
                    f"{raw_kind}_features", opset=max(target, 18), ir_version=model.ir_version, input_name=raw_kind
                )
                if target == 17:
                    pre = onnx_utils.downgrade_to_opset17(pre)
                    pre.ir_version = model.ir_version
                encoder_copy = onnx.ModelProto()
                encoder_copy.CopyFrom(model)
                composed = pp.compose(pre, encoder_copy, kind)
                composed.graph.name = f"bindrt_{modality}_{raw_kind}"
                self.stage(
                    composed,
                    modality,
                    raw_kind,
                    precision,
                    variant,
                    {
                        **info,
                        "preprocessing": pp.describe(raw_kind),
                        "composed_from": graph_key(kind, precision, variant),
                        "passes": (
                            "bindrt in-graph preprocessing (standard ONNX ops) + onnx.compose.merge_models",
                            *PASSES_CHECK,
                        ),
                    },
                    reference,
                    validate,
                )

    def _quantize(self, model, kind: str):
        from bindrt.export.int8 import quantize
        from bindrt.export.validate import calibration_feeds

        calibration = calibration_feeds(kind, kind) if self.int8_method == "static" else None
        return quantize(model, method=self.int8_method, per_channel=self.per_channel, calibration=calibration)

    def _fused(self, kind: str, encoder, out_dim: int):
        from bindrt.export import onnx_utils
        from bindrt.export.fusion import fused_attention, ort_transformer_fusions, translation_table
        from bindrt.export.torch_export import export_encoder

        modality = GRAPH_KINDS[kind].modality
        self.progress(f"exporting {modality}/{kind} fused variant")
        with fused_attention(encoder):
            model = export_encoder(
                kind,
                encoder,
                opset=self.opset,
                custom_translation_table=translation_table(),
                pooled_last_block=self.pooled_last_block,
            )
        onnx_utils.set_io_signature(model, kind, out_dim)
        attention = sum(1 for n in model.graph.node if n.op_type == "Attention" and n.domain == "com.microsoft")
        model, fusions = ort_transformer_fusions(
            model, self.config.num_heads(modality), self.config.embed_dim(modality)
        )
        onnx_utils.set_io_signature(model, kind, out_dim)
        stats = fusions["fused_operator_statistics"]
        stats["Attention"] = max(stats.get("Attention", 0), attention)
        return model, fusions

    # -- commit ----------------------------------------------------------------
    def commit(self, text_vocab: bool) -> None:
        bundle = self.bundle
        before = copy.deepcopy(bundle.manifest)
        backups: dict[str, Path] = {}
        added: list[str] = []
        backup_dir = self.staging / ".backup"
        try:
            for g in self.staged:
                for rel_name in [*g.external, g.path.name]:
                    rel = f"onnx/{g.modality}/{rel_name}"
                    final = bundle.path / rel
                    if final.exists():
                        backup_dir.mkdir(exist_ok=True)
                        backups[rel] = backup_dir / f"{len(backups)}"
                        shutil.copy2(final, backups[rel])
                    src = g.path.parent / rel_name
                    bundle.add_file(rel, lambda tmp, s=src: os.replace(s, tmp))
                    added.append(rel)
                section = read_artifact(bundle, g.modality, ARTIFACT_KEY) or OnnxArtifact(
                    format=ONNX_FORMAT, version=ONNX_FORMAT_VERSION, graphs={}
                )
                old = section.graphs.get(g.key)
                if old:  # a replaced graph may have had external data that is no longer used
                    for rel in old.external_data:
                        if rel not in g.record.external_data and rel in bundle.manifest["files"]:
                            bundle.remove_file(rel)
                write_artifact(bundle, g.modality, ARTIFACT_KEY, section.with_graph(g.record))
            if text_vocab:
                from importlib import resources

                data = resources.files("bindrt.preprocess").joinpath(VOCAB_FILE).read_bytes()
                rel = f"onnx/text/{VOCAB_FILE}"
                bundle.add_file(rel, lambda tmp: tmp.write_bytes(data))
                added.append(rel)
            bundle.manifest.setdefault("history", []).append(
                {
                    "stage": "export",
                    "time": now_iso(),
                    "graphs": [f"{g.modality}/{g.key}" for g in self.staged],
                }
            )
            bundle.manifest.setdefault("producer", {}).update(
                {
                    k: v
                    for k, v in producer_versions("torch", "onnx", "onnxruntime", "onnxscript").items()
                    if k != "python"
                }
            )
            bundle.save()
        except BaseException:
            bundle.manifest.clear()
            bundle.manifest.update(before)
            for rel in added:
                if rel in backups:
                    shutil.copy2(backups[rel], bundle.path / rel)
                elif rel not in before["files"]:
                    (bundle.path / rel).unlink(missing_ok=True)
            raise


def export_bundle(
    bundle: "str | os.PathLike[str] | Bundle",
    *,
    modalities: "Sequence[str] | str | None" = None,
    precisions: "Sequence[str] | str" = ("fp32",),
    opset: int = DEFAULT_OPSET,
    with_preprocessing: bool = False,
    fused: bool = False,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    int8_method: str = "dynamic",
    per_channel: bool = True,
    pooled_last_block: bool = True,
    nncf: bool = False,
    targets: "Sequence[str]" = (),
    calibration: "Mapping[str, np.ndarray] | None" = None,
    modelopt: bool = False,
    validate: bool = True,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Export, check and validate ONNX graphs of a bundle's encoders; record them in its manifest.

    ``nncf`` also writes, per input kind, the int8 graph NNCF quantizes for OpenVINO
    (``<kind>.int8.nncf``, see :mod:`bindrt.export.int8_nncf`). ``targets=("tensorrt",)`` checks
    every graph against the ONNX-TensorRT operator matrix (recorded as ``tensorrt``); one meant for
    TensorRT (plain fp32/fp16, NNCF Q/DQ int8) that fails it fails the export. ``calibration``
    (input kind -> preprocessed batch, e.g. from :func:`bindrt.export.validate.calibration_from_media`)
    calibrates the NNCF graphs of those kinds on the user's own inputs (plus the layout-random
    held-out items) instead of the mirrored sample media. ``modelopt`` also writes, per input
    kind, int8 and fp8 Q/DQ graphs for TensorRT (``<kind>.int8.modelopt``, ``<kind>.fp8.modelopt``,
    see :mod:`bindrt.export.qdq_modelopt`), calibrated the same way.

    ``pooled_last_block`` (default) traces the last transformer block for the pooled token
    only (exact; see ``ModalityEncoder.embed_pooled``); False traces the reference forward as is.

    Returns ``{"<modality>/<key>": record}`` of the graphs written. Raises
    :class:`ExportError` (naming modality, graph and metric) when a graph fails its
    checks or tolerance -- nothing is written then.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    mods = check_modalities(modalities, bundle.modalities)
    precs = parse_precisions(precisions)
    check_opset(opset)
    if int8_method not in ("dynamic", "static"):
        raise ConfigError(f"unknown int8 method {int8_method!r}; expected 'dynamic' or 'static'")
    targets = tuple(targets)
    unknown = sorted(set(targets) - set(EXPORT_TARGETS))
    if unknown:
        raise ConfigError(f"unknown export target(s) {unknown}; expected {', '.join(EXPORT_TARGETS)}")
    _check_writable(bundle)
    progress = progress or (lambda msg: None)

    from bindrt.export.validate import Reference
    from bindrt.runtime.base import ModelSource

    encoders = EncodersFromSource(ModelSource(config=bundle.config, bundle=bundle), tuple(mods))()
    reference = Reference(encoders)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-staging-", dir=bundle.path))
    try:
        exporter = _Exporter(
            bundle,
            staging,
            opset,
            external_data_threshold,
            progress,
            int8_method,
            per_channel,
            pooled_last_block,
            nncf,
            targets,
            calibration,
            modelopt,
        )
        for m in mods:
            exporter.export_modality(m, encoders[m], precs, fused, with_preprocessing, reference, validate)
        exporter.commit(text_vocab="text" in mods)
        return {f"{g.modality}/{g.key}": g.record.to_dict() for g in exporter.staged}
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write ONNX graphs into bundle {bundle.path}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def validate_bundle(
    bundle: "str | os.PathLike[str] | Bundle",
    *,
    modalities: "Sequence[str] | str | None" = None,
    precisions: "Sequence[str] | str | None" = None,
    update_manifest: bool = True,
    raise_on_failure: bool = True,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Re-validate every exported graph (checksums first) and store the results in the manifest.

    Raises ExportError listing every graph that misses its tolerance (after saving the
    results) unless ``raise_on_failure`` is False.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    if update_manifest and not is_writable_dir(bundle.path):  # say so before minutes of validation, not after
        raise OutputError(
            f"bundle {bundle.path} is not writable, so the results cannot be recorded in its manifest; "
            "pass update_manifest=False (CLI: --no-update) to only check"
        )
    mods = check_modalities(modalities, bundle.modalities)
    precs = parse_precisions(precisions, PRECISIONS) if precisions else PRECISIONS
    progress = progress or (lambda msg: None)
    where = str(bundle.path / "manifest.json")
    todo = [
        (m, key, rec)
        for m in mods
        for key, rec in onnx_graphs(bundle.modality(m), where, m).items()
        if rec.precision in precs
    ]
    if not todo:
        raise BundleError(
            f"bundle {bundle.path} has no exported ONNX graphs for {', '.join(mods)} "
            f"({', '.join(precs)}); run `bindrt export {bundle.path}` first"
        )
    from bindrt.export.validate import Reference, validate_graph
    from bindrt.runtime.base import ModelSource

    for _, _, rec in todo:
        bundle.file(rec.file, verify=True)
        for rel in rec.external_data:
            bundle.file(rel, verify=True)
    encoders = EncodersFromSource(
        ModelSource(config=bundle.config, bundle=bundle), tuple(sorted({m for m, _, _ in todo}))
    )()
    reference = Reference(encoders)
    results: dict[str, dict[str, Any]] = {}
    for m, key, rec in todo:
        progress(f"validating {m}/{key}")
        result = validate_graph(
            str(bundle.path / rec.file),
            rec.kind,
            rec.precision,
            reference,
            where=f"{m}/{key}",
            **validator(rec.variant, rec.precision),
        )
        result["time"] = now_iso()
        results[f"{m}/{key}"] = result
        if update_manifest:
            graphs = bundle.manifest["modalities"][m]["artifacts"][ARTIFACT_KEY]["graphs"]
            graphs[key] = rec.replace(validation=Validation.from_dict(result, f"{m}/{key} validation")).to_dict()
    results.update(_validate_engines(bundle, mods, precs, reference, update_manifest, progress))
    if update_manifest:
        bundle.manifest.setdefault("history", []).append(
            {
                "stage": "validate",
                "time": now_iso(),
                "passed": all(r["passed"] for r in results.values()),
                "graphs": sorted(results),
            }
        )
        bundle.save()
    if raise_on_failure:
        raise_failures(results)
    return results


#: what ``bindrt export --target`` checks graphs for
EXPORT_TARGETS = ("tensorrt",)


def validator(variant: str, precision: str) -> dict[str, Any]:
    """Where a graph is validated: NNCF graphs on OpenVINO (where they run); Model Optimizer fp8 graphs on
    ONNX Runtime with graph optimizations off; bf16 graphs on ONNX Runtime in fp32 emulation (it has no
    bf16 kernels); the rest on ONNX Runtime as it loads them."""
    if precision == "bf16":
        from bindrt.export.validate import emulated_bf16_runtime, emulated_bf16_session

        return {"session_factory": emulated_bf16_session, "runtime": emulated_bf16_runtime()}
    if variant == "nncf":
        from bindrt.export.int8_nncf import OpenVinoSession

        return {"session_factory": OpenVinoSession, "runtime": OpenVinoSession.runtime()}
    if variant == "modelopt":
        from bindrt.export.qdq_modelopt import runtime, session_factory

        return {"session_factory": session_factory(precision), "runtime": runtime(precision)}
    return {}


def _validate_engines(bundle: Bundle, mods, precs, reference, update_manifest: bool, progress) -> dict[str, Any]:
    """The bundle's TensorRT engines through the same suites (where TensorRT and a GPU are here; never run yet)."""
    from bindrt.export.validate import validate_graph
    from bindrt.schema import TENSORRT_KEY
    from bindrt.tensorrt.build import installed_version
    from bindrt.tensorrt.engines import engine_records, record_engine

    engines = [(m, rec) for m in mods for rec in engine_records(bundle, m).values() if rec.precision in precs]
    if not engines:
        return {}
    if installed_version() is None:
        progress(f"note: {len(engines)} TensorRT engine(s) not validated: TensorRT is not installed here")
        return {}
    import bindrt

    results: dict[str, Any] = {}
    for m, rec in engines:
        model = bindrt.load(bundle.path, backend="tensorrt", device="cuda:0", precision=rec.precision, modalities=[m])

        class Session:  # the two calls validate_graph makes, on the engine (batches split to its profile)
            def get_inputs(self) -> list[Any]:
                return [type("Input", (), {"name": rec.kind})()]

            def run(self, _outputs: Any, feed: dict[str, Any], model=model) -> list[Any]:
                return [model.encode(rec.kind, next(iter(feed.values())))]

        progress(f"validating {m}/{TENSORRT_KEY}/{rec.key}")
        result = validate_graph(
            str(bundle.path / rec.file),
            rec.kind,
            rec.precision,
            reference,
            where=f"{m}/{TENSORRT_KEY}/{rec.key}",
            session_factory=lambda _path: Session(),
            runtime={"tensorrt": str(installed_version()), "engine": rec.file},
        )
        result["time"] = now_iso()
        results[f"{m}/{TENSORRT_KEY}/{rec.key}"] = result
        model.close()
        if update_manifest:
            record_engine(bundle, rec.replace(validation=Validation.from_dict(result, f"{m}/{rec.key} validation")))
    return results


def raise_failures(results: dict[str, dict[str, Any]]) -> None:
    failed = {k: r for k, r in results.items() if not r["passed"]}
    if failed:
        raise ExportError(
            "validation failed: " + " | ".join(f"[{k}] " + "; ".join(r["failures"]) for k, r in failed.items())
        )
