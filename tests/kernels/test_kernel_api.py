"""Custom-op plumbing: opcheck, torch.compile / torch.export tracing, patching, availability."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import kernel_refs  # noqa: F401  # first: sets TRITON_INTERPRET before bindrt.kernels is imported
import pytest
import torch
from kernel_refs import DEVICE, INTERPRET, assert_close, randn, ref_attention

import bindrt.kernels as K

REPO = Path(__file__).resolve().parents[2]
K.register_ops()


def test_available_reports_true_here():
    ok, reason = K.available()
    assert ok, reason
    assert ("interpreter" in reason.lower()) == INTERPRET


def _op_cases():
    qkv = randn(2, 9, 3 * 32, seed=1)
    bk, bv = randn(1, 1, 32, seed=2), randn(1, 1, 32, seed=3)
    x4 = randn(2, 1, 32, 48, seed=4)
    w5 = randn(24, 1, 1, 16, 16, seed=5, scale=0.06)
    cls, pos = randn(1, 1, 24, seed=6), randn(1, 7, 24, seed=7)
    nw, nb = randn(24, seed=8), randn(24, seed=9)
    x = randn(2, 5, 24, seed=10)
    return {
        "attention_bias_kv": (torch.ops.bindrt.fused_attention.default, (qkv, bk, bv, 2, False)),
        "attention_causal": (torch.ops.bindrt.fused_attention.default, (qkv, None, None, 2, True)),
        "patch_embed_ln": (
            torch.ops.bindrt.patch_embed.default,
            (x4.unsqueeze(2), w5, cls, pos, nw, nb, 1e-5, [1, 16, 16]),
        ),
        "layer_norm": (torch.ops.bindrt.layer_norm.default, (x, nw, nb, 1e-6)),
        "add_layer_norm": (torch.ops.bindrt.add_layer_norm.default, (x, x * 0.5 + 1, nw, nb, 1e-6)),
        "bias_gelu": (torch.ops.bindrt.bias_gelu.default, (x, nb)),
    }


@pytest.mark.parametrize("name", list(_op_cases()))
def test_opcheck(name):
    op, args = _op_cases()[name]
    result = torch.library.opcheck(op, args)
    assert all(v == "SUCCESS" for v in result.values()), result


def test_torch_compile_traces_ops_as_single_nodes():
    qkv = randn(2, 9, 3 * 32, seed=1)
    bk, bv = randn(1, 1, 32, seed=2), randn(1, 1, 32, seed=3)
    w, b = randn(32, seed=4), randn(32, seed=5)

    def f(qkv, bk, bv, w, b):
        o = K.fused_attention(qkv, bk, bv, 2, False)
        s, y = K.add_layer_norm(o, qkv[..., :32], w, b, 1e-6)
        return K.bias_gelu(y, b) + s

    # aot_eager: traces through fake tensors and functionalization without needing
    # a C++/GPU codegen toolchain; inductor would treat the ops the same (opaque)
    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(qkv, bk, bv, w, b), f(qkv, bk, bv, w, b))


def test_torch_export_keeps_custom_ops():
    class M(torch.nn.Module):
        def forward(self, qkv, bk, bv):
            return K.fused_attention(qkv, bk, bv, 2, True)

    qkv = randn(2, 9, 3 * 32, seed=1)
    bk, bv = randn(1, 1, 32, seed=2), randn(1, 1, 32, seed=3)
    ep = torch.export.export(M(), (qkv, bk, bv))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets == ["bindrt.fused_attention.default"], targets
    assert_close(ep.module()(qkv, bk, bv), ref_attention(qkv, bk, bv, 2, True), torch.float32, "exported")


def test_torch_export_dynamic_batch_and_patch_embed():
    class Stem(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(randn(16, 3, 2, 14, 14, seed=1, scale=0.03))
            self.cls = torch.nn.Parameter(randn(1, 1, 16, seed=2))
            self.pos = torch.nn.Parameter(randn(1, 5, 16, seed=3))

        def forward(self, img):
            tokens = K.patch_embed_vision(img, self.w, self.cls, self.pos)
            qkv = torch.cat([tokens, tokens * 0.5, -tokens], -1)
            return K.fused_attention(qkv, None, None, 2, False)

    m = Stem().to(DEVICE)
    img = randn(2, 3, 28, 28, seed=4)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(m, (img,), dynamic_shapes={"img": {0: batch}})
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"bindrt.patch_embed.default", "bindrt.fused_attention.default"} <= targets, targets
    img3 = randn(3, 3, 28, 28, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(ep.module()(img3), m(img3))


def test_forward_with_parameters_requiring_grad_then_backward_raises():
    qkv = randn(1, 5, 3 * 16, seed=1).requires_grad_()
    bk = torch.nn.Parameter(randn(1, 1, 16, seed=2))
    bv = torch.nn.Parameter(randn(1, 1, 16, seed=3))
    out = K.fused_attention(qkv, bk, bv, 1, False)  # inference kernels: forward works
    assert_close(out.detach(), ref_attention(qkv, bk, bv, 1, False), torch.float32, "grad-mode forward")
    with pytest.raises(RuntimeError, match="autograd"):
        out.sum().backward()


class _FakeAttention(torch.nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads = heads
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * dim, dim))
        self.core = lambda *a: None


def test_patch_encoder_counts_and_swaps():
    enc = torch.nn.Sequential(_FakeAttention(32, 2), torch.nn.Linear(2, 2), torch.nn.Sequential(_FakeAttention(48, 1)))
    assert K.patch_encoder(enc) == 2
    assert enc[0].core is K.fused_attention and enc[2][0].core is K.fused_attention
    assert K.patch_encoder(torch.nn.Linear(2, 2)) == 0
    from bindrt.errors import BackendError

    with pytest.raises(BackendError, match="head_dim"):
        K.patch_encoder(_FakeAttention(600, 2))


def test_patched_bindrt_block_matches_sdpa_core():
    layers = pytest.importorskip("bindrt.model.layers")
    torch.manual_seed(0)
    for bias_kv, causal in ((True, False), (False, True)):
        block = layers.Block(48, 3, bias_kv).to(DEVICE).eval()
        x = randn(2, 29, 48, seed=3)
        with torch.no_grad():
            ref = block(x, causal)
            assert K.patch_encoder(block) == 1
            out = block(x, causal)
        assert_close(out, ref, torch.float32, f"patched Block bias_kv={bias_kv} causal={causal}")


def test_cpu_tensors_without_interpreter_raise_backend_error():
    code = textwrap.dedent(
        """
        import torch
        from bindrt.errors import BackendError
        from bindrt.kernels import fused_attention, layer_norm, available
        ok, reason = available()
        try:
            fused_attention(torch.randn(1, 4, 96), None, None, 2, False)
        except BackendError as e:
            assert "CPU" in str(e), e
            print("OK", ok)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-2000:]


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu():
    """AOT-compile representative configs for sm_90 (ptxas ships with triton): no compile errors, no spills."""
    script = REPO / "benchmarks" / "kernels" / "compile_check.py"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run(
        [sys.executable, str(script), "--quick", "--arch", "90"], env=env, capture_output=True, text=True, timeout=600
    )
    if r.returncode == 3:
        pytest.skip(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "compile check unavailable")
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize(
    "script,extra",
    [
        ("bench_attention", ["--modalities", "audio", "--sweep"]),
        ("bench_patch_embed", ["--modalities", "audio"]),
    ],
)
def test_benchmark_scripts_smoke(tmp_path, script, extra):
    """The GPU benchmarks stay runnable: --smoke (tiny shapes, interpreter on CPU) writes JSON + Markdown, with the
    machine record (CPU flags or GPU, versions, date) every benchmark carries."""
    out = tmp_path / "bench"
    cmd = [
        sys.executable,
        "-m",
        f"benchmarks.kernels.{script}",
        str(out),
        "--smoke",
        "--batches",
        "1",
        "--dtypes",
        "fp32",
        "--no-compile",
        *extra,
    ]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    payload = json.loads(out.with_suffix(".json").read_text())
    env, machine = payload["environment"], payload["environment"]["machine"]
    assert env["torch"] == torch.__version__ and env["date_utc"] == machine["date"]
    assert {"date", "cpu", "cpu_flags", "cpu_cores", "versions"} <= set(machine)
    assert machine["cpu_flags"] or machine.get("gpu"), machine
    ok = [x for x in payload["results"] if x["impl"] == "bindrt-triton" and x["status"] == "ok"]
    assert ok and all(x["max_rel_err"] < 1e-4 for x in ok)
    md = out.with_suffix(".md").read_text()
    assert "| modality |" in md and "bindrt-triton" in md
