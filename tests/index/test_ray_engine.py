"""``bindrt index --engine ray`` on a local Ray instance with two workers: the same index as the single-process path."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from bindrt.index import Index, build_index

pytest.importorskip("ray.data", reason="the Ray engine needs the ray extra (ray[data])")


@pytest.mark.slow
def test_ray_pipeline_gives_the_same_embeddings_and_metadata(golden_bundle, collection, tmp_path):
    from bindrt.index.ray_engine import build_index_ray

    root, _ = collection
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a bad file takes the error path
    local = build_index(golden_bundle, [root], tmp_path / "local", on_bad_data="skip")
    remote = build_index_ray(golden_bundle, [root], tmp_path / "ray", num_cpus=2, actors=2, on_bad_data="skip", batch=4)
    assert (remote.items, remote.files, remote.errors) == (local.items, local.files, local.errors)
    with Index.open(tmp_path / "local") as a, Index.open(tmp_path / "ray") as b:
        assert a.items == b.items
        cos = (np.asarray(a.embeddings) * np.asarray(b.embeddings)).sum(1)
        assert cos.min() >= 0.9999
    queries = ["SELECT path, kind, sha256, size, mtime_ns, items, error FROM files ORDER BY path"]
    for q in queries:
        with (
            sqlite3.connect(tmp_path / "local" / "index.sqlite") as x,
            sqlite3.connect(tmp_path / "ray" / "index.sqlite") as y,
        ):
            assert x.execute(q).fetchall() == y.execute(q).fetchall()
