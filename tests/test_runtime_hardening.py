"""The runtime API under wrong-type, out-of-range and closed-model use: one typed error naming the problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import GOLDEN_DIR

import bindrt
from bindrt.errors import BackendError, ConfigError, InputError
from bindrt.layouts import INPUT_LAYOUTS


@pytest.fixture()
def model(golden_bundle):
    with bindrt.load(golden_bundle, "torch") as m:
        yield m


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": "8"}, "batch_size='8' is of type str; expected int"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"batch_size": True}, "batch_size"),
        ({"device": "gpu"}, "unsupported device 'gpu'"),
        ({"device": 3}, "device=3 is of type int"),
        ({"precision": None}, "precision=None"),
    ],
)
def test_wrong_argument_types_are_config_or_backend_errors(golden_bundle, kwargs, message):
    with pytest.raises((ConfigError, BackendError), match=message):
        bindrt.load(golden_bundle, "torch", **kwargs)


@pytest.mark.parametrize("path", [None, 3, b"not-a-str-path".decode().encode()])
def test_load_needs_a_path(path):
    with pytest.raises(ConfigError, match="model path must be a str or os.PathLike"):
        bindrt.load(path)


def test_a_directory_that_is_not_a_bundle(tmp_path):
    (tmp_path / "important.txt").write_text("x")
    with pytest.raises(ConfigError, match="is a directory but not a bundle"):
        bindrt.load(tmp_path)


def test_embed_after_close_is_a_clear_error(golden_bundle):
    m = bindrt.load(golden_bundle, "torch", modalities=["text"])
    m.close()
    m.close()  # idempotent
    for call in (lambda: m.embed(text=["a dog"]), lambda: m.encode("text", np.zeros((1, 77), np.int64))):
        with pytest.raises(BackendError, match="this model was closed"):
            call()


@pytest.mark.parametrize("kind", ["imu", "vision", "depth", "audio"])
def test_finite_but_huge_inputs_are_rejected_naming_the_item(model, kind):
    """1e30 is finite, but overflows float32 inside LayerNorm: NaN embeddings with no error before the fix."""
    rng = np.random.default_rng()
    layout = INPUT_LAYOUTS[kind]
    batch = rng.standard_normal((3, *layout.item_shape), dtype=np.float32)
    item = int(rng.integers(3))
    batch[item].reshape(-1)[int(rng.integers(batch[item].size))] = np.float32(1e30)
    with pytest.raises(InputError, match=rf"\[{kind} item {item}\] holds a value of magnitude 1e\+30, outside"):
        model.encode(kind, batch)
    batch[item] = np.clip(batch[item], -layout.max_abs, layout.max_abs)
    assert np.isfinite(model.encode(kind, batch)).all()  # the bound itself is accepted


def test_imu_at_the_bound_stays_finite(model):
    """The bound leaves headroom: inputs at |x| = max_abs embed to finite values."""
    rng = np.random.default_rng()
    bound = INPUT_LAYOUTS["imu"].max_abs
    batch = (rng.choice([-1.0, 1.0], size=(2, 6, 2000)) * bound).astype(np.float32)
    assert np.isfinite(model.encode("imu", batch)).all()


def test_imu_file_with_huge_values_through_embed(model, tmp_path):
    rng = np.random.default_rng()
    imu = rng.standard_normal((6, 2000)).astype(np.float32)
    imu[0, 7] = 1e30
    np.save(tmp_path / "walk.npy", imu)
    with pytest.raises(InputError, match=r"\[imu item 1\].*outside the imu encoder's input range"):
        model.embed(imu=[rng.standard_normal((6, 2000)).astype(np.float32), str(tmp_path / "walk.npy")])


def test_non_finite_weights_give_an_error_not_nan_embeddings(golden_bundle):
    """Weights that turn non-finite after loading (here: set in place) are caught at the output."""
    with bindrt.load(golden_bundle, "torch", modalities=["text"]) as m:
        with torch.no_grad():
            next(m.backend.encoders["text"].parameters()).fill_(float("nan"))
        with pytest.raises(BackendError, match=r"produced NaN/Inf embeddings for text item\(s\) \[0, 1\]"):
            m.embed(text=["a dog", "a cat"])


def test_checkpoint_path_that_is_a_directory(tmp_path):
    from bindrt.errors import CheckpointError

    ckpt = tmp_path / "ckpt.pth"
    ckpt.mkdir()
    with pytest.raises((CheckpointError, ConfigError), match="not a bundle|not a regular file"):
        bindrt.load(ckpt, config="golden")


def test_huge_config_dimension_is_a_config_error():
    from bindrt.config import ImageBindConfig

    with pytest.raises(ConfigError, match="'vision_embed_dim' is 1000000000000; expected at most"):
        ImageBindConfig(vision_embed_dim=10**12)
    assert GOLDEN_DIR.is_dir()


def test_a_symlinked_bundle_directory_loads(golden_bundle, tmp_path):
    """Deployments point a stable name at the current bundle; loading follows it (only replacing does not)."""
    link = tmp_path / "current"
    link.symlink_to(golden_bundle, target_is_directory=True)
    with bindrt.load(link, "torch", modalities=["text"]) as m:
        assert m.embed(text=["a dog"])["text"].shape == (1, 32)


def test_normalize_gives_unit_rows_of_the_same_direction(golden_bundle):
    """The reference scales each modality's rows (text by its logit scale); normalize=True removes only that."""
    rng = np.random.default_rng()
    with bindrt.load(golden_bundle, "torch", modalities=["text", "imu"]) as m:
        ids = bindrt.layouts.random_batch("text", 3, rng)
        scaled, unit = m.encode("text", ids), m.encode("text", ids, normalize=True)
        np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(unit * np.linalg.norm(scaled, axis=1, keepdims=True), scaled, rtol=1e-5, atol=1e-6)
        assert not np.allclose(np.linalg.norm(scaled, axis=1), 1.0)  # the golden text tower has a logit scale
        imu = rng.standard_normal((2, 6, 2000)).astype(np.float32)
        out = m.embed(imu=[imu[0], imu[1]], normalize=True)["imu"]
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
