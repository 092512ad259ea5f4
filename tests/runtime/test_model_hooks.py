"""The model's hooks are on the forward path, cost nothing by default, and swap cleanly (plain torch, no kernels)."""

from __future__ import annotations

import pytest
import torch

from bindrt.bench import random_batch
from bindrt.config import MODALITIES, PRESETS
from bindrt.model import build_encoder
from bindrt.model.hooks import hook_sites, install_hooks
from bindrt.model.layers import add_layer_norm, layer_norm, linear_gelu

CONFIG = PRESETS["golden"]


def _encoder(modality: str):
    torch.manual_seed(0)
    return build_encoder(modality, CONFIG).eval().requires_grad_(False)


def _input(modality: str) -> torch.Tensor:
    return torch.from_numpy(random_batch(modality, 2, seed=3))


def _scaled(fn):
    """``fn`` with its output (every output, for add_norm) scaled: a visible but harmless change."""

    def hook(*args):
        out = fn(*args)
        return tuple(o * 1.5 for o in out) if isinstance(out, tuple) else out * 1.5

    return hook


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_hook_is_on_the_path_and_restoring_it_is_bit_identical(modality):
    encoder, x = _encoder(modality), _input(modality)
    sites = list(hook_sites(encoder))
    names = {(type(m).__name__, n) for m, n in sites}
    expected = {("Attention", "core"), ("Block", "norm"), ("Block", "add_norm"), ("Mlp", "linear_gelu")}
    assert names == (expected if modality == "text" else expected | {("PatchTokenizer", "embed")})
    with torch.no_grad():
        reference = encoder(x)
        for module, name in sites:
            original = getattr(module, name)
            setattr(module, name, _scaled(original))
            changed = encoder(x)
            setattr(module, name, original)
            assert not torch.equal(changed, reference), (type(module).__name__, name)
            assert torch.equal(encoder(x), reference), (type(module).__name__, name)


def test_install_hooks_replaces_only_the_named_functions_and_counts_them():
    encoder = _encoder("depth")
    blocks = CONFIG.num_blocks("depth")
    first = install_hooks(encoder, {layer_norm: _scaled(layer_norm), linear_gelu: _scaled(linear_gelu)})
    assert first == {layer_norm: blocks, linear_gelu: blocks}
    assert all(b.add_norm is add_layer_norm for b in encoder.trunk.blocks)
    assert install_hooks(encoder, {layer_norm: _scaled(layer_norm)}) == {}  # already replaced: left alone


def test_swapping_hooks_leaves_the_state_dict_alone():
    encoder = _encoder("imu")
    keys = {k: v.shape for k, v in encoder.state_dict().items()}
    install_hooks(encoder, {add_layer_norm: _scaled(add_layer_norm)})
    assert {k: v.shape for k, v in encoder.state_dict().items()} == keys


@pytest.mark.parametrize("modality", ["vision", "text"])
def test_default_hooks_compile_without_graph_breaks(modality):
    encoder, x = _encoder(modality), _input(modality)
    compiled = torch.compile(encoder, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), encoder(x), rtol=0, atol=0)
