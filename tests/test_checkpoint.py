"""Strict loading of reference checkpoints, the huge layout, and unsafe files."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest
import torch
from helpers import GOLDEN_DIR

from bindrt.config import PRESETS
from bindrt.errors import CheckpointError
from bindrt.model import ImageBind
from bindrt.model.checkpoint import read_state_dict, reference_layout, split_state_dict
from bindrt.model.imagebind import load_encoder

TSV = Path(__file__).parent / "data" / "imagebind_huge_state_dict.tsv"


def _huge_reference() -> dict[str, tuple[tuple[int, ...], str]]:
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines()[1:]]
    return {k: (() if s == "scalar" else tuple(int(d) for d in s.split("x")), dt) for k, s, dt in rows}


def _meta_state_dict(layout) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, (shape, _) in layout.items()}


def test_huge_preset_layout_equals_reference_tsv():
    expected = _huge_reference()
    layout = reference_layout(PRESETS["imagebind_huge"])
    assert layout == {k: shape for k, (shape, _) in expected.items()}
    assert len(layout) == 1311
    assert sum(int(torch.Size(s).numel()) for s in layout.values()) == 1_200_786_990


def test_huge_state_dict_loads_strictly_on_meta():
    sd = _meta_state_dict(_huge_reference())
    parts = split_state_dict(sd, PRESETS["imagebind_huge"])
    for modality, weights in parts.items():
        encoder = load_encoder(modality, PRESETS["imagebind_huge"], weights)
        assert sum(p.numel() for p in encoder.parameters()) > 0
    assert sum(len(v) for v in parts.values()) == 1311


def test_renamed_key_is_named_in_the_error():
    sd = _meta_state_dict(_huge_reference())
    sd["modality_trunks.vision.blocks.3.attn.in_proj_weights"] = sd.pop(
        "modality_trunks.vision.blocks.3.attn.in_proj_weight"
    )
    with pytest.raises(CheckpointError) as err:
        split_state_dict(sd, PRESETS["imagebind_huge"])
    msg = str(err.value)
    assert "missing keys (1): modality_trunks.vision.blocks.3.attn.in_proj_weight" in msg
    assert "unexpected keys (1): modality_trunks.vision.blocks.3.attn.in_proj_weights" in msg


def test_reshaped_key_is_named_in_the_error():
    sd = _meta_state_dict(_huge_reference())
    sd["modality_heads.depth.2.weight"] = torch.empty(1024, 385, device="meta")
    with pytest.raises(
        CheckpointError, match=r"modality_heads.depth.2.weight: checkpoint \(1024, 385\) vs expected \(1024, 384\)"
    ):
        split_state_dict(sd, PRESETS["imagebind_huge"])


def test_selected_modalities_ignore_the_rest():
    """A vision-only load must not require (or hold) the text tower."""
    sd = {k: v for k, v in _meta_state_dict(_huge_reference()).items() if ".text." not in k}
    parts = split_state_dict(sd, PRESETS["imagebind_huge"], ["vision"])
    assert set(parts) == {"vision"}
    assert all(".vision." in k for k in parts["vision"])
    with pytest.raises(CheckpointError, match="missing keys"):
        split_state_dict(sd, PRESETS["imagebind_huge"], ["text"])


def test_vision_only_load_reads_no_text_weights(tmp_path):
    """Loading one modality from a checkpoint file keeps no other tower's tensors."""
    import bindrt

    model = bindrt.load(GOLDEN_DIR / "weights.pth", config="golden", modalities=["vision"])
    assert model.modalities == ("vision",)
    assert set(model.backend.encoders) == {"vision"}


def test_golden_checkpoint_roundtrips_through_reference_keys():
    sd = read_state_dict(GOLDEN_DIR / "weights.pth")
    model = ImageBind.from_state_dict(sd, PRESETS["golden"])
    back = model.reference_state_dict()
    assert set(back) == set(sd)
    assert all(torch.equal(back[k], sd[k]) for k in sd)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"model": {"a": torch.ones(1)}, "epoch": 3}, "not a plain state dict"),
        ([torch.ones(1)], "holds a list, expected a plain state dict"),
        (collections.OrderedDict(x=torch.ones(2), step=5), "not a plain state dict"),
    ],
)
def test_non_state_dict_checkpoints_are_rejected(tmp_path, payload, message):
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=message):
        read_state_dict(path)


def test_arbitrary_pickles_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"w": Evil()}, path)
    with pytest.raises(CheckpointError, match="never unpickles") as info:
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out
    assert "weights_only=False" not in str(info.value)  # never repeat torch's advice to disable the guard


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", pickle.dumps(Evil())])
def test_garbage_files_are_rejected(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="could not be loaded with weights_only=True|never unpickles"):
        read_state_dict(path)


def test_a_directory_or_missing_path_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="is not a regular file"):
        read_state_dict(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_truncated_checkpoint(tmp_path):
    data = (GOLDEN_DIR / "weights.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        read_state_dict(path)
