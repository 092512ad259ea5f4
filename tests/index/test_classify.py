"""``bindrt classify``: prompt-ensemble prototypes, few-shot blending, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bindrt
from bindrt.classification import classify, text_prototypes
from bindrt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_text_prototypes_are_the_unit_mean_of_the_templates(golden_bundle):
    with bindrt.load(golden_bundle, modalities=["text"]) as model:
        protos = text_prototypes(model, ["dog", "car"], ["a photo of a {}.", "the {}"])
        emb = model.embed(normalize=True, text=["a photo of a dog.", "the dog"])["text"]
    expected = emb.mean(0) / np.linalg.norm(emb.mean(0))
    assert np.allclose(protos[0], expected, atol=1e-6) and np.allclose(np.linalg.norm(protos, axis=1), 1)


def test_few_shot_examples_pull_each_file_to_its_own_label(golden_bundle, collection, tmp_path):
    """With the examples as the only prototype (text weight 0), each file is its own folder's label."""
    root, _ = collection
    files = {
        "photo": root / "photo.jpg",
        "logo": root / "logo.png",
        "tone": root / "tone16k.wav",
        "room": root / "scans/room.png",
    }
    examples = tmp_path / "examples"
    for label, f in files.items():
        (examples / label).mkdir(parents=True)
        shutil.copy(f, examples / label / f.name)
    with bindrt.load(golden_bundle) as model:
        zero = classify(model, list(files.values()), list(files))
        few = classify(model, list(files.values()), list(files), examples=examples, text_weight=0.0)
    assert np.allclose(zero.probabilities.sum(1), 1) and not zero.few_shot and few.few_shot
    assert few.predictions == list(files)
    assert np.allclose(np.diag(few.scores), 1, atol=1e-4)


def test_classify_cli_table_json_and_bad_input(golden_bundle, collection, tmp_path):
    root, _ = collection
    out = tmp_path / "result.json"
    cmd = [
        sys.executable,
        "-m",
        "bindrt",
        "classify",
        str(golden_bundle),
        str(root / "photo.jpg"),
        str(root / "tone16k.wav"),
    ]
    proc = subprocess.run(
        [*cmd, "--labels", "dog,car,bird", "--out", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [i["kind"] for i in result["items"]] == ["vision", "audio"]
    assert all(set(i["scores"]) == {"dog", "car", "bird"} and i["label"] in i["scores"] for i in result["items"])
    for extra, fragment in [
        (["--labels", "dog"], "at least two distinct"),
        (["--labels", "dog,cat", "--templates", "no placeholder"], "has no '{}'"),
        (["--labels", "dog,cat", "--examples", str(tmp_path)], "has no folder for label(s)"),
    ]:
        proc = subprocess.run([*cmd, *extra], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 2 and fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )
    with pytest.raises(ConfigError):
        classify(golden_bundle, [root / "photo.jpg"], ["a", "a"])
