"""bindrt demo: the whole pipeline on an embedded default, no downloads, CPU only."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline end to end on an embedded default",
        description="Create a model (a seeded random 'tiny' checkpoint in the reference layout), convert it "
        "to a bundle, and embed the packaged sample media and texts, printing similarities.",
    )
    p.add_argument("--out", default="bindrt-demo", help="working directory (default ./bindrt-demo)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch
    from rich.console import Console

    import bindrt
    from bindrt.cli.embed import print_similarities
    from bindrt.config import PRESETS
    from bindrt.convert import convert_checkpoint
    from bindrt.data import sample
    from bindrt.fileio import atomic_path
    from bindrt.model import ImageBind

    console = Console()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console.rule("1. model")
    torch.manual_seed(args.seed)
    checkpoint = out / "tiny_random.pth"
    with atomic_path(checkpoint) as tmp:
        torch.save(ImageBind.from_config(PRESETS["tiny"]).reference_state_dict(), tmp)
    console.print(f"seeded random 'tiny' checkpoint in the reference layout: {checkpoint}")
    console.rule("2. convert")
    bundle = convert_checkpoint(checkpoint, "tiny", out / "bundle", overwrite=True)
    console.print(f"bundle {bundle.path}: {', '.join(bundle.modalities)}")
    console.rule("3. embed")
    inputs = {
        "text": ["a photo of a dog", "a pure sine tone", "a red car"],
        "vision": [str(sample("photo.jpg"))],
        "audio": [str(sample("tone16k.wav"))],
    }
    with bindrt.load(bundle.path, backend="torch") as model:
        embeddings = model.embed(**inputs)
    print_similarities(console, inputs, embeddings)
    return 0
