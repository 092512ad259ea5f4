"""bindrt train: bind audio, depth, thermal and IMU encoders to an image tower; write a bundle."""

from __future__ import annotations

import argparse

#: Per-preset defaults for options left unset. ``tiny`` is sized to finish in
#: <= 15 minutes on 2 CPU cores; ``small`` is a single-GPU demo.
#: ``pool`` pre-renders that many world scenes once and cycles them (rendering on the fly
#: is ~10x slower than a tiny model trains on 2 cores); it is capped at the number of
#: samples the run will draw.
PRESET_DEFAULTS = {
    "tiny": {"steps": 1100, "batch_size": 48, "workers": 1, "pool": 2400, "clip_fraction": 0.55},
    "small": {"steps": 6000, "batch_size": 256, "workers": 8, "pool": 0, "clip_fraction": 0.4},
}
FALLBACK = {"steps": 1000, "batch_size": 64, "workers": 2, "pool": 0, "clip_fraction": 0.4}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train encoders bound to an image tower (procedural world or your own image-paired files)",
        description="Two stages as in ImageBind: image-text contrastive training (skipped with --init), then each "
        "other modality is trained against the frozen image tower only. Writes OUT/bundle (a bindrt bundle with "
        "eval/report.json), OUT/checkpoints/last.pt and OUT/train.jsonl. Under torchrun, trains with DDP.",
    )
    p.add_argument("--out", required=True, help="run directory (bundle, checkpoints, log)")
    p.add_argument(
        "--preset", default=None, help="model preset or JSON config for training from scratch (default tiny)"
    )
    p.add_argument("--steps", type=int, help="total optimizer steps, both stages (default per preset)")
    p.add_argument(
        "--modalities", default="audio,depth,thermal,imu", help="encoders to bind to the image tower (default all four)"
    )
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="reference checkpoint: image and text towers (frozen) and, unless --fresh, the bound towers",
    )
    p.add_argument("--init-config", help="the checkpoint's preset or JSON config (e.g. golden, imagebind_huge)")
    p.add_argument("--fresh", action="store_true", help="with --init: bound modalities start from random weights")
    p.add_argument(
        "--data", help="folder of image-paired files (x.jpg + x.wav, x.depth.png...) or a .csv/.jsonl manifest"
    )
    p.add_argument(
        "--on-bad-data",
        choices=("skip", "stop"),
        default="stop",
        help="unreadable or mismatched files: stop with a report (default) or skip them (listed in the log)",
    )
    p.add_argument("--batch-size", type=int, help="global batch size (default per preset)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes rendering / decoding data")
    p.add_argument("--pool", type=int, help="pre-render this many world scenes and cycle them (0: fresh scenes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-seed", type=int, help="held-out world seed (default seed + 1000)")
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--clip-fraction", type=float, help="share of steps for the image-text stage (default per preset)")
    p.add_argument("--lr", type=float, help="peak learning rate of both stages (default 2e-3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--amp",
        default="auto",
        choices=("auto", "off", "bf16", "fp16"),
        help="mixed precision (auto: bf16/fp16 on CUDA, off on CPU)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run in OUT")
    p.add_argument(
        "--stop-at", type=int, help="stop after this step, leaving a checkpoint (for preemptible jobs and tests)"
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    from bindrt.cli import modality_list
    from bindrt.errors import ConfigError

    from .loop import TrainConfig

    if args.init and args.preset:
        raise ConfigError("--preset and --init exclude each other: with --init the model config is --init-config")
    preset = args.preset or "tiny"
    defaults = PRESET_DEFAULTS.get(preset, FALLBACK)
    pick = lambda name: getattr(args, name) if getattr(args, name) is not None else defaults[name]  # noqa: E731
    extra = {}
    steps, batch_size = pick("steps"), pick("batch_size")
    pool = args.pool if args.pool is not None else min(defaults["pool"], steps * batch_size)
    if args.lr is not None:
        extra = {"clip_lr": args.lr, "bind_lr": args.lr}
    return TrainConfig(
        out=args.out,
        preset=preset,
        steps=steps,
        modalities=tuple(modality_list(args.modalities)),
        batch_size=batch_size,
        workers=pick("workers"),
        pool=pool,
        seed=args.seed,
        eval_seed=args.eval_seed,
        eval_samples=args.eval_samples,
        clip_fraction=pick("clip_fraction"),
        init=args.init,
        init_config=args.init_config,
        fresh=args.fresh,
        data=args.data,
        on_bad_data=args.on_bad_data,
        device=args.device,
        amp=args.amp,
        threads=args.threads,
        resume=args.resume,
        overwrite=args.overwrite,
        stop_at=args.stop_at,
        log_every=args.log_every,
        ckpt_every=args.ckpt_every,
        **extra,
    )


def run(args: argparse.Namespace) -> int:
    from .loop import train

    summary = train(config_from_args(args))
    return 0 if summary else 1
