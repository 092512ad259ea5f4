"""The golden model through the ``triton`` backend (Triton's CPU interpreter here, natively on a GPU)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from helpers import GOLDEN_INPUTS

import bindrt
from bindrt.errors import BackendError

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported

pytest.importorskip("triton", reason="triton is not installed (pip install bindrt[kernels])")

# Small slices of the golden inputs keep the interpreter fast; video keeps 1 item x 2 clips.
KINDS = ["vision", "text", "audio", "depth", "thermal", "imu", "video"]


@pytest.fixture(scope="module")
def backends(golden_bundle):
    opts = {} if ON_GPU else {"device": "cpu", "interpret": True}
    triton_model = bindrt.load(golden_bundle, backend="triton", **({"device": "cuda"} if ON_GPU else opts))
    torch_model = bindrt.load(golden_bundle, backend="torch", device="cuda" if ON_GPU else "cpu")
    return triton_model, torch_model


def test_all_kernels_are_swapped_in(backends):
    info = backends[0].backend.describe()
    assert info["kernels"] == "on"
    for modality, counts in info["fusions"].items():
        assert counts["attention"] == 2 and counts["norms"] == 2, modality
        assert counts["patch_embed"] == (0 if modality == "text" else 1), modality


def test_kernels_go_in_through_the_hooks_only(backends):
    from bindrt.model.hooks import hook_sites
    from bindrt.runtime.triton_backend import FUSIONS, kernel_hooks

    kernel_fns = {fn for fusion in FUSIONS for fn in kernel_hooks(fusion).values()}
    for modality, encoder in backends[0].backend.encoders.items():
        assert not [name for name, m in encoder.named_modules() if "forward" in vars(m)], modality
        sites = list(hook_sites(encoder))
        assert sites and all(getattr(m, name) in kernel_fns for m, name in sites), modality


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_golden_model_matches_torch_backend(backends, golden, kind):
    triton_model, torch_model = backends
    x = golden[GOLDEN_INPUTS[kind]][:2]
    if kind == "video":
        x = x[:1]
    a, b = triton_model.encode(kind, x), torch_model.encode(kind, x)
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    assert cos.min() >= 0.9999
    assert np.allclose(np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1), rtol=1e-4)


@pytest.mark.skipif(ON_GPU, reason="checks the no-GPU behaviour")
def test_without_gpu_falls_back_with_a_clear_message(golden_bundle):
    with pytest.raises(BackendError, match="cannot run its kernels here.*interpret=True"):
        bindrt.load(golden_bundle, backend="triton", device="cpu", fallback=False, modalities=["depth"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = bindrt.load(golden_bundle, backend="triton", device="cuda", modalities=["depth"])
    assert any("kernels are off" in str(w.message) for w in caught)
    assert model.backend.describe()["kernels"].startswith("off")
    assert model.backend.describe()["device"] == "cpu"


def test_bad_options(golden_bundle):
    with pytest.raises(BackendError, match="unknown fusion"):
        bindrt.load(golden_bundle, backend="triton", fusions=["warp"], modalities=["depth"])
    with pytest.raises(BackendError, match="unknown option"):
        bindrt.load(golden_bundle, backend="triton", speed=11, modalities=["depth"])
