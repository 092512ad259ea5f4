"""``bindrt index``: embed a collection of files into an index, incrementally and resumably.

A run scans the inputs, routes every file to its modality (:mod:`.routing`), compares each
with what the index holds (size and mtime, then the content hash), and embeds only new and
changed files; files that are gone are dropped. Embeddings are staged in the database
batch by batch, so a killed run loses at most one batch and the next run resumes; the new
content becomes the index in one atomic switch (:mod:`.store`).

Unreadable files: ``on_bad_data="stop"`` (the default) embeds everything else, then refuses
to commit and names every bad file (the good embeddings stay staged for the rerun);
``"skip"`` records each with its error and commits the rest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bindrt.bundle import Bundle
from bindrt.errors import BindrtError, ConfigError, InputError
from bindrt.fileio import sha256_file
from bindrt.index.routing import route
from bindrt.index.store import FileRecord, IndexStore, Item, embedding_space
from bindrt.layouts import INPUT_KINDS

ON_BAD_DATA = ("stop", "skip")
#: Text files are one item per line; bigger ones are refused rather than read into memory.
MAX_TEXT_FILE_BYTES = 64 << 20
#: Embeddings copied per chunk when a new generation is written.
COPY_CHUNK = 65536


@dataclass
class IndexReport:
    """What one run did. ``errors`` and ``ignored``: (path, why) pairs."""

    index: str
    items: int = 0
    files: int = 0
    embedded_files: int = 0
    embedded_items: int = 0
    unchanged_files: int = 0
    resumed_items: int = 0
    dropped_files: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[tuple[str, str]] = field(default_factory=list)
    committed: bool = False
    seconds: float = 0.0
    ann: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def fail(self, path: str, why: str) -> None:
        """Record that ``path`` could not be embedded (once per file, however many of its items failed)."""
        if all(p != path for p, _ in self.errors):
            self.errors.append((path, why))


class BadDataError(InputError):
    """Files that could not be embedded, with ``on_bad_data="stop"``: every one is named."""

    def __init__(self, errors: list[tuple[str, str]]):
        shown = "; ".join(f"{p}: {why}" for p, why in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(
            f"{len(errors)} file(s) could not be embedded, so nothing was committed: {shown}{more}; "
            "fix or remove them, or pass --on-bad-data skip (the good embeddings are kept for the rerun)"
        )
        self.errors = errors


def scan(inputs: Iterable["str | os.PathLike[str]"], exclude: Path | None = None) -> list[Path]:
    """Every file under ``inputs`` (files as given, folders walked in name order), hidden entries skipped."""
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        path = Path(os.path.abspath(raw))
        if not path.exists():
            raise ConfigError(f"input {raw} does not exist; expected files or folders to index")
        if path.is_file():
            candidates = [path]
        else:
            candidates = []
            for root, dirs, names in os.walk(path):
                here = Path(root)
                dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or here / d != exclude))
                candidates += [here / n for n in sorted(names) if not n.startswith(".")]
        for c in candidates:
            if c not in seen and c.is_file():
                seen.add(c)
                out.append(c)
    return out


def build_index(
    bundle: "str | os.PathLike[str]",
    inputs: Iterable["str | os.PathLike[str]"],
    out: "str | os.PathLike[str]",
    *,
    backend: str = "torch",
    batch: int = 32,
    workers: int | None = None,
    modality: str | None = None,
    on_bad_data: str = "stop",
    ann: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    on_progress: Callable[[str, Any], None] | None = None,
    embed_items: "EmbedItems | None" = None,
    **backend_options: Any,
) -> IndexReport:
    """Index ``inputs`` into ``out`` with ``bundle``'s encoders (see the module docstring).

    ``embed_items`` replaces the in-process embedding step (the Ray engine passes its pipeline).
    """
    from bindrt.index.ann import plan_ann

    if on_bad_data not in ON_BAD_DATA:
        raise ConfigError(f"on_bad_data={on_bad_data!r}; expected one of {', '.join(ON_BAD_DATA)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch={batch!r}; expected an integer >= 1")
    start = time.perf_counter()
    emit = on_progress or (lambda what, value: None)
    opened = Bundle.open(bundle)
    space = embedding_space(opened)
    store = IndexStore.open(out, space=space, create=True)
    report = IndexReport(index=str(store.path))
    try:
        previous = store.files()
        old_items = store.items()
        old_rows = {it.path: [] for it in old_items}
        for row, it in enumerate(old_items):
            old_rows[it.path].append(row)
        plan = _plan(scan(inputs, exclude=store.path), previous, modality, opened, report)
        report.files = len(plan.keep) + len(plan.embed)
        report.unchanged_files = len(plan.keep)
        report.dropped_files = len(set(previous) - {f.path for f in plan.keep} - {str(p) for p, _, _ in plan.embed})
        todo, fresh = _todo(store, plan, report)
        emit("total", sum(map(len, todo.values())))
        step = embed_items or embed_in_process
        settings = EmbedSettings(backend, device, precision, batch, workers, backend_options)
        pending: list[tuple[Item, np.ndarray]] = []
        for pair in step(opened.path, todo, report, emit, settings):
            pending.append(pair)
            if len(pending) >= batch:  # staged batch by batch: a killed run loses at most one batch
                _stage(store, pending, fresh)
        _stage(store, pending, fresh)
        report.embedded_items = sum(1 for it, _ in fresh.values()) - report.resumed_items
        report.embedded_files = len({it.path for it, _ in fresh.values()} - {p for p, _ in report.errors})
        if report.errors and on_bad_data == "stop":
            raise BadDataError(report.errors)
        items, sources, files = _assemble(plan, old_items, old_rows, fresh, report)
        embeddings = store.embeddings()
        index = plan_ann(ann, len(items), space["dim"])
        rows = _rows(sources, embeddings, fresh, space["dim"])
        if index is not None:
            rows = index.collect(rows)
        store.commit(items, rows, files, index)
        report.items, report.committed, report.ann = len(items), True, store.state.get("ann")
    finally:
        store.close()
        report.seconds = time.perf_counter() - start
    return report


@dataclass
class _Plan:
    keep: list[FileRecord] = field(default_factory=list)  # unchanged: their rows are copied
    embed: list[tuple[Path, str, FileRecord]] = field(default_factory=list)  # (path, kind, its new record)


def _plan(
    paths: list[Path], previous: dict[str, FileRecord], modality: str | None, bundle: Bundle, report: IndexReport
) -> _Plan:
    plan = _Plan()
    for path in paths:
        kind = route(path, modality)
        if kind is None:
            report.ignored.append((str(path), "no modality for this file type (pass --modality to force one)"))
            continue
        if INPUT_KINDS[kind] not in bundle.modalities:
            report.ignored.append((str(path), f"a {kind} file, and the bundle has no {INPUT_KINDS[kind]} encoder"))
            continue
        try:
            st = path.stat()
        except OSError as exc:
            report.errors.append((str(path), f"cannot stat: {exc.strerror or exc}"))
            continue
        old = previous.get(str(path))
        if (
            old is not None
            and old.error is None
            and old.kind == kind
            and (old.size, old.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            plan.keep.append(old)
            continue
        try:
            digest = sha256_file(path)
        except OSError as exc:
            report.errors.append((str(path), f"cannot read: {exc.strerror or exc}"))
            continue
        record = FileRecord(str(path), kind, digest, st.st_size, st.st_mtime_ns, 0)
        if old is not None and old.error is None and old.kind == kind and old.sha256 == digest:  # touched, same bytes
            plan.keep.append(replace(record, items=old.items))
            continue
        plan.embed.append((path, kind, record))
    return plan


def _text_items(path: Path, record: FileRecord) -> list[Item]:
    if record.size > MAX_TEXT_FILE_BYTES:
        raise InputError(f"{record.size} bytes; text files are indexed line by line up to {MAX_TEXT_FILE_BYTES} bytes")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [
        Item(str(path), n, "text", hashlib.sha256(line.encode()).hexdigest(), line.strip())
        for n, line in enumerate(lines, 1)
        if line.strip()
    ]


def _stage(
    store: IndexStore,
    pending: list[tuple[Item, np.ndarray]],
    fresh: dict[tuple[str, int | None, str], tuple[Item, np.ndarray]],
) -> None:
    if pending:
        store.stage([it for it, _ in pending], np.stack([v for _, v in pending]))
        for it, v in pending:
            fresh[(it.path, it.line, it.sha256)] = (it, v)
        pending.clear()


@dataclass(frozen=True)
class EmbedSettings:
    """How the embedding step loads and runs the encoders, whichever engine runs it."""

    backend: str = "torch"
    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 32
    workers: int | None = None  # preprocessing threads (in process) or actors (Ray)
    options: dict[str, Any] = field(default_factory=dict)  # backend options for bindrt.load

    def load(self, bundle: "str | os.PathLike[str]", modalities: list[str], **override: Any) -> Any:
        """``bindrt.load`` with these settings (``override``: backend options that win, e.g. a thread count)."""
        import bindrt

        return bindrt.load(bundle, self.backend, device=self.device, precision=self.precision, modalities=modalities,
                           batch_size=self.batch, **{**self.options, **override})  # fmt: skip


class EmbedItems(Protocol):
    """The embedding step: (item, unit embedding) pairs of ``todo``; bad items go to ``report.errors`` instead.

    :func:`embed_in_process` is the single-process one, :mod:`bindrt.index.ray_engine` the Ray one.
    """

    def __call__(
        self,
        bundle: Path,
        todo: dict[str, list[Item]],
        report: IndexReport,
        emit: Callable[[str, Any], None],
        settings: EmbedSettings,
    ) -> Iterable[tuple[Item, np.ndarray]]: ...


def _todo(
    store: IndexStore, plan: _Plan, report: IndexReport
) -> tuple[dict[str, list[Item]], dict[tuple[str, int | None, str], tuple[Item, np.ndarray]]]:
    """The items still to embed, by kind, and those an interrupted run already staged (reused)."""
    staged = store.staged()
    todo: dict[str, list[Item]] = {}
    done: dict[tuple[str, int | None, str], tuple[Item, np.ndarray]] = {}
    for path, kind, record in plan.embed:
        try:
            items = _text_items(path, record) if kind == "text" else [Item(str(path), None, kind, record.sha256)]
        except InputError as exc:
            report.errors.append((str(path), exc.detail))
            continue
        for it in items:
            key = (it.path, it.line, it.sha256)
            if key in staged:
                done[key] = (it, staged[key])
                report.resumed_items += 1
            else:
                todo.setdefault(kind, []).append(it)
    return todo, done


def embed_in_process(
    bundle: Path,
    todo: dict[str, list[Item]],
    report: IndexReport,
    emit: Callable[[str, Any], None],
    settings: EmbedSettings,
) -> Iterable[tuple[Item, np.ndarray]]:
    """Preprocess on a thread pool, encode batch by batch in this process."""
    from bindrt.preprocess import preprocess

    if not todo:
        return
    batch = settings.batch
    with (
        settings.load(bundle, sorted({INPUT_KINDS[k] for k in todo})) as model,
        ThreadPoolExecutor(max_workers=settings.workers or min(8, os.cpu_count() or 1)) as pool,
    ):
        for kind, items in todo.items():
            for i in range(0, len(items), batch):
                chunk = items[i : i + batch]
                arrays = list(pool.map(lambda it: preprocess_item(preprocess, it), chunk))
                good = [(it, a) for it, a in zip(chunk, arrays) if not isinstance(a, str)]
                for it, a in zip(chunk, arrays):
                    if isinstance(a, str):
                        report.fail(it.path, a)
                if good:
                    emb = model.encode(kind, np.stack([a for _, a in good]), normalize=True)
                    yield from zip((it for it, _ in good), emb)
                emit("advance", len(chunk))


def preprocess_item(preprocess: Callable[..., np.ndarray], item: Item) -> "np.ndarray | str":
    """One item's encoder input, or the reason it has none (a message, never an exception across threads)."""
    try:
        value = item.text if item.kind == "text" else item.path
        return preprocess(item.kind, [value])[0]
    except BindrtError as exc:
        return f"as {item.kind}: {getattr(exc, 'detail', None) or exc}"
    except (OSError, ValueError, MemoryError) as exc:
        return f"as {item.kind}: {type(exc).__name__}: {exc}"


def _assemble(
    plan: _Plan,
    old_items: list[Item],
    old_rows: dict[str, list[int]],
    fresh: dict[tuple[str, int | None, str], tuple[Item, np.ndarray]],
    report: IndexReport,
) -> tuple[list[Item], list[Any], list[FileRecord]]:
    """The new content in path order: items, each row's source (an old row number or a fresh vector), files."""
    failed = dict(report.errors)
    by_path: dict[str, list[tuple[Item, np.ndarray]]] = {}
    for item, vector in fresh.values():
        by_path.setdefault(item.path, []).append((item, vector))
    entries: list[tuple[str, list[Item], list[Any], FileRecord]] = []
    for record in plan.keep:
        rows = old_rows.get(record.path, [])
        entries.append((record.path, [old_items[r] for r in rows], rows, record))
    for path, _, record in plan.embed:
        key = str(path)
        if key in failed:
            entries.append((key, [], [], replace(record, error=failed[key])))
            continue
        got = sorted(by_path.get(key, []), key=lambda pair: pair[0].line or 0)
        entries.append((key, [it for it, _ in got], [v for _, v in got], replace(record, items=len(got))))
    listed = {e[0] for e in entries}
    for path, why in report.errors:
        if path not in listed:  # could not even be read: recorded so the next run retries it
            entries.append((path, [], [], FileRecord(path, None, None, 0, 0, 0, why)))
    entries.sort(key=lambda e: e[0])
    items = [it for e in entries for it in e[1]]
    sources = [s for e in entries for s in e[2]]
    return items, sources, [e[3] for e in entries]


def _rows(sources: list[Any], old: np.ndarray, fresh: Any, dim: int):
    """Chunks of the new embedding rows: old rows gathered from the memory map, fresh vectors as they are."""
    for i in range(0, len(sources), COPY_CHUNK):
        part = sources[i : i + COPY_CHUNK]
        chunk = np.empty((len(part), dim), np.float32)
        for j, s in enumerate(part):
            chunk[j] = old[s] if isinstance(s, (int, np.integer)) else s
        yield chunk
