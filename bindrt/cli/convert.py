"""bindrt convert: a reference checkpoint -> a bundle."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="make a bundle from a reference ImageBind checkpoint",
        description="Load a reference checkpoint (plain state dict, weights_only=True), check every key and shape "
        "against the config, and write a bundle (manifest.json + per-modality safetensors) atomically.",
    )
    p.add_argument("checkpoint", help="reference checkpoint, e.g. imagebind_huge.pth")
    p.add_argument(
        "--config",
        required=True,
        help="preset name (imagebind_huge, golden, tiny, small) or a JSON file of constructor arguments",
    )
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--modalities", help="comma-separated subset to keep (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bindrt.cli import modality_list
    from bindrt.convert import convert_checkpoint

    bundle = convert_checkpoint(
        args.checkpoint,
        args.config,
        args.out,
        modalities=modality_list(args.modalities) if args.modalities else None,
        overwrite=args.overwrite,
    )
    total = sum(v["bytes"] for v in bundle.manifest["files"].values())
    print(f"wrote bundle {bundle.path} ({', '.join(bundle.modalities)}; {total / 1e6:.1f} MB)")
    return 0
