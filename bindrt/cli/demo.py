"""bindrt demo: the whole pipeline on an embedded default, no downloads, CPU only.

Each step is the real CLI command a user would run, so the demo doubles as a walk-through:
the shipped tiny model (trained on the procedural world, ``bindrt.data.tiny_bundle()``) ->
export (+ validate) -> bench -> index a folder of the world's images -> search it by text ->
classify. ``--train`` retrains the model first; ``--no-train`` uses seeded random weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The demo's shortened training schedule with --train (~9 minutes on 2 CPU cores, zero-shot ~50-99%;
#: the full tiny preset's schedule is what the shipped model and the README's figures come from).
DEMO_STEPS = 800
#: The world images the demo indexes: one per (class, colour) pair below, from a seed no training used.
DEMO_WORLD_SEED, DEMO_IMAGES = 777, 40


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the pipeline end to end on an embedded default",
        description="Takes the shipped tiny model (trained on bindrt's procedural multimodal world; --train retrains "
        "it, --no-train uses seeded random weights), exports it to ONNX fp32/int8 with validation (bindrt export), "
        "benchmarks the backends (bindrt bench), indexes a folder of the world's images (bindrt index), searches it "
        "by text (bindrt search) and classifies images into the world's classes (bindrt classify). Minutes on a "
        "laptop CPU.",
    )
    p.add_argument(
        "--out",
        default=None,
        help="working directory (default: $XDG_CACHE_HOME/bindrt/demo, i.e. ~/.cache/bindrt/demo; printed at start)",
    )
    p.add_argument(
        "--train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="--train: retrain the tiny model with bindrt train; --no-train: seeded random weights "
        "(default: the shipped trained model)",
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
    from bindrt.cli import main
    from bindrt.cli.output import make_console

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

    if args.train:
        if not (args.skip_train and bundle.is_dir()):
            train = ["train", "--preset", "tiny", "--out", str(run_dir), "--seed", str(args.seed), "--overwrite"]
            step(
                "1. train a tiny model on the procedural world (image-text, then audio/depth/thermal/IMU bound to images)",
                train + ["--steps", str(args.steps)],
            )
    elif args.train is False:
        _random_bundle(out, bundle, args.seed, step)
    else:
        _copy_shipped(bundle, console)
    step(
        "2. export to ONNX (fp32, int8, fused) and validate against PyTorch",
        ["export", str(bundle), "--precision", "fp32,int8", "--fused"],
    )
    step(
        "3. benchmark the backends (percentiles, speed-up vs torch, same run)",
        ["bench", str(bundle), "--backends", "torch", "onnxruntime", "onnxruntime:int8", "--modalities", "vision",
         "audio", "text", "--batch", "1,8", "--iters", "5", "--rounds", "1", "--no-peaks", "--out", str(out / "bench"),
         "--name", "demo"],
    )  # fmt: skip
    media = out / "media"
    truth = _world_images(media)
    step(
        "4. index a folder of the world's images",
        ["index", str(bundle), str(media), "--out", str(out / "index"), "--backend", "onnxruntime"],
    )
    target = truth[0]
    step(
        f"5. search the images by text: '{target[1]}' (one of them is {target[0]})",
        ["search", str(out / "index"), "--text", target[1], "-k", "3", "--backend", "onnxruntime"],
    )
    from bindrt.training.world import CLASSES

    picks = truth[:4]
    step(
        "6. classify images into the world's classes by their names alone (zero-shot)",
        ["classify", str(bundle), *(str(media / name) for name, _ in picks), "--labels", ",".join(CLASSES),
         "--templates", "a photo of a {}", "--backend", "onnxruntime", "--out", str(out / "classify.json")],
    )  # fmt: skip
    console.print(f"[bold green]done[/]: bundle {bundle}; the images are {', '.join(n for n, _ in picks)}")
    return 0


def _copy_shipped(bundle: Path, console) -> None:
    """The shipped model, copied where graphs can be exported next to it (the package is read-only)."""
    import shutil

    from bindrt.bundle import BUNDLE_WHAT, Bundle
    from bindrt.data import tiny_bundle
    from bindrt.fileio import remove_replaceable

    console.rule("1. the shipped tiny model (bindrt train --preset tiny on the procedural world)")
    remove_replaceable(bundle, is_ours=Bundle.is_bundle, what=BUNDLE_WHAT)  # a bundle an earlier demo left, only
    shutil.copytree(tiny_bundle(), bundle)
    console.print(f"copied {tiny_bundle()} -> {bundle}")


def _random_bundle(out: Path, bundle: Path, seed: int, step) -> None:
    import torch

    from bindrt.config import PRESETS
    from bindrt.fileio import atomic_path
    from bindrt.model import ImageBind

    torch.manual_seed(seed)
    checkpoint = out / "tiny_random.pth"
    with atomic_path(checkpoint) as tmp:
        torch.save(ImageBind.from_config(PRESETS["tiny"]).reference_state_dict(), tmp)
    step(
        "1. a tiny model (seeded random weights, reference checkpoint layout) -> bundle",
        ["convert", str(checkpoint), "--config", "tiny", "--out", str(bundle), "--overwrite"],
    )


def _world_images(media: Path) -> list[tuple[str, str]]:
    """PNG files of held-out world scenes, named by what they show; returns (file name, caption) pairs."""
    import numpy as np
    from PIL import Image

    from bindrt.training.world import CLASSES, CLIP_MEAN, CLIP_STD, COLOUR_NAMES, World

    media.mkdir(parents=True, exist_ok=True)
    world = World(DEMO_WORLD_SEED)
    out = []
    for i in range(0, 2 * DEMO_IMAGES, 2):  # one scene of each sibling pair
        sample = world.sample(i, ["vision"])
        rgb = np.clip(sample["vision"] * CLIP_STD + CLIP_MEAN, 0, 1).transpose(1, 2, 0)
        colour, cls = COLOUR_NAMES[sample["colour"]], CLASSES[sample["label"]]
        name = f"{i:03d}-{colour}-{cls}.png"
        Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)).save(media / name)
        out.append((name, f"a photo of a {colour} {cls}"))
    return out
