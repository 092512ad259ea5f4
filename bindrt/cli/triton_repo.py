"""``bindrt triton-repo``: a Triton Inference Server model repository from a bundle (imports stay inside ``run``)."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Write a model repository in the layout Triton documents (DIR/<model>/config.pbtxt, DIR/<model>/1/model.onnx | "
    "model.plan | model.py): one <kind>_encoder model per input kind taking the preprocessed tensor, with dims and "
    "dtypes from the manifest's graph records, dynamic batching and instance groups. --platform onnxruntime uses "
    "the bundle's plain ONNX graphs (an L2 normalisation appended), tensorrt the engines of `bindrt build`, python "
    "runs bindrt itself in Triton's Python backend (raw-media <kind> models too). --ensemble adds per kind a "
    "Python-backend <kind>_preprocess model and a <kind> ensemble chaining it to the encoder, so clients send raw "
    "media. Names and tensors: bindrt/serving/protocol.py."
)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes such as 4,8, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("triton-repo", help="write a Triton model repository from a bundle", description=DESCRIPTION)
    p.add_argument("bundle", help="bundle directory with exported graphs (or built engines, for tensorrt)")
    p.add_argument("--out", required=True, help="repository directory to write (refused if non-empty, see --force)")
    p.add_argument("--platform", default="onnxruntime", choices=("onnxruntime", "tensorrt", "python"))
    p.add_argument("--precision", default="fp32", help="graph/engine precision (default fp32)")
    p.add_argument("--modalities", help="comma-separated modalities (default: all in the bundle)")
    p.add_argument("--max-batch", type=int, default=32, help="max_batch_size (default 32)")
    p.add_argument("--preferred-batch", type=_sizes, default=(4, 8), help="preferred batch sizes (default 4,8)")
    p.add_argument("--max-queue-delay-us", type=int, default=1000, help="dynamic batching delay (default 1000)")
    p.add_argument("--instances", type=int, default=1, help="instances per model (default 1)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="instance kind (onnxruntime: default cpu)")
    p.add_argument("--ensemble", action="store_true", help="add raw-media ensembles (Python preprocessing)")
    p.add_argument("--force", action="store_true", help="replace an existing repository this command wrote")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bindrt.cli import modality_list
    from bindrt.serving.repository import write_repository

    record = write_repository(
        args.bundle,
        args.out,
        platform=args.platform,
        precision=args.precision,
        modalities=modality_list(args.modalities) if args.modalities else None,
        max_batch=args.max_batch,
        preferred_batch=args.preferred_batch,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        device=args.device,
        ensemble=args.ensemble,
        force=args.force,
    )
    print(
        f"wrote {record['path']}: {len(record['models'])} model(s), {record['platform']} {record['precision']}"
        f"{' with ensembles' if record['ensemble'] else ''}: {', '.join(record['models'])}"
    )
    return 0
