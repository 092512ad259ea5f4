"""bindrt train end to end: exact resume, bad data, init from a reference checkpoint, DDP, learning."""

from __future__ import annotations

import json
import os
import socket
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from bindrt.bundle import Bundle
from bindrt.cli import main
from bindrt.training.data import BadDataError
from bindrt.training.loop import TrainConfig, train

#: These tests fork DataLoader workers and spawn DDP ranks. On the 2026-12-01 AMD EPYC VM a child process died
#: (SIGABRT, "terminate called without an active exception") in 2 of 8 full parallel runs, never when the tests
#: ran alone (see the session note): a crash is rerun, up to twice, and reported as a rerun, until it is explained.
pytestmark = pytest.mark.flaky(reruns=2, reruns_delay=1)

GOLDEN = Path(__file__).parents[1] / "golden" / "weights.pth"


def events(out: Path, kind: str) -> list[dict]:
    lines = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    return [e for e in lines if e["event"] == kind]


def losses(out: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events(out, "step")}  # later lines win (a resumed run re-logs)


def small(out: Path, **kw) -> TrainConfig:
    """A seconds-long run: both stages, a tiny pool, a small held-out set."""
    base = dict(
        out=str(out),
        steps=8,
        batch_size=8,
        modalities=("audio", "imu"),
        pool=24,
        eval_samples=20,
        gallery=10,
        workers=0,
        threads=1,
        quiet=True,
        ckpt_every=1000,
    )
    return TrainConfig(**{**base, **kw})


def test_resume_reproduces_the_uninterrupted_loss_curve(tmp_path):
    straight = tmp_path / "straight"
    train(small(straight))
    resumed = tmp_path / "resumed"
    assert train(small(resumed, stop_at=3)) == {"stopped_at": 3, "out": str(resumed)}  # inside the image-text stage
    train(small(resumed, resume=True, stop_at=6, workers=1))  # crosses into the bind stage; other worker count
    train(small(resumed, resume=True))
    a, b = losses(straight), losses(resumed)
    assert sorted(a) == sorted(b) == list(range(1, 9))
    np.testing.assert_allclose([b[s] for s in a], [a[s] for s in a], rtol=1e-5, atol=1e-6)
    # and the resulting weights match too
    wa, wb = Bundle.open(straight / "bundle"), Bundle.open(resumed / "bundle")
    for m in ("vision", "audio", "imu"):
        for key, t in wa.load_weights(m).items():
            torch.testing.assert_close(wb.load_weights(m)[key], t, rtol=1e-5, atol=1e-6)


def test_resume_refuses_changed_settings(tmp_path):
    train(small(tmp_path / "r", stop_at=2))
    with pytest.raises(Exception, match="differ from the checkpoint"):
        train(small(tmp_path / "r", resume=True, seed=1))


def test_cli_writes_a_bundle_with_the_report_and_refuses_to_clobber(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--out",
        str(out),
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--modalities",
        "depth,thermal",
        "--pool",
        "12",
        "--eval-samples",
        "10",
        "--workers",
        "0",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "zero-shot top-1" in printed and "samples/s" in printed
    bundle = Bundle.open(out / "bundle")
    assert bundle.modalities == ("vision", "text", "depth", "thermal")
    report = json.loads(bundle.file("eval/report.json").read_text())
    import jsonschema  # a dev dependency

    from bindrt.schema import SCHEMA_FILE

    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(
        bundle.manifest
    )  # trained bundles too
    assert set(report["zero_shot_top1"]) == {"vision", "depth", "thermal"}
    assert {"depth->image", "thermal->image"} <= set(report["retrieval"])
    assert (out / "checkpoints" / "last.pt").is_file()
    assert main(args) == 2  # the run exists: --resume or --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0  # bindrt's own outputs are replaced
    assert Bundle.open(out / "bundle").modalities == bundle.modalities
    assert (out / "train.jsonl").read_text().count('"event": "start"') == 1  # a fresh log, not appended to


# ----------------------------------------------------------------------------- real files, bad data


def _wav(path: Path, seconds: float = 2.5, freq: float = 440.0) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    pcm = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(pcm.tobytes())


def _jpg(path: Path, seed: int) -> None:
    from PIL import Image

    rgb = np.random.default_rng(seed).integers(0, 255, size=(64, 80, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


@pytest.fixture()
def messy_folder(tmp_path) -> Path:
    root = tmp_path / "pairs"
    root.mkdir()
    for i in range(6):
        _jpg(root / f"clip{i}.jpg", i)
        _wav(root / f"clip{i}.wav", freq=200.0 + 100 * i)
    _jpg(root / "broken.jpg", 9)
    (root / "broken.wav").write_bytes(b"RIFF....not really a wave file")  # unreadable audio
    _jpg(root / "alone.jpg", 10)  # no partner
    (root / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")  # unreadable image
    _wav(root / "corrupt.wav")
    return root


def _data_run(tmp_path: Path, folder: Path, on_bad: str) -> TrainConfig:
    return TrainConfig(
        out=str(tmp_path / f"run_{on_bad}"),
        init=str(GOLDEN),
        init_config="golden",
        data=str(folder),
        modalities=("audio",),
        on_bad_data=on_bad,
        steps=3,
        batch_size=4,
        workers=0,
        threads=1,
        quiet=False,
        log_every=1,
    )


def test_bad_data_stops_with_a_report_naming_each_file(tmp_path, messy_folder, capsys):
    with pytest.raises(BadDataError) as err:
        train(_data_run(tmp_path, messy_folder, "stop"))
    message = str(err.value)
    for name in ("broken.wav", "alone.jpg", "corrupt.jpg"):
        assert name in message
    assert "unreadable" in message and "no audio file" in message and "--on-bad-data skip" in message
    assert "broken.wav" in capsys.readouterr().out  # also printed before stopping
    bad = events(tmp_path / "run_stop", "bad_data")[0]
    assert bad["action"] == "stop" and len(bad["items"]) == 3
    assert not (tmp_path / "run_stop" / "bundle").exists()


def test_bad_data_skip_trains_on_the_rest_and_lists_what_it_skipped(tmp_path, messy_folder, capsys):
    summary = train(_data_run(tmp_path, messy_folder, "skip"))
    printed = capsys.readouterr().out
    assert "3 item(s) skipped" in printed and "corrupt.jpg" in printed
    bad = events(tmp_path / "run_skip", "bad_data")[0]
    assert bad["action"] == "skip" and sorted(Path(f).name for item in bad["items"] for f in item["files"]) == [
        "alone.jpg",
        "broken.jpg",
        "broken.wav",
        "corrupt.jpg",
        "corrupt.wav",
    ]
    report = summary["report"]
    assert report["data"]["pairs"] == 6 and len(report["data"]["skipped"]) == 3
    # the image tower came from the reference checkpoint and stayed frozen; audio was trained from it
    from bindrt.model.checkpoint import read_state_dict

    reference = read_state_dict(GOLDEN)
    bundle = Bundle.open(tmp_path / "run_skip" / "bundle")
    for key, value in bundle.load_weights("vision").items():
        torch.testing.assert_close(value, reference[key], rtol=0, atol=0)
    changed = [k for k, v in bundle.load_weights("audio").items() if not torch.equal(v, reference[k])]
    assert changed
    # the bundle is an ordinary bindrt bundle
    import bindrt

    with bindrt.load(bundle.path, modalities=["vision", "audio"]) as model:
        emb = model.embed(vision=[str(messy_folder / "clip0.jpg")], audio=[str(messy_folder / "clip0.wav")])
    assert emb["vision"].shape == emb["audio"].shape == (1, 32)


# ----------------------------------------------------------------------------- DDP (gloo, 2 CPU processes)


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    train(
        TrainConfig(
            out=out,
            init=str(GOLDEN),
            init_config="golden",
            modalities=("imu",),
            steps=3,
            batch_size=4,
            pool=8,
            eval_samples=10,
            gallery=10,
            workers=0,
            threads=1,
            quiet=True,
        )
    )


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    torch.multiprocessing.spawn(_ddp_worker, args=(port, str(out)), nprocs=2, join=True)
    start = events(out, "start")[0]
    assert start["world_size"] == 2
    assert len(events(out, "step")) == 3
    assert Bundle.open(out / "bundle").modalities == ("vision", "text", "imu")


# ----------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_a_short_run_learns_emergent_alignment(tmp_path):
    """A shortened default run: audio and IMU never see text, yet match text prompts well above chance."""
    summary = train(
        TrainConfig(
            out=str(tmp_path / "learn"),
            steps=500,
            clip_fraction=0.7,
            batch_size=48,
            pool=2400,
            modalities=("audio", "imu"),
            eval_samples=200,
            workers=1,
            threads=1,
            quiet=True,
        )
    )
    report = summary["report"]
    chance = report["world"]["chance_top1"]
    zero_shot = report["zero_shot_top1"]
    assert zero_shot["vision"] > 3 * chance, zero_shot  # trained image-text alignment
    assert zero_shot["audio"] > 2.5 * chance, zero_shot  # emergent: audio was only ever paired with images
    assert zero_shot["imu"] > 2.5 * chance, zero_shot
    assert report["retrieval"]["audio->image"]["R@5"] > 3 * report["retrieval"]["chance"]["R@5"]
