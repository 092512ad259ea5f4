"""``bindrt index`` / ``bindrt search`` on real files: routing, nearest neighbours, incremental runs, resume, bad data."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bindrt.errors import ConfigError, SearchIndexError, UnknownModalityError
from bindrt.index import BadDataError, Index, Term, build_index, combine, route

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bindrt", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_files_route_to_their_modality_by_type_content_and_path(collection, tmp_path):
    root, kinds = collection
    for name, kind in kinds.items():
        assert route(root / name) == kind, name
    lying = tmp_path / "photo.wav"  # JPEG bytes under an audio name: the content wins
    lying.write_bytes((root / "photo.jpg").read_bytes())
    assert route(lying) == "vision"
    (tmp_path / "notes.md").write_text("# not an input")
    assert route(tmp_path / "notes.md") is None
    assert route(root / "photo.jpg", "depth") == "depth"
    with pytest.raises(UnknownModalityError, match="unknown modality 'smell'"):
        route(root / "photo.jpg", "smell")


def test_every_item_is_its_own_nearest_neighbour(golden_bundle, collection, tmp_path):
    root, kinds = collection
    report = build_index(golden_bundle, [root], tmp_path / "idx")
    assert report.committed and report.errors == [] and report.files == len(kinds)
    assert report.items == len(kinds) - 1 + 3  # the captions file holds three non-empty lines
    with Index.open(tmp_path / "idx") as index:
        assert index.describe()["items_by_kind"] == {
            "audio": 2, "depth": 2, "imu": 1, "text": 3, "thermal": 1, "video": 1, "vision": 2,
        }  # fmt: skip
        rows = np.asarray(index.embeddings)
        assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
        for name, kind in kinds.items():
            if kind == "text":
                continue
            (top, *_) = index.search([Term(kind, str(root / name))], k=3)
            assert top.path == str(root / name) and top.score > 0.9999, name
        for line, caption in [(1, "a dog barking in the park"), (4, "a red car")]:
            (top,) = index.search(text=caption, k=1, modality="text")
            assert (top.line, top.text) == (line, caption) and top.score > 0.9999


def test_a_rerun_embeds_only_what_changed_and_drops_what_is_gone(golden_bundle, collection, tmp_path):
    root, kinds = collection
    out = tmp_path / "idx"
    build_index(golden_bundle, [root], out)
    with Index.open(out) as index:
        before = {(it.path, it.line): np.array(index.embeddings[i]) for i, it in enumerate(index.items)}
    from PIL import Image

    with Image.open(root / "logo.png") as im:
        changed = im.convert("RGB").rotate(90)
    changed.save(root / "logo.png")
    (root / "walk.npy").unlink()
    os.utime(root / "photo.jpg", (time.time() + 5, time.time() + 5))  # touched, same bytes: not re-embedded
    report = build_index(golden_bundle, [root], out)
    assert (report.embedded_files, report.embedded_items, report.dropped_files) == (1, 1, 1)
    assert report.unchanged_files == len(kinds) - 2
    with Index.open(out) as index:
        after = {(it.path, it.line): np.array(index.embeddings[i]) for i, it in enumerate(index.items)}
    assert set(before) - set(after) == {(str(root / "walk.npy"), None)}
    logo = (str(root / "logo.png"), None)
    assert float(before[logo] @ after[logo]) < 0.9999
    assert all(np.array_equal(before[k], after[k]) for k in after if k != logo)
    third = build_index(golden_bundle, [root], out)
    assert (third.embedded_files, third.dropped_files, third.unchanged_files) == (0, 0, len(kinds) - 1)


def test_bad_files_stop_the_run_naming_each_or_are_skipped(golden_bundle, collection, tmp_path):
    root, _ = collection
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff" + os.urandom(300))
    (root / "empty.wav").write_bytes(b"")
    out = tmp_path / "idx"
    with pytest.raises(BadDataError) as caught:
        build_index(golden_bundle, [root], out)
    assert {Path(p).name for p, _ in caught.value.errors} == {"broken.jpg", "empty.wav"}
    assert "broken.jpg" in str(caught.value) and "--on-bad-data skip" in str(caught.value)
    with Index.open(out) as index:
        assert len(index) == 0  # nothing committed
    report = build_index(golden_bundle, [root], out, on_bad_data="skip")
    assert report.committed and report.resumed_items == report.items  # the good ones were staged by the stopped run
    assert sorted(Path(p).name for p, _ in report.errors) == ["broken.jpg", "empty.wav"]
    with sqlite3.connect(out / "index.sqlite") as db:
        (err,) = db.execute("SELECT error FROM files WHERE path LIKE '%broken.jpg'").fetchone()
    assert err and "vision" in err


def test_an_interrupted_run_leaves_a_valid_index_and_the_next_run_resumes(golden_bundle, tmp_path):
    """Killed (SIGKILL) while embedding: the index opens at its last commit; the rerun embeds only what is left."""
    from bindrt.bench.raw_inputs import FreshWords

    data = tmp_path / "texts"
    data.mkdir()
    (data / "captions.txt").write_text("\n".join(FreshWords(7).captions(3000)) + "\n")
    out = tmp_path / "idx"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bindrt", "index", str(golden_bundle), str(data), "--out", str(out), "--batch", "8"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    staged = 0
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(f"file:{out / 'index.sqlite'}?mode=ro", uri=True, timeout=5) as db:
                staged = db.execute("SELECT COUNT(*) FROM staging").fetchone()[0]
        except sqlite3.Error:
            continue
        if staged >= 200:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(60)
    assert 200 <= staged < 3000, "the run finished before it could be interrupted"
    with Index.open(out) as index:  # still a valid index: its last commit (none yet: empty)
        assert len(index) == 0
        with pytest.raises(SearchIndexError, match="empty"):
            index.search(text="anything")
    report = build_index(golden_bundle, [data], out, batch=64)
    assert report.resumed_items >= 200 and report.resumed_items + report.embedded_items == 3000
    fresh = build_index(golden_bundle, [data], tmp_path / "fresh", batch=64)
    with Index.open(out) as a, Index.open(tmp_path / "fresh") as b:
        assert [(i.line, i.text) for i in a.items] == [(i.line, i.text) for i in b.items] and fresh.items == 3000
        cos = (np.asarray(a.embeddings) * np.asarray(b.embeddings)).sum(1)
        assert cos.min() > 0.9999
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_faiss_recall_against_exact_search_on_10000_items(golden_bundle, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional search extra")
    from bindrt.bench.raw_inputs import FreshWords

    data = tmp_path / "texts"
    data.mkdir()
    (data / "captions.txt").write_text("\n".join(FreshWords(3).captions(10_000)) + "\n")
    report = build_index(golden_bundle, [data], tmp_path / "idx", ann="faiss", batch=256)
    assert report.ann["factory"].startswith("HNSW") and report.ann["count"] == 10_000
    with Index.open(tmp_path / "idx") as index:
        v = index.verify(queries=200, k=10)
        assert v["recall"] >= 0.95 and v["ann_ms_median"] > 0 and v["exact_ms_median"] > 0
        exact = index.search(text="a sunny beach", k=5, exact=True)
        approx = index.search(text="a sunny beach", k=5)
        assert len({h.line for h in exact} & {h.line for h in approx}) >= 4


def test_query_arithmetic_is_the_papers():
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(16).astype(np.float32) for _ in range(3))
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    q = combine([a * 3, b], [1.0, 0.5], [c])
    assert np.allclose(q, unit(unit(a) + 0.5 * unit(b) - unit(c)), atol=1e-6)
    with pytest.raises(ConfigError, match="cancel out"):
        combine([a, a], [1.0, 1.0], [a * 2, a])


def test_bad_queries_are_one_line_and_exit_2(golden_bundle, collection, tmp_path):
    import shutil

    from helpers import GOLDEN_DIR

    from bindrt.convert import convert_checkpoint

    root, _ = collection
    out = tmp_path / "idx"
    build_index(golden_bundle, [root], out)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    partial = tmp_path / "vision-text"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", partial, modalities=["vision", "text"])
    other = tmp_path / "other"
    shutil.copytree(golden_bundle, other)
    _perturb_weights(other, "text")
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.md").write_text("no media here")
    build_index(golden_bundle, [tmp_path / "nothing"], tmp_path / "empty")
    cases = [
        (["search", out, "--image", tmp_path / "bad.jpg"], "bad.jpg"),
        (["search", out, "--text", "a dog", "-k", "0"], "-k 0"),
        (["search", tmp_path / "empty", "--text", "a dog"], "is empty"),
        (["search", out, "--text", "a dog", "--bundle", other], "not the bundle this index was built with"),
        (["index", other, root, "--out", out], "holds embeddings of bundle"),
        (["search", out, "--audio", root / "tone16k.wav", "--bundle", partial], "not the bundle"),
        (["search", out, "--minus", "smell:roses", "--text", "a dog"], "--minus 'smell:roses'"),
        (["search", out, "--text", "a", "--weights", "1,2"], "--weights has 2 numbers for 1 query terms"),
        (["search", tmp_path / "nothing", "--text", "a"], "not a bindrt index"),
        (["index", golden_bundle, root, "--out", tmp_path / "nothing"], "refusing to write into it"),
    ]
    for argv, fragment in cases:
        proc = _cli(*argv)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and fragment in lines[0], (argv, proc.stderr)


def test_a_query_modality_the_bundle_lacks_is_refused(golden_bundle, tmp_path):
    from helpers import GOLDEN_DIR, MEDIA_DIR

    from bindrt.convert import convert_checkpoint

    partial = tmp_path / "vision-text"
    convert_checkpoint(GOLDEN_DIR / "weights.pth", GOLDEN_DIR / "config.json", partial, modalities=["vision", "text"])
    media = tmp_path / "m"
    media.mkdir()
    (media / "photo.jpg").write_bytes((MEDIA_DIR / "photo.jpg").read_bytes())
    build_index(partial, [media], tmp_path / "idx")
    proc = _cli("search", tmp_path / "idx", "--audio", MEDIA_DIR / "tone16k.wav")
    assert proc.returncode == 2 and "has no audio encoder" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _perturb_weights(bundle: Path, modality: str) -> None:
    """Change one tower's weights (and the manifest's checksum of them): another embedding space."""
    import json

    from safetensors.numpy import load_file, save_file

    from bindrt.fileio import sha256_file

    manifest = json.loads((bundle / "manifest.json").read_text())
    rel = manifest["modalities"][modality]["weights"]
    tensors = load_file(bundle / rel)
    key = sorted(tensors)[0]
    tensors[key] = tensors[key] + np.float32(0.01)
    save_file(tensors, bundle / rel)
    manifest["files"][rel] = {"sha256": sha256_file(bundle / rel), "bytes": (bundle / rel).stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_search_cli_prints_the_nearest_items(golden_bundle, collection, tmp_path):
    root, _ = collection
    out = tmp_path / "idx"
    proc = _cli("index", golden_bundle, root, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "indexed 12 items from 10 files" in proc.stdout
    proc = _cli(
        "search", out, "--image", root / "photo.jpg", "--text", "a photo", "--weights", "1,0.2", "-k", "3", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    import json

    hits = json.loads(proc.stdout)
    with Index.open(out) as index:
        expected = index.search([Term("vision", str(root / "photo.jpg")), Term("text", "a photo", 0.2)], k=3)
        alone = index.search(vision=str(root / "photo.jpg"), k=1)
    assert [(h["path"], h["line"]) for h in hits] == [(h.path, h.line) for h in expected]
    assert all(abs(a["score"] - b.score) < 1e-5 for a, b in zip(hits, expected)) and hits[0]["score"] < alone[0].score
    proc = _cli("search", out, "--text", "a red car", "-k", "2")
    assert proc.returncode == 0 and "captions.txt:4" in proc.stdout and "a red car" in proc.stdout
