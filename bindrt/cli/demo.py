"""bindrt demo: the whole pipeline on an embedded default, no downloads, CPU only.

Each step is the real CLI command a user would run, so the demo doubles as a
walk-through: train -> export (+ validate) -> bench -> embed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The demo's shortened training schedule (~9 minutes on 2 CPU cores, zero-shot ~50-99%; the full tiny
#: preset's schedule is what the README's accuracy figures come from).
DEMO_STEPS = 800


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline end to end on an embedded default",
        description="Train a tiny model on the procedural multimodal world (bindrt train; with --no-train a seeded "
        "random checkpoint in the reference layout converted with bindrt convert), export it to ONNX fp32/int8 with "
        "validation (bindrt export), benchmark the available backends (bindrt bench), and embed the packaged sample "
        "media and texts (bindrt embed). Minutes on a laptop CPU.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="working directory (default: $XDG_CACHE_HOME/bindrt/demo, i.e. ~/.cache/bindrt/demo; printed at start)",
    )
    p.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train the tiny model with bindrt train (default), or --no-train: seeded random weights",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEMO_STEPS,
        help=f"training steps (default {DEMO_STEPS}, a shortened schedule; `bindrt train --preset tiny` "
        "runs the full one)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-train", action="store_true", help="reuse OUT/train/bundle from an earlier demo")
    p.set_defaults(func=run)


def default_workdir() -> Path:
    """A cache location, not the current directory: the demo writes ~100 MB a user did not ask to keep there."""
    import os

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "bindrt" / "demo"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bindrt.cli import main
    from bindrt.cli.output import make_console
    from bindrt.data import sample
    from bindrt.fileio import atomic_path

    console = make_console()
    out = Path(args.out) if args.out else default_workdir()
    console.print(f"working directory: {out}")
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "train"
    bundle = run_dir / "bundle" if args.train else out / "bundle"

    def step(title: str, argv: list[str]) -> None:
        console.rule(title)
        console.print("$ bindrt " + " ".join(argv), style="dim")
        rc = main(argv)
        if rc:
            raise SystemExit(rc)

    if args.train and not (args.skip_train and bundle.is_dir()):
        train = ["train", "--preset", "tiny", "--out", str(run_dir), "--seed", str(args.seed), "--overwrite"]
        step(
            "1. train a tiny model on the procedural world (image-text, then audio/depth/thermal/IMU bound to images)",
            train + ["--steps", str(args.steps)],
        )
    elif not args.train:
        import torch

        from bindrt.config import PRESETS
        from bindrt.model import ImageBind

        torch.manual_seed(args.seed)
        checkpoint = out / "tiny_random.pth"
        with atomic_path(checkpoint) as tmp:
            torch.save(ImageBind.from_config(PRESETS["tiny"]).reference_state_dict(), tmp)
        step(
            "1. a tiny model (seeded random weights, reference checkpoint layout) -> bundle",
            ["convert", str(checkpoint), "--config", "tiny", "--out", str(bundle), "--overwrite"],
        )
    step(
        "2. export to ONNX (fp32, int8, fused) and validate against PyTorch",
        ["export", str(bundle), "--precision", "fp32,int8", "--fused"],
    )
    step(
        "3. benchmark the backends (speed-up vs torch, same run)",
        [
            "bench",
            str(bundle),
            "--backends",
            "torch",
            "onnxruntime",
            "onnxruntime:int8",
            "--inputs",
            "vision",
            "audio",
            "text",
            "--batch-sizes",
            "1",
            "8",
            "--repeats",
            "5",
            "--out",
            str(out / "bench"),
            "--name",
            "demo",
        ],
    )
    step(
        "4. embed the packaged samples with the int8 ONNX Runtime backend",
        [
            "embed",
            str(bundle),
            "--backend",
            "onnxruntime",
            "--precision",
            "int8",
            "--text",
            "a photo of a dog",
            "a pure sine tone",
            "a red car",
            "--vision",
            str(sample("photo.jpg")),
            "--audio",
            str(sample("tone16k.wav")),
            "--out",
            str(out / "embeddings.npz"),
        ],
    )
    console.print(
        f"[bold green]done[/]: bundle {bundle}"
        + (f", evaluation report {bundle / 'eval' / 'report.json'}" if args.train else "")
    )
    return 0
