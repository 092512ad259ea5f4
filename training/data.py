"""Datasets and loaders: the procedural world, a cached pool of it, and real image-paired files.

Every loader here is a map-style dataset whose item ``k`` is the *whole batch of
training step k* for this rank. Which samples step ``k`` holds is a pure function
of ``(seed, k, rank)``, so

* any number of DataLoader workers produce the same batches in the same order,
* resuming at step ``k`` needs nothing but ``k`` (the data position is the step),
* DDP ranks read disjoint slices of the global batch.

Sources (``get(index, modalities) -> dict of numpy arrays``):

* :class:`WorldSource`: the procedural world, rendered on the fly (endless: sample
  indices are never repeated unless a pool size is set).
* :class:`CachedSource`: any source's first ``n`` samples rendered once (in parallel
  workers) and held in memory; training then cycles through them, one seeded
  permutation per epoch.
* :class:`PairedFiles`: a folder or CSV/JSONL manifest of image + one-modality file
  pairs, read through :mod:`bindrt.preprocess`; unreadable or mismatched files are
  reported (file, reason) and either skipped or fatal (``on_bad_data``).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bindrt.errors import ConfigError, InputError

from .world import World

# ----------------------------------------------------------------------------- batching


def collate(samples: Sequence[dict]) -> dict[str, torch.Tensor]:
    """Stack per-sample numpy arrays / scalars into tensors (float16 caches come back as float32)."""
    out = {}
    for key in samples[0]:
        arr = np.stack([np.asarray(s[key]) for s in samples])
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        out[key] = torch.from_numpy(arr)
    return out


class StepBatches(Dataset):
    """Item ``k`` = the batch of training step ``k`` on this rank.

    Global sample positions of step k are ``(k * world_size + rank) * B + [0, B)``.
    With ``pool=None`` a position is the sample index itself (an endless stream of
    new samples); with ``pool=N`` position p maps to ``perm_e[p % N]`` where
    ``perm_e`` is a seeded permutation of range(N) for epoch ``e = p // N`` that keeps
    groups of ``group`` consecutive samples (the world's sibling scenes) together.
    """

    def __init__(
        self,
        source: Any,
        modalities: Sequence[str],
        batch_size: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pool: int | None = None,
        group: int = 1,
    ) -> None:
        self.source, self.modalities, self.batch_size = source, tuple(modalities), int(batch_size)
        self.group = max(int(group), 1)
        self.seed, self.rank, self.world_size, self.pool = int(seed), int(rank), int(world_size), pool
        self._perm: tuple[int, Any] = (-1, None)

    def __len__(self) -> int:
        return 2**62  # endless; the sampler says which steps to read

    def permutation(self, epoch: int) -> np.ndarray:
        """Epoch ``epoch``'s order of the pool; groups of ``group`` consecutive samples stay together."""
        if self._perm[0] != epoch:
            g = self.group if self.pool % self.group == 0 else 1
            order = np.random.default_rng([self.seed, 7919, epoch]).permutation(self.pool // g)
            self._perm = (epoch, (order[:, None] * g + np.arange(g)).reshape(-1))
        return self._perm[1]

    def indices(self, step: int) -> list[tuple[int, int]]:
        """(sample index, visit) pairs of step ``step``; visit = epoch over the pool (0 when endless)."""
        start = (int(step) * self.world_size + self.rank) * self.batch_size
        positions = range(start, start + self.batch_size)
        if not self.pool:
            return [(p, 0) for p in positions]
        return [(int(self.permutation(p // self.pool)[p % self.pool]), p // self.pool) for p in positions]

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return collate([self.source.get(i, self.modalities, visit) for i, visit in self.indices(step)])


def step_loader(batches: StepBatches, start: int, stop: int, workers: int = 0) -> DataLoader:
    """Yields the batches of steps ``start .. stop-1`` in order, rendered by ``workers`` processes.

    The loader gets its own torch generator, so creating it never consumes the global
    RNG (which dropout and resume-exactness depend on).
    """
    return DataLoader(
        batches,
        batch_size=None,
        sampler=range(start, stop),
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
        generator=private_generator(),
        worker_init_fn=_single_thread,
    )


def private_generator() -> torch.Generator:
    """Every DataLoader gets its own generator: creating one then never draws from the global
    torch RNG, whose state (dropout) a resumed run must continue exactly."""
    return torch.Generator().manual_seed(0)


def _single_thread(_: int = 0) -> None:
    """Worker init: one torch thread and one BLAS thread per worker process.

    numpy's OpenBLAS otherwise starts a thread per core in every worker (the fbank and
    noise upsampling use matrix products), and on a 2-core machine two workers then
    render *slower* than one.
    """
    torch.set_num_threads(1)
    limit_blas_threads(1)


def limit_blas_threads(n: int) -> bool:
    """Limit numpy's BLAS thread pool (threadpoolctl when installed, else OpenBLAS's own setter)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(n, user_api="blas")
        return True
    import ctypes

    try:
        with open("/proc/self/maps") as fh:
            libs = {
                line.split()[-1]
                for line in fh
                if "openblas" in line.lower()
                and line.rstrip().endswith(".so")
                or ".so." in line
                and "openblas" in line.lower()
            }
    except OSError:
        return False
    done = False
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in (
            "scipy_openblas_set_num_threads64_",
            "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_",
            "openblas_set_num_threads",
        ):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done = True
                break
    return done


# ----------------------------------------------------------------------------- world


class WorldSource:
    """The procedural world as a source: ``get(i, modalities)`` renders scene ``i``."""

    def __init__(self, seed: int, num_classes: int | None = None) -> None:
        self.world = World(seed) if num_classes is None else World(seed, num_classes)

    def get(self, index: int, modalities: Sequence[str], visit: int = 0) -> dict:
        return self.world.sample(index, modalities, visit)


class _Render(Dataset):
    def __init__(self, source: Any, modalities: Sequence[str], n: int) -> None:
        self.source, self.modalities, self.n = source, tuple(modalities), n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return self.source.get(i, self.modalities)


class CachedSource:
    """The first ``n`` samples of ``source`` rendered once, in parallel, and held in memory.

    Float arrays are stored as float16 (half precision keeps ~3 significant digits, far
    below the world's own noise) to halve memory. Modalities in ``fresh`` (captions) are
    re-rendered on every later visit (epoch), so a cycled pool still gets new wording.
    Deterministic: the same samples whatever the number of workers.
    """

    def __init__(
        self,
        source: Any,
        modalities: Sequence[str],
        n: int,
        *,
        workers: int = 0,
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
        fresh: Sequence[str] = ("text",),
    ) -> None:
        self.source, self.modalities = source, tuple(modalities)
        self.fresh = tuple(m for m in fresh if m in self.modalities)
        loader = DataLoader(
            _Render(source, self.modalities, n),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_stack_half,
            worker_init_fn=_single_thread,
            generator=private_generator(),
        )
        parts: list[dict] = []
        for part in loader:
            parts.append(part)
            if progress:
                progress(sum(len(p["index"]) for p in parts), n)
        self.arrays = {k: torch.cat([p[k] for p in parts]).numpy() for k in parts[0]}
        self.n = n

    def __len__(self) -> int:
        return self.n

    def get(self, index: int, modalities: Sequence[str], visit: int = 0) -> dict:
        out = {k: a[index] for k, a in self.arrays.items() if k in modalities or k not in self.modalities}
        fresh = [m for m in self.fresh if m in modalities]
        if visit and fresh:
            out.update({m: self.source.get(index, fresh, visit)[m] for m in fresh})
        return out

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def _stack_half(samples: Sequence[dict]) -> dict:
    """Collate to torch tensors (workers hand them over in shared memory, not through a pipe)."""
    out = {}
    for key in samples[0]:
        t = torch.from_numpy(np.stack([np.asarray(s[key]) for s in samples]))
        out[key] = t.half() if t.dtype == torch.float32 else t
    return out


# ----------------------------------------------------------------------------- real files

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
#: Extensions that identify a partner file without a modality tag (flat folders).
PARTNER_EXTS = {
    "audio": {".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus", ".aac"},
    "depth": {".npy"},
    "thermal": set(),
    "imu": {".npy", ".csv"},
}


@dataclass
class BadItem:
    """Files that were left out, and why."""

    files: list[str]
    reason: str

    def to_dict(self) -> dict:
        return {"files": self.files, "reason": self.reason}

    def __str__(self) -> str:
        return f"{', '.join(self.files)}: {self.reason}"


@dataclass
class PairScan:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    bad: list[BadItem] = field(default_factory=list)


class BadDataError(InputError):
    """The data folder holds unreadable or mismatched files and ``on_bad_data='stop'``."""

    def __init__(self, bad: Sequence[BadItem], where: str) -> None:
        lines = "\n".join(f"  - {b}" for b in bad)
        super().__init__(
            f"{len(bad)} bad item(s) in {where}:\n{lines}\n"
            "fix or remove them, or pass --on-bad-data skip to train without them (they are listed in the log)"
        )
        self.bad = list(bad)


def scan_pairs(root: "str | os.PathLike[str]", modality: str) -> PairScan:
    """Match image files with ``modality`` files: a folder, or a .csv/.jsonl manifest.

    Folder (flat): files are grouped by name up to the first dot; a group pairs
    one image (``x.jpg``, ``x.png``...) with one partner: ``x.<modality>.<ext>``
    (e.g. ``x.depth.png``, ``x.thermal.png``) or an extension that only the
    modality uses (``x.wav`` for audio, ``x.npy`` for depth or IMU...).
    Manifest: columns/keys ``image`` and ``<modality>``, paths relative to the manifest.
    Groups without a partner, partners without an image, ambiguous groups and manifest
    rows pointing at missing files are returned as ``bad`` (never silently dropped).
    """
    if modality not in PARTNER_EXTS:
        raise ConfigError(f"real-data training binds audio, depth, thermal or imu to images, not {modality!r}")
    root = Path(root)
    if not root.exists():
        raise ConfigError(
            f"data path {root} does not exist; expected a folder of image-paired files or a .csv/.jsonl manifest"
        )
    if root.is_file():
        return _scan_manifest(root, modality)
    groups: dict[str, list[Path]] = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        groups.setdefault(path.name.split(".", 1)[0], []).append(path)
    scan = PairScan()
    for stem, files in groups.items():
        images = [f for f in files if f.suffix.lower() in IMAGE_EXTS and _tag(f) is None]
        partners = [
            f for f in files if _tag(f) == modality or (_tag(f) is None and f.suffix.lower() in PARTNER_EXTS[modality])
        ]
        others = [f for f in files if f not in images and f not in partners]
        names = [str(f) for f in files]
        if len(images) == 1 and len(partners) == 1:
            scan.pairs.append((str(images[0]), str(partners[0])))
            if others:
                scan.bad.append(
                    BadItem([str(f) for f in others], f"not an image or {modality} file of pair {stem!r} (ignored)")
                )
        elif not partners:
            scan.bad.append(
                BadItem(
                    names,
                    f"no {modality} file for {stem!r} (expected {stem}.{modality}.<ext> or "
                    f"{stem}<{'|'.join(sorted(PARTNER_EXTS[modality])) or '.' + modality + '.<ext>'}>)",
                )
            )
        elif not images:
            scan.bad.append(BadItem(names, f"no image for {stem!r} (expected {stem}.jpg/.png/...)"))
        else:
            scan.bad.append(
                BadItem(names, f"ambiguous pair {stem!r}: {len(images)} images and {len(partners)} {modality} files")
            )
    if not scan.pairs and not scan.bad:
        raise ConfigError(f"data folder {root} is empty; expected image-paired files such as x.jpg + x.wav")
    return scan


def _tag(path: Path) -> str | None:
    parts = path.name.split(".")
    return parts[-2] if len(parts) >= 3 and parts[-2] in PARTNER_EXTS else None


def _scan_manifest(path: Path, modality: str) -> PairScan:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
        elif path.suffix.lower() in (".jsonl", ".ndjson"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            raise ConfigError(f"manifest {path} must be .csv or .jsonl")
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise ConfigError(f"manifest {path} could not be parsed: {exc}") from None
    scan = PairScan()
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("image") or not row.get(modality):
            scan.bad.append(BadItem([f"{path}:{n}"], f"row needs 'image' and '{modality}' entries, got {row!r}"))
            continue
        image, partner = (str(path.parent / str(row[k])) for k in ("image", modality))
        missing = [p for p in (image, partner) if not os.path.isfile(p)]
        if missing:
            scan.bad.append(BadItem([f"{path}:{n}", *missing], "file not found"))
        else:
            scan.pairs.append((image, partner))
    return scan


def load_file(kind: str, path: str) -> np.ndarray:
    """One file through bindrt's preprocessing, in the reference layout (without batch axis)."""
    try:
        from bindrt.preprocess import preprocess  # the unified entry point: preprocess(kind, items)
    except ImportError:
        preprocess = None
    if preprocess is not None:
        return np.asarray(preprocess(kind, [path]))[0]
    if kind == "vision":
        from bindrt.preprocess.image import preprocess_image

        return preprocess_image(path)
    if kind == "audio":
        from bindrt.preprocess.audio import preprocess_audio

        return preprocess_audio(path)
    raise ConfigError(f"this bindrt has no {kind} file loader yet (bindrt.preprocess.preprocess is missing)")


class PairedFiles:
    """Image + ``modality`` file pairs, decoded by bindrt's preprocessing.

    Audio files give 3 clips (3, 1, 128, 204); training uses one clip per visit,
    chosen by a seeded draw (the reference also samples clips), so a step's batch is
    still a pure function of the step.
    """

    def __init__(self, pairs: Sequence[tuple[str, str]], modality: str, seed: int = 0) -> None:
        self.pairs, self.modality, self.seed = list(pairs), modality, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def get(self, index: int, modalities: Sequence[str], visit: int = 0) -> dict:
        image, partner = self.pairs[index]
        out: dict = {"index": index, "label": index}
        if "vision" in modalities:
            out["vision"] = load_file("vision", image)
        if self.modality in modalities:
            x = load_file(self.modality, partner)
            if self.modality == "audio" and x.ndim == 4:
                x = x[int(np.random.default_rng([self.seed, index, visit]).integers(len(x)))]
            out[self.modality] = x
        return out


class _Check(Dataset):
    def __init__(self, pairs: Sequence[tuple[str, str]], modality: str) -> None:
        self.pairs, self.modality = pairs, modality

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[int, str | None]:
        for kind, path in zip(("vision", self.modality), self.pairs[i]):
            try:
                x = load_file(kind, path)
                if not np.isfinite(x).all():
                    return i, f"{kind} file {path} decodes to NaN/Inf values"
            except (InputError, ConfigError) as exc:
                if isinstance(exc, ConfigError):
                    raise
                return i, f"{kind} file {path} is unreadable: {getattr(exc, 'detail', exc)}"
        return i, None


def check_pairs(scan: PairScan, modality: str, *, workers: int = 0) -> PairScan:
    """Decode every pair once (in parallel) and move the unreadable ones to ``bad``."""
    if not scan.pairs:
        return scan
    loader = DataLoader(
        _Check(scan.pairs, modality),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_single_thread,
        generator=private_generator(),
    )
    failed = {i: reason for i, reason in loader if reason}
    good = [p for i, p in enumerate(scan.pairs) if i not in failed]
    bad = scan.bad + [BadItem(list(scan.pairs[i]), failed[i]) for i in sorted(failed)]
    return PairScan(good, bad)


def open_paired_files(
    root: "str | os.PathLike[str]",
    modality: str,
    *,
    on_bad_data: str = "stop",
    workers: int = 0,
    seed: int = 0,
    report: Callable[[list[BadItem]], None] | None = None,
) -> tuple[PairedFiles, list[BadItem]]:
    """Scan and check a folder/manifest; report bad items, then skip them or raise :class:`BadDataError`."""
    if on_bad_data not in ("skip", "stop"):
        raise ConfigError(f"on_bad_data must be 'skip' or 'stop', got {on_bad_data!r}")
    scan = check_pairs(scan_pairs(root, modality), modality, workers=workers)
    if scan.bad and report:
        report(scan.bad)
    if scan.bad and on_bad_data == "stop":
        raise BadDataError(scan.bad, str(root))
    if not scan.pairs:
        raise InputError(f"no usable image-{modality} pairs in {root}")
    return PairedFiles(scan.pairs, modality, seed), scan.bad


def iter_batches(source: Any, indices: Iterable[int], modalities: Sequence[str], batch_size: int) -> Iterable[dict]:
    """Plain sequential batches (evaluation)."""
    chunk: list[int] = []
    for i in indices:
        chunk.append(i)
        if len(chunk) == batch_size:
            yield collate([source.get(j, modalities) for j in chunk])
            chunk = []
    if chunk:
        yield collate([source.get(j, modalities) for j in chunk])
