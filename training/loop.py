"""The training loop: image-text, then bind every other modality to the frozen image tower.

Stage ``clip`` (only without ``--init``): the image and text towers learn together
with symmetric InfoNCE; the temperature is the text tower's own learnable logit scale.
Stage ``bind``: the image tower is frozen; each other modality's encoder is trained
with InfoNCE against the image embeddings of the same scenes, with its own learnable
temperature, and never sees text or another modality.

Each stage: AdamW (no decay on gains, biases, tokens and temperatures), linear
warm-up then cosine decay, gradient clipping, autocast (bf16, or fp16 with a
GradScaler) on CUDA. A run directory holds::

    OUT/bundle/              the trained encoders as a bindrt bundle (+ eval/report.json)
    OUT/checkpoints/last.pt  model, optimizer, scheduler, scaler, RNG states, step
    OUT/train.jsonl          one JSON object per line: start, bad_data, step, eval, end

Data position = step (see :mod:`.data`), so ``--resume`` continues the exact
sequence of batches, and with the restored RNG states reproduces the loss curve.
Under ``torchrun`` (WORLD_SIZE > 1) each rank renders its slice of the global batch
and gradients are averaged by DistributedDataParallel (contrastive negatives are
the rank's local batch); rank 0 logs, checkpoints, evaluates and writes the bundle.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from bindrt.bundle import BUNDLE_WHAT, Bundle
from bindrt.config import ImageBindConfig, resolve_config
from bindrt.errors import ConfigError, OutputError

from .losses import Temperature, info_nce, retrieval_accuracy, text_scale
from .world import SIBLINGS

BOUND = ("audio", "depth", "thermal", "imu")


@dataclass
class TrainConfig:
    """Everything that defines a run. Fields marked ``resumable`` may change on ``--resume``."""

    out: str
    preset: str = "tiny"  # model config: preset name or JSON file (ignored with init)
    steps: int = 600  # total optimizer steps over both stages
    modalities: tuple[str, ...] = BOUND  # encoders bound to the image tower
    batch_size: int = 48  # global batch (split across DDP ranks)
    clip_fraction: float = 0.5  # share of steps for image-text (when no init)
    clip_lr: float = 2e-3
    bind_lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # warm-up share of each stage's steps
    grad_clip: float = 1.0
    seed: int = 0
    eval_seed: int | None = None  # held-out world (default seed + 1000)
    eval_samples: int = 500
    gallery: int = 100
    pool: int = 0  # world scenes pre-rendered and cycled (0: a fresh scene every sample)
    init: str | None = None  # reference checkpoint for the image (and text) tower
    init_config: str | None = None
    fresh: bool = False  # with init: bound modalities start from scratch, not from init
    data: str | None = None  # real data: folder or manifest of image-paired files
    on_bad_data: str = "stop"
    val_fraction: float = 0.1
    amp: str = "auto"  # auto | off | bf16 | fp16
    device: str = "auto"
    # resumable (do not change the run's result)
    workers: int = 1
    threads: int = 0  # torch CPU threads (0: leave torch's default)
    log_every: int = 10
    ckpt_every: int = 100
    stop_at: int | None = None  # stop after this step with a checkpoint (simulates preemption)
    overwrite: bool = False
    resume: bool = False
    quiet: bool = False

    RESUMABLE = (
        "workers",
        "threads",
        "log_every",
        "ckpt_every",
        "stop_at",
        "overwrite",
        "resume",
        "quiet",
        "device",
        "out",
    )

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self.RESUMABLE}


# ----------------------------------------------------------------------------- helpers


class RunLog:
    """Console lines (rank 0 only) and the JSONL log."""

    def __init__(self, path: Path | None, quiet: bool = False) -> None:
        self.path, self.quiet = path, quiet

    def event(self, event: str, **fields: Any) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}) + "\n")

    def say(self, text: str) -> None:
        if self.path is not None and not self.quiet:
            print(text, flush=True)


def lr_lambda(warmup: int, total: int, floor: float = 0.05, hold: float = 0.4) -> Callable[[int], float]:
    """Linear warm-up, the peak held for ``hold`` of the steps, then a cosine decay to ``floor``.

    The hold matters for contrastive training from scratch: both towers sit near a saddle
    (all embeddings alike) for a variable number of steps before the loss starts to fall,
    and a plain cosine schedule has often spent half its learning rate by then.
    """
    plateau = max(warmup, int(hold * total))

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if step < plateau:
            return 1.0
        progress = (step - plateau) / max(total - plateau, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or name.endswith(("cls_token", "pos_embed", "bias_k", "bias_v", "log_scale"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def rng_state() -> dict[str, Any]:
    """Every RNG's state as tensors and plain containers only, so resuming never needs a full unpickler."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_checkpoint_dir(path: Path) -> bool:
    """OUT/checkpoints as `bindrt train` leaves it: a real directory holding only last.pt and its temporaries."""
    return (
        path.is_dir()
        and not path.is_symlink()
        and all(
            p.name == "last.pt" or (p.name.startswith(".last.pt.") and p.name.endswith(".tmp")) for p in path.iterdir()
        )
    )


def _is_run_log(path: Path) -> bool:
    """OUT/train.jsonl as `bindrt train` writes it: a regular file whose first line is a JSON event."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(first, dict) and "event" in first


#: What ``--overwrite`` may delete in OUT, each with the test that it is what bindrt wrote there.
RUN_OUTPUTS = {
    "bundle": (Bundle.is_bundle, BUNDLE_WHAT),
    "checkpoints": (_is_checkpoint_dir, "bindrt train checkpoint directory (only last.pt)"),
    "train.jsonl": (_is_run_log, "bindrt train log (JSON lines)"),
}


def clear_run(out: Path) -> None:
    """``--overwrite``: delete an earlier run's outputs, only after checking every one of them is bindrt's own."""
    from bindrt.fileio import ensure_replaceable, remove_replaceable

    for name, (is_ours, what) in RUN_OUTPUTS.items():
        ensure_replaceable(out / name, is_ours=is_ours, what=what)
    for name, (is_ours, what) in RUN_OUTPUTS.items():
        remove_replaceable(out / name, is_ours=is_ours, what=what)


#: What a training checkpoint holds; anything else in OUT/checkpoints/last.pt is not bindrt's.
CHECKPOINT_KEYS = (
    "step",
    "stage",
    "config",
    "model_config",
    "encoders",
    "temperatures",
    "optimizer",
    "scheduler",
    "scaler",
    "rng",
)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``--resume``'s checkpoint with ``weights_only=True`` (a planted pickle cannot run) and check its layout."""
    from bindrt.errors import CheckpointError
    from bindrt.model.checkpoint import safe_torch_load

    ckpt = safe_torch_load(path, "training checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing or not isinstance(ckpt["config"], dict) or not isinstance(ckpt["step"], int):
        raise CheckpointError(
            f"training checkpoint {path} is not one `bindrt train` wrote (missing or invalid: "
            f"{', '.join(missing) or 'config/step'}); expected OUT/checkpoints/last.pt of an earlier run"
        )
    return ckpt


def save_atomic(obj: Any, path: Path) -> None:
    from bindrt.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def setup_distributed(device: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; one process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist()
    import torch.distributed as tdist

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    return Dist(tdist.get_rank(), tdist.get_world_size(), local)


def pick_device(spec: str, dist: Dist) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} requested but CUDA is not available")
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device(f"cuda:{dist.local_rank}")
    return device


def pick_amp(spec: str, device: torch.device) -> torch.dtype | None:
    if spec not in ("auto", "off", "bf16", "fp16"):
        raise ConfigError(f"amp must be auto, off, bf16 or fp16, got {spec!r}")
    if spec == "off" or (spec == "auto" and device.type != "cuda"):
        return None
    if spec == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if spec == "bf16" else torch.float16


# ----------------------------------------------------------------------------- model


class StageModel(nn.Module):
    """What one stage trains: ``forward(batch) -> (loss, {name: loss or metric})``."""

    def __init__(
        self, stage: str, encoders: nn.ModuleDict, temperatures: nn.ModuleDict, bound: tuple[str, ...]
    ) -> None:
        super().__init__()
        self.stage, self.encoders, self.temperatures, self.bound = stage, encoders, temperatures, bound
        trained = ("vision", "text") if stage == "clip" else bound
        for name, enc in encoders.items():
            enc.requires_grad_(name in trained)
            enc.train(name in trained)
        for name, t in temperatures.items():
            t.requires_grad_(stage == "bind" and name in bound)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        if self.stage == "clip":
            image, text = self.encoders["vision"](batch["vision"]), self.encoders["text"](batch["text"])
            scale = text_scale(self.encoders["text"])
            loss = info_nce(image, text, scale)
            return loss, {"clip": loss.item(), "scale": scale.item(), "acc": retrieval_accuracy(image, text)}
        if "image" in batch:  # frozen image embeddings, computed once per pooled sample
            image = batch["image"]
        else:
            with torch.no_grad():
                image = self.encoders["vision"](batch["vision"])
        losses, metrics = [], {}
        for m in self.bound:
            emb = self.encoders[m](batch[m])
            loss = info_nce(emb, image, self.temperatures[m]())
            losses.append(loss)
            metrics[m] = loss.item()
            metrics[f"{m}_acc"] = retrieval_accuracy(emb, image)
        return torch.stack(losses).sum(), metrics


def init_for_small_models(encoder: nn.Module) -> nn.Module:
    """Fresh-training init: Linear/Conv weights ~ N(0, 1/fan_in) instead of the reference's N(0, 0.02).

    At 64 dims the reference init leaves the CLS output almost input-independent (mean
    cosine ~0.99 between unrelated images), so contrastive training sits on a saddle for
    hundreds of steps; fan-in scaling gives ~0.5 and learning starts at once. Position
    embeddings, tokens and temperatures keep the reference init. Architecture unchanged.
    """
    for module in encoder.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(module.weight, std=module.weight[0].numel() ** -0.5)
    for name, p in encoder.named_parameters():
        if name.endswith("in_proj_weight"):
            nn.init.trunc_normal_(p, std=p.shape[1] ** -0.5)
    return encoder


def build_encoders(
    cfg: TrainConfig, bound: tuple[str, ...], log: RunLog
) -> tuple[ImageBindConfig, nn.ModuleDict, bool]:
    """Fresh encoders, or image/text (and bound, unless ``fresh``) from a reference checkpoint.

    Returns (model config, encoders, whether the image-text stage is needed).
    """
    from bindrt.model import build_encoder, load_encoder
    from bindrt.model.checkpoint import read_state_dict, split_state_dict

    if cfg.init is None:
        config = resolve_config(cfg.preset)
        fresh = {m: init_for_small_models(build_encoder(m, config)) for m in ("vision", "text", *bound)}
        return config, nn.ModuleDict(fresh), True
    if cfg.init_config is None:
        raise ConfigError(
            "--init needs --init-config (the checkpoint's preset name or JSON config, e.g. golden or imagebind_huge)"
        )
    config = resolve_config(cfg.init_config)
    state = read_state_dict(cfg.init)
    present = {k.split(".")[1] for k in state if k.count(".") >= 2}
    if "vision" not in present:
        raise ConfigError(f"--init {cfg.init} has no vision tower; binding needs a pretrained image encoder")
    from_init = [m for m in ("vision", "text", *bound) if m in present and (m in ("vision", "text") or not cfg.fresh)]
    weights = (
        split_state_dict({k: v for k, v in state.items() if k.split(".")[1] in from_init}, config, from_init)
        if from_init
        else {}
    )
    encoders = {}
    for m in ("vision", "text", *bound):
        if m in from_init:
            encoders[m] = load_encoder(m, config, weights[m]).requires_grad_(True)
            # load_encoder assigns (possibly memory-mapped) checkpoint tensors: give training its own copies
            for p in encoders[m].parameters():
                p.data = p.data.clone()
            for name, b in encoders[m].named_buffers():
                b.data = b.data.clone()
        elif m != "text":
            encoders[m] = init_for_small_models(build_encoder(m, config))
    log.say(
        f"init: {', '.join(from_init)} from {cfg.init} (config {cfg.init_config}); "
        f"fresh: {', '.join(m for m in encoders if m not in from_init) or 'none'}"
    )
    return config, nn.ModuleDict(encoders), False


@torch.no_grad()
def embed_images(
    vision: nn.Module,
    source: Any,
    n: int,
    device: torch.device,
    amp: torch.dtype | None,
    workers: int = 0,
    batch_size: int = 64,
) -> Tensor:
    """Embeddings of the first ``n`` images of ``source`` (rows in index order) by the frozen tower."""
    from torch.utils.data import DataLoader

    from .data import _Render, _single_thread, collate, private_generator

    vision.eval()
    loader = DataLoader(
        _Render(source, ("vision",), n),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_single_thread,
        generator=private_generator(),
    )
    out = []
    for batch in loader:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out.append(vision(batch["vision"].to(device)).float())
    return torch.cat(out)


def bundle_weights(encoders: nn.ModuleDict) -> dict[str, dict[str, Tensor]]:
    from bindrt.model.checkpoint import to_reference_key

    return {
        m: {to_reference_key(m, k): v.detach().float().cpu().contiguous() for k, v in enc.state_dict().items()}
        for m, enc in encoders.items()
    }


# ----------------------------------------------------------------------------- the run


@dataclass
class Data:
    """Where a run's batches come from: the world (or a pooled copy of it) or the user's paired files."""

    source: Any
    pool: int | None
    loader_workers: int
    train_idx: list[int] = field(default_factory=list)
    val_idx: list[int] = field(default_factory=list)
    bad_items: list = field(default_factory=list)


@dataclass
class Run:
    """Everything one training run's steps share: settings, placement, model and progress."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    amp: Any
    out: Path
    log: RunLog
    bound: tuple[str, ...]
    config: ImageBindConfig = None  # type: ignore[assignment]
    encoders: nn.ModuleDict = None  # type: ignore[assignment]
    temperatures: nn.ModuleDict = None  # type: ignore[assignment]
    stages: list[tuple[str, int, int]] = field(default_factory=list)
    step: int = 0
    ckpt: dict[str, Any] | None = None

    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoints" / "last.pt"


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; returns a summary with the evaluation report."""
    t_start = time.time()
    run = start_run(cfg)
    build_model(run)
    if cfg.resume:
        restore(run)
    else:
        run.log.event(
            "start",
            config=_jsonable(cfg.identity()),
            model=run.config.to_dict(),
            world_size=run.dist.world_size,
            device=str(run.device),
            amp=str(run.amp) if run.amp else None,
            torch_threads=torch.get_num_threads(),
        )
    data = open_data(run)
    t_train = time.time()
    for stage, first, last in run.stages:
        if run.step < last and not train_stage(run, data, stage, first, last):
            run.log.say(f"stopped at step {run.step} (--stop-at); continue with --resume")
            run.log.event("stopped", step=run.step)
            run.dist.barrier()
            run.dist.close()
            return {"stopped_at": run.step, "out": str(run.out)}
    summary: dict[str, Any] = {"out": str(run.out), "bundle": str(run.out / "bundle"), "steps": run.step}
    if run.dist.main:
        summary |= evaluate_and_bundle(run, data, train_seconds=time.time() - t_train, t_start=t_start)
    run.dist.barrier()
    run.dist.close()
    return summary


def start_run(cfg: TrainConfig) -> Run:
    """Check the settings, place the run (devices, ranks) and prepare OUT (resume, overwrite or new)."""
    dist = setup_distributed(cfg.device)
    device = pick_device(cfg.device, dist)
    amp = pick_amp(cfg.amp, device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bound = tuple(m for m in BOUND if m in cfg.modalities)
    if not bound or len(bound) != len(cfg.modalities):
        raise ConfigError(
            f"--modalities must be a subset of {', '.join(BOUND)} (the towers bound to the image tower), got {list(cfg.modalities)}"
        )
    if cfg.steps < 1 or cfg.batch_size < 2 or cfg.batch_size % dist.world_size:
        raise ConfigError(
            f"need steps >= 1 and a batch size >= 2 divisible by the {dist.world_size} ranks "
            f"(got steps={cfg.steps}, batch_size={cfg.batch_size})"
        )
    if cfg.data and len(bound) != 1:
        raise ConfigError("--data binds exactly one modality: pass --modalities audio (or depth, thermal, imu)")
    if cfg.data and cfg.init is None:
        raise ConfigError("--data trains against a pretrained image tower: pass --init CHECKPOINT --init-config PRESET")
    out = Path(cfg.out)
    ckpt_path = out / "checkpoints" / "last.pt"
    if dist.main:
        if cfg.resume and not ckpt_path.is_file():
            raise OutputError(f"--resume: no checkpoint at {ckpt_path}")
        if not cfg.resume and out.exists() and any(out.iterdir()):
            if not cfg.overwrite:
                raise OutputError(
                    f"{out} already holds a run; pass --resume to continue it or --overwrite to start over"
                )
            clear_run(out)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    dist.barrier()
    log = RunLog(out / "train.jsonl" if dist.main else None, cfg.quiet)
    return Run(cfg, dist, device, amp, out, log, bound)


def build_model(run: Run) -> None:
    """Encoders and temperatures, and the stages: built before RNG states are restored, because
    initialisation consumes the global RNG the same way every time."""
    cfg = run.cfg
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    run.config, run.encoders, need_clip = build_encoders(cfg, run.bound, run.log)
    run.temperatures = nn.ModuleDict({m: Temperature() for m in run.bound})
    run.encoders.to(run.device)
    run.temperatures.to(run.device)
    n_clip = int(round(cfg.steps * cfg.clip_fraction)) if need_clip else 0
    if n_clip >= cfg.steps:
        raise ConfigError(f"clip_fraction {cfg.clip_fraction} leaves no bind steps out of {cfg.steps}")
    run.stages = [("clip", 0, n_clip), ("bind", n_clip, cfg.steps)] if n_clip else [("bind", 0, cfg.steps)]


def restore(run: Run) -> None:
    """``--resume``: the checkpoint's weights and step; optimizer and RNG states follow in ``train_stage``."""
    ckpt = read_checkpoint(run.ckpt_path)
    diff = {
        k: (ckpt["config"].get(k), v) for k, v in run.cfg.identity().items() if ckpt["config"].get(k) != _jsonable(v)
    }
    if diff:
        raise ConfigError(
            "--resume with settings that differ from the checkpoint's run: "
            + "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        )
    run.encoders.load_state_dict(ckpt["encoders"])
    run.temperatures.load_state_dict(ckpt["temperatures"])
    run.step, run.ckpt = ckpt["step"], ckpt
    run.log.say(f"resumed from {run.ckpt_path} at step {run.step}/{run.cfg.steps}")
    run.log.event("resume", step=run.step)


def open_data(run: Run) -> Data:
    """The user's paired files (split into training and held-out pairs) or the procedural world."""
    from .data import CachedSource, WorldSource, open_paired_files

    cfg, log = run.cfg, run.log
    if cfg.data:

        def report_bad(bad: list) -> None:
            log.say(
                f"bad data in {cfg.data}: {len(bad)} item(s) " + ("skipped" if cfg.on_bad_data == "skip" else "found")
            )
            for b in bad:
                log.say(f"  - {b}")
            log.event("bad_data", action=cfg.on_bad_data, items=[b.to_dict() for b in bad])

        source, bad_items = open_paired_files(
            cfg.data,
            run.bound[0],
            on_bad_data=cfg.on_bad_data,
            workers=cfg.workers,
            seed=cfg.seed,
            report=report_bad if run.dist.main else None,
        )
        n_val = int(len(source) * cfg.val_fraction) if len(source) >= 20 else 0
        order = np.random.default_rng([cfg.seed, 17]).permutation(len(source))
        val_idx, train_idx = sorted(order[:n_val].tolist()), order[n_val:].tolist()
        log.say(f"data: {len(train_idx)} training pairs, {n_val} held out ({cfg.data})")
        return Data(_Subset(source, train_idx), len(train_idx), cfg.workers, train_idx, val_idx, bad_items)
    source: Any = WorldSource(cfg.seed)
    if not cfg.pool:
        return Data(source, None, cfg.workers)
    needed = ("vision", "text", *run.bound) if run.stages[0][0] == "clip" else ("vision", *run.bound)
    t0 = time.time()
    # nothing else runs while the pool renders: use every core (the result does not depend on it)
    source = CachedSource(source, needed, cfg.pool, workers=max(cfg.workers, min(os.cpu_count() or 1, 8)))
    log.say(
        f"pool: rendered {cfg.pool} scenes ({', '.join(needed)}) in {time.time() - t0:.0f}s, {source.nbytes() / 1e9:.2f} GB"
    )
    # batches are slices of memory: one worker overlaps them with compute
    return Data(source, cfg.pool, min(cfg.workers, 1))


def train_stage(run: Run, data: Data, stage: str, first: int, last: int) -> bool:
    """Train steps ``run.step .. last`` of one stage; False if ``--stop-at`` stopped it first."""
    from .data import StepBatches, step_loader

    cfg, encoders, device, amp = run.cfg, run.encoders, run.device, run.amp
    model = StageModel(stage, encoders, run.temperatures, run.bound)
    mods = ("vision", "text") if stage == "clip" else ("vision", *run.bound)
    trainable = nn.ModuleList([encoders, run.temperatures])
    optimizer = torch.optim.AdamW(
        param_groups(trainable, cfg.weight_decay),
        lr=cfg.clip_lr if stage == "clip" else cfg.bind_lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    n = last - first
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(max(1, int(cfg.warmup * n)), n))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    ckpt = run.ckpt
    if ckpt is not None and ckpt["stage"] == stage and ckpt["step"] > first:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
    if ckpt is not None:
        set_rng_state(ckpt["rng"])
        run.ckpt = None
    ddp = model
    if run.dist.world_size > 1:
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    image_cache = None
    if stage == "bind" and data.pool:  # the image tower is frozen: embed each pooled image once
        t0 = time.time()
        image_cache = embed_images(
            encoders["vision"], data.source, data.pool, device, amp, workers=data.loader_workers or cfg.workers
        )
        mods = run.bound
        run.log.say(f"frozen image tower: embedded the {data.pool} pooled images once ({time.time() - t0:.0f}s)")
    batches = StepBatches(
        data.source,
        mods,
        cfg.batch_size // run.dist.world_size,
        seed=cfg.seed,
        rank=run.dist.rank,
        world_size=run.dist.world_size,
        pool=data.pool,
        group=1 if cfg.data else SIBLINGS,
    )
    run.log.say(
        f"stage {stage}: steps {first}..{last - 1}, training {', '.join(('vision', 'text') if stage == 'clip' else run.bound)}"
        + (" against the frozen image tower" if stage == "bind" else "")
    )
    costs = stage_costs(run, frozen_images=bool(data.pool))
    t_stage, seen = time.time(), 0
    stop = last if cfg.stop_at is None else min(last, cfg.stop_at)
    for batch in step_loader(batches, run.step, stop, data.loader_workers):
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        if image_cache is not None:
            batch["image"] = image_cache[batch["index"]]
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, metrics = ddp(batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        run.step += 1
        seen += cfg.batch_size
        rate = seen / (time.time() - t_stage)
        run.log.event(
            "step",
            step=run.step,
            stage=stage,
            loss=loss.item(),
            lr=scheduler.get_last_lr()[0],
            grad_norm=float(grad_norm),
            samples_per_s=round(rate, 2),
            **metrics,
        )
        if run.step % cfg.log_every == 0 or run.step == last:
            eta = remaining_seconds(run.stages, run.step, stage, rate * costs[stage], costs, cfg.batch_size)
            parts = " ".join(f"{k} {v:.3f}" for k, v in metrics.items() if not k.endswith("_acc") and k != "acc")
            run.log.say(
                f"[{stage}] step {run.step}/{cfg.steps} loss {loss.item():.4f} ({parts}) lr {scheduler.get_last_lr()[0]:.2e} "
                f"{rate:.1f} samples/s eta {eta / 60:.1f} min"
            )
        if run.dist.main and (run.step % cfg.ckpt_every == 0 or run.step == last or run.step == cfg.stop_at):
            save_atomic(
                {
                    "step": run.step,
                    "stage": stage,
                    "config": _jsonable(cfg.identity()),
                    "model_config": run.config.to_dict(),
                    "encoders": encoders.state_dict(),
                    "temperatures": run.temperatures.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_state(),
                },
                run.ckpt_path,
            )
    return not (cfg.stop_at is not None and run.step >= cfg.stop_at and run.step < cfg.steps)


def stage_costs(run: Run, frozen_images: bool) -> dict[str, float]:
    """Relative compute per sample of each stage, for an ETA that spans both stages.

    A tower costs about parameters x tokens per sample forward, three times that when
    trained (forward + backward). The image-text stage trains vision and text; the bind
    stage trains the bound towers and runs the frozen image tower forward (not at all
    when its embeddings are computed once for the pool).
    """

    def tower(m: str) -> float:
        enc = run.encoders[m]
        tokens = next(v.shape[-2] for k, v in enc.state_dict().items() if k.endswith("pos_embed"))
        return float(sum(p.numel() for p in enc.parameters())) * tokens

    bind = sum(3 * tower(m) for m in run.bound) + (0.0 if frozen_images else tower("vision"))
    return {"clip": 3 * (tower("vision") + tower("text")), "bind": bind}


def remaining_seconds(
    stages: list[tuple[str, int, int]],
    step: int,
    stage: str,
    work_per_s: float,
    costs: dict[str, float],
    batch_size: int,
) -> float:
    """Seconds left over this and every later stage at the current rate of work (samples/s x cost)."""
    left = 0.0
    for name, first, last in stages:
        steps = max(0, last - max(step, first))
        left += steps * batch_size * costs[name] / max(work_per_s, 1e-9)
    return left


def evaluate_and_bundle(run: Run, data: Data, *, train_seconds: float, t_start: float) -> dict[str, Any]:
    """Rank 0 after the last step: the evaluation report, then OUT/bundle with it inside."""
    from bindrt.bundle import write_bundle

    from .evaluate import evaluate_pairs, evaluate_world

    cfg, log = run.cfg, run.log
    t0 = time.time()
    eval_encoders = {m: run.encoders[m] for m in run.encoders}
    if cfg.data:
        report = (
            evaluate_pairs(
                eval_encoders, data.source.base, data.val_idx, run.bound[0], gallery=cfg.gallery, device=run.device
            )
            if data.val_idx
            else {}
        )
        report["data"] = {
            "path": cfg.data,
            "pairs": len(data.train_idx) + len(data.val_idx),
            "skipped": [b.to_dict() for b in data.bad_items],
        }
    else:
        eval_seed = cfg.seed + 1000 if cfg.eval_seed is None else cfg.eval_seed
        report = evaluate_world(
            eval_encoders,
            seed=eval_seed,
            samples=cfg.eval_samples,
            gallery=cfg.gallery,
            workers=cfg.workers,
            device=run.device,
        )
    report["training"] = {
        "steps": run.step,
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(time.time() - t0, 1),
        "batch_size": cfg.batch_size,
        "stages": [s[0] for s in run.stages],
        "stage_steps": {s[0]: s[2] - s[1] for s in run.stages},
        "seed": cfg.seed,
    }
    log.event("eval", report=report)
    write_bundle(
        run.out / "bundle",
        run.config,
        bundle_weights(run.encoders),
        stage="train",
        source=f"bindrt train ({'init ' + cfg.init if cfg.init else 'preset ' + cfg.preset})",
        extra_files={"eval/report.json": (json.dumps(report, indent=1) + "\n").encode()},
        overwrite=True,
    )
    total = time.time() - t_start
    log.event("end", seconds=round(total, 1))
    log.say(format_report(report))
    log.say(f"bundle: {run.out / 'bundle'} (eval/report.json inside); total {total / 60:.1f} min")
    return {"report": report, "seconds": total}


class _Subset:
    def __init__(self, base: Any, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def get(self, index: int, modalities: Any, visit: int = 0) -> dict:
        return {**self.base.get(self.indices[index], modalities, visit), "index": index}


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list))


def format_report(report: dict[str, Any]) -> str:
    lines = []
    if "zero_shot_top1" in report:
        chance = report["world"]["chance_top1"]
        lines.append(
            f"zero-shot top-1 vs text prompts (chance {chance:.0%}; all but vision are emergent): "
            + ", ".join(f"{m} {v:.1%}" for m, v in report["zero_shot_top1"].items())
        )
    if "retrieval" in report:
        r = report["retrieval"]
        lines.append(
            f"retrieval in galleries of {r['gallery']} (chance R@5 {r['chance']['R@5']:.0%}): "
            + ", ".join(f"{k} R@1 {v['R@1']:.1%} R@5 {v['R@5']:.1%}" for k, v in r.items() if "->" in k)
        )
    if "arithmetic" in report:
        a = report["arithmetic"]
        lines.append(
            f"image+audio arithmetic, top-1 has the audio's class and the image's colour: sum {a['image+audio']['both@1']:.1%}, "
            f"z-scored sum {a['image+audio (z)']['both@1']:.1%} (image alone {a['image']['both@1']:.1%}, "
            f"audio alone {a['audio']['both@1']:.1%}, chance {a['chance_both']:.1%})"
        )
    for k, v in report.items():
        if "->image" in k:
            lines.append(f"held-out {k}: R@1 {v['R@1']:.1%} R@5 {v['R@5']:.1%} (gallery {report['gallery']})")
    return "\n".join(lines)
