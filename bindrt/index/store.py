"""The index directory: embeddings in a memory-mappable ``.npy``, metadata in SQLite, switched atomically.

Layout of ``INDEX/``::

    index.sqlite           state (format, space, generation), files, items, staging
    embeddings-<G>.npy     (items, dim) float32, L2-normalised rows, row i = items.row i
    faiss-<G>.index        optional approximate-search index over the same rows
    index.json             a human-readable copy of the state (never read back)

A run writes generation G+1's files completely (temporary name, fsync, rename), then
switches to them in one SQLite transaction, then removes generation G's. Killed at any
point, the index still opens at G or G+1, never at a mix; files of a generation that never
committed are removed on the next open (only names this module writes, in a directory
holding its database). Embeddings finished before an interruption wait in ``staging``
and are reused by the next run.

SQLite is the store because it is transactional, in the standard library, and readable
from any language a serving stack uses; numpy's ``.npy`` because it is memory-mappable
and self-describing (read with ``allow_pickle=False``, its shape checked against the database).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bindrt.bundle import Bundle, now_iso
from bindrt.errors import OutputError, SearchIndexError
from bindrt.fileio import atomic_write_bytes

INDEX_FORMAT = "bindrt.index"
INDEX_VERSION = 1
DB_NAME = "index.sqlite"
DESCRIPTOR = "index.json"
_GENERATION_FILE = re.compile(r"^(embeddings|faiss)-(\d+)\.(npy|index)(\.tmp)?$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, kind TEXT, sha256 TEXT, size INTEGER, mtime_ns INTEGER, items INTEGER, error TEXT
);
CREATE TABLE IF NOT EXISTS items (
    row INTEGER PRIMARY KEY, path TEXT NOT NULL, line INTEGER, kind TEXT NOT NULL, sha256 TEXT NOT NULL, text TEXT
);
CREATE INDEX IF NOT EXISTS items_path ON items (path);
CREATE TABLE IF NOT EXISTS staging (
    path TEXT NOT NULL, line INTEGER NOT NULL, sha256 TEXT NOT NULL, kind TEXT NOT NULL, text TEXT,
    embedding BLOB NOT NULL, PRIMARY KEY (path, line, sha256)
);
"""


def embedding_space(bundle: Bundle) -> dict[str, Any]:
    """What makes two embeddings comparable: the config and every tower's weights (by checksum).

    A copy of a bundle, or the same bundle with graphs exported, is the same space; retrained
    or converted-from-another-checkpoint weights are not.
    """
    files = bundle.manifest["files"]
    weights = {m: files[bundle.manifest["modalities"][m]["weights"]]["sha256"] for m in bundle.modalities}
    digest = hashlib.sha256(
        json.dumps({"config": bundle.manifest["config"], "weights": weights}, sort_keys=True).encode()
    )
    return {
        "id": digest.hexdigest()[:16],
        "bundle": str(bundle.path),
        "dim": bundle.config.out_embed_dim,
        "modalities": list(bundle.modalities),
        "weights": weights,
    }


@dataclass(frozen=True)
class Item:
    """One embedded item: a file, or one line of a text file (``line`` from 1; None for whole files)."""

    path: str
    line: int | None
    kind: str
    sha256: str
    text: str | None = None


@dataclass(frozen=True)
class FileRecord:
    path: str
    kind: str | None
    sha256: str | None
    size: int
    mtime_ns: int
    items: int
    error: str | None = None


class IndexStore:
    """One index directory. ``open`` refuses a directory that is not an index and a foreign embedding space."""

    def __init__(self, path: Path, db: sqlite3.Connection, state: dict[str, Any]) -> None:
        self.path = path
        self.db = db
        self.state = state

    # -- opening ------------------------------------------------------------------
    @classmethod
    def open(
        cls, path: "str | os.PathLike[str]", *, space: dict[str, Any] | None = None, create: bool = False
    ) -> "IndexStore":
        """Open ``path``; with ``create``, make it (an empty or absent directory only) for ``space``."""
        path = Path(path)
        db_path = path / DB_NAME
        if not db_path.exists():
            if not create:
                what = "does not exist" if not path.exists() else "is not a bindrt index (no index.sqlite)"
                raise SearchIndexError(f"{path} {what}; expected an index written by `bindrt index`")
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                kind = "a directory that holds other files" if path.is_dir() else "a file"
                raise OutputError(
                    f"{path} is {kind}, not a bindrt index; refusing to write into it (choose a new --out)"
                )
            if space is None:
                raise SearchIndexError("creating an index needs the bundle's embedding space")
            path.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            state = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM state")}
        except sqlite3.DatabaseError as exc:
            raise SearchIndexError(f"{db_path} is not a readable index database ({exc})") from None
        if not state:
            if not create:
                raise SearchIndexError(f"{path} holds an empty database, not an index; rerun `bindrt index`")
            state = {
                "format": INDEX_FORMAT,
                "version": INDEX_VERSION,
                "space": space,
                "generation": 0,
                "count": 0,
                "ann": None,
            }
            with db:
                db.execute("BEGIN")
                db.executemany("INSERT INTO state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in state.items()])
        store = cls(path, db, state)
        store._check(space)
        store._remove_uncommitted()
        return store

    def _check(self, space: dict[str, Any] | None) -> None:
        s = self.state
        if s.get("format") != INDEX_FORMAT or s.get("version") != INDEX_VERSION:
            raise SearchIndexError(
                f"{self.path} holds {s.get('format')!r} version {s.get('version')!r}; expected {INDEX_FORMAT} version "
                f"{INDEX_VERSION} (rebuild it with `bindrt index`)"
            )
        if space is not None and space["id"] != s["space"]["id"]:
            raise SearchIndexError(
                f"{self.path} holds embeddings of bundle {s['space']['bundle']} (space {s['space']['id']}), not of "
                f"{space['bundle']} (space {space['id']}): different weights embed into different spaces; use that "
                "bundle, or index into a new directory"
            )

    def _remove_uncommitted(self) -> None:
        """Generation files a killed run left behind (never the committed generation's)."""
        for entry in self.path.iterdir():
            m = _GENERATION_FILE.match(entry.name)
            if m and (int(m.group(2)) != self.generation or m.group(4)):
                entry.unlink(missing_ok=True)

    # -- reading ------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return int(self.state["generation"])

    @property
    def space(self) -> dict[str, Any]:
        return self.state["space"]

    @property
    def count(self) -> int:
        return int(self.state["count"])

    def embeddings_path(self, generation: int | None = None) -> Path:
        return self.path / f"embeddings-{self.generation if generation is None else generation}.npy"

    def ann_path(self, generation: int | None = None) -> Path:
        return self.path / f"faiss-{self.generation if generation is None else generation}.index"

    def embeddings(self) -> np.ndarray:
        """The (count, dim) rows, memory-mapped read-only; checked against the database before use."""
        if self.count == 0:
            return np.zeros((0, self.space["dim"]), np.float32)
        path = self.embeddings_path()
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SearchIndexError(
                f"{path} cannot be read as the index's embeddings ({exc}); rebuild the index"
            ) from None
        if array.dtype != np.float32 or array.shape != (self.count, self.space["dim"]):
            raise SearchIndexError(
                f"{path} holds {array.dtype} {array.shape}; the index expects float32 ({self.count}, {self.space['dim']})"
            )
        return array

    def items(self) -> list[Item]:
        rows = self.db.execute("SELECT path, line, kind, sha256, text FROM items ORDER BY row").fetchall()
        return [Item(*r) for r in rows]

    def files(self) -> dict[str, FileRecord]:
        rows = self.db.execute("SELECT path, kind, sha256, size, mtime_ns, items, error FROM files").fetchall()
        return {r[0]: FileRecord(*r) for r in rows}

    # -- staging (resume) --------------------------------------------------------------
    def stage(self, items: Iterable[Item], embeddings: np.ndarray) -> None:
        """Keep finished embeddings across an interruption (one transaction per call)."""
        rows = [
            (
                it.path,
                -1 if it.line is None else it.line,
                it.sha256,
                it.kind,
                it.text,
                np.asarray(e, np.float32).tobytes(),
            )
            for it, e in zip(items, embeddings)
        ]
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT OR REPLACE INTO staging VALUES (?, ?, ?, ?, ?, ?)", rows)

    def staged(self) -> dict[tuple[str, int | None, str], np.ndarray]:
        dim = self.space["dim"]
        out = {}
        for path, line, sha, blob in self.db.execute("SELECT path, line, sha256, embedding FROM staging"):
            vector = np.frombuffer(blob, np.float32)
            if vector.shape == (dim,):  # anything else is not ours: embed that item again
                out[(path, None if line == -1 else line, sha)] = vector
        return out

    # -- committing ----------------------------------------------------------------
    def commit(self, items: list[Item], rows: Iterator[np.ndarray], files: list[FileRecord], ann: Any = None) -> None:
        """Make ``items`` (their embeddings streamed in order by ``rows``, chunks of (n, dim)) the index's content."""
        generation = self.generation + 1
        final = self.embeddings_path(generation)
        tmp = final.with_name(final.name + ".tmp")
        dim = self.space["dim"]
        written = 0
        kinds = np.array([it.kind for it in items])
        sums: dict[str, np.ndarray] = {}
        if items:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(items), dim))
            for chunk in rows:
                out[written : written + len(chunk)] = chunk
                here = kinds[written : written + len(chunk)]
                for kind in np.unique(here):
                    sums[kind] = sums.get(kind, 0.0) + chunk[here == kind].astype(np.float64).sum(0)
                written += len(chunk)
            out.flush()
            del out
            if written != len(items):
                tmp.unlink(missing_ok=True)
                raise SearchIndexError(f"internal: {written} embeddings for {len(items)} items")
            _fsync(tmp)
            os.replace(tmp, final)
        ann_record = None
        if ann is not None and items:
            ann_record = ann.save(self.ann_path(generation))
        counts = dict(zip(*np.unique(kinds, return_counts=True))) if items else {}
        means = {str(k): (v / counts[k]).astype(np.float32).round(6).tolist() for k, v in sums.items()}
        state = {
            **self.state,
            "generation": generation,
            "count": len(items),
            "ann": ann_record,
            "means": means,  # per input kind: the mean unit embedding (the modality's offset; see query.combine)
            "updated": now_iso(),
        }
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM items")
            self.db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?)",
                [(i, it.path, it.line, it.kind, it.sha256, it.text) for i, it in enumerate(items)],
            )
            self.db.execute("DELETE FROM files")
            self.db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(f.path, f.kind, f.sha256, f.size, f.mtime_ns, f.items, f.error) for f in files],
            )
            self.db.execute("DELETE FROM staging")
            self.db.executemany(
                "INSERT OR REPLACE INTO state VALUES (?, ?)", [(k, json.dumps(v)) for k, v in state.items()]
            )
        old = self.generation
        self.state = state
        for path in (self.embeddings_path(old), self.ann_path(old)):
            path.unlink(missing_ok=True)
        atomic_write_bytes(self.path / DESCRIPTOR, (json.dumps(self.describe(), indent=1) + "\n").encode())

    def describe(self) -> dict[str, Any]:
        kinds = dict(self.db.execute("SELECT kind, COUNT(*) FROM items GROUP BY kind").fetchall())
        errors = self.db.execute("SELECT COUNT(*) FROM files WHERE error IS NOT NULL").fetchone()[0]
        state = {k: v for k, v in self.state.items() if k != "means"}  # 1,024 numbers per kind: not a summary
        return {**state, "items_by_kind": kinds, "files_with_errors": errors, "path": str(self.path)}

    def close(self) -> None:
        self.db.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
