#!/usr/bin/env python
"""Benchmark bindrt's fused attention against torch SDPA backends and torch.compile.

    python -m benchmarks.kernels.bench_attention OUT [--dtypes fp16,bf16] [--batches 64,256]
                                                     [--modalities vision,audio,text,depth] [--sweep]
    python -m benchmarks.kernels.bench_attention OUT --smoke      # tiny shapes, CPU interpreter OK

Writes ``OUT.json`` (everything, including the environment) and ``OUT.md`` (a
table). Shapes are ImageBind-huge's attention cores: vision 257 tokens 16x80 (no
bias_kv), audio 229 + bias_kv 12x64, text 77 causal 16x64, depth 197 + bias_kv
8x48 (thermal 197 + bias_kv 12x64 and imu 251 + bias_kv 8x64 on request).

Implementations, all starting from the packed ``(B, N, 3D)`` projection and
ending in ``(B, N, D)`` (what the model's ``core`` does), so layout work is
counted:

* ``bindrt-triton``: :func:`bindrt.kernels.fused_attention`.
* ``sdpa-<backend>``: the model's default core (split, bias_kv concat,
  transposes, ``F.scaled_dot_product_attention`` under
  ``torch.nn.attention.sdpa_kernel(<backend>)``, transpose back) for flash,
  efficient, math and cudnn; "unsupported" when the backend rejects the case.
* ``sdpa-<backend>-kernel``: the same SDPA call alone on pre-laid-out
  ``(B, H, M, hd)`` tensors: the kernel's own time without layout copies.
* ``compile-math``: ``torch.compile`` of the written-out reference
  (matmul, softmax, matmul).

Median time over repeats (``triton.testing.do_bench``), TFLOP/s from the useful
FLOPs (4*B*H*hd*N*keys; causal counts the lower triangle), % of the peak
measured in the same run with an 8192^3 ``torch.matmul`` in that dtype, and the
max error relative to an fp32 math reference (so a fast wrong kernel shows).
``--sweep`` also times the Triton kernel over a grid of tile configs and
reports the best (feed it back into ``attention_config``).
"""

from __future__ import annotations

import argparse
import math
import sys

from benchmarks.kernels import bench_common as bc

MODALITIES = {
    "vision": dict(N=257, H=16, hd=80, bias_kv=False, causal=False),
    "audio": dict(N=229, H=12, hd=64, bias_kv=True, causal=False),
    "text": dict(N=77, H=16, hd=64, bias_kv=False, causal=True),
    "depth": dict(N=197, H=8, hd=48, bias_kv=True, causal=False),
    "thermal": dict(N=197, H=12, hd=64, bias_kv=True, causal=False),
    "imu": dict(N=251, H=8, hd=64, bias_kv=True, causal=False),
}
SMOKE_MODALITIES = {
    "vision": dict(N=17, H=2, hd=80, bias_kv=False, causal=False),
    "audio": dict(N=13, H=2, hd=64, bias_kv=True, causal=False),
    "text": dict(N=11, H=2, hd=64, bias_kv=False, causal=True),
    "depth": dict(N=9, H=2, hd=48, bias_kv=True, causal=False),
}
SWEEP = [(bm, bn, w, s) for bm in (32, 64, 128) for bn in (32, 64, 128) for w in (4, 8) for s in (2, 3)]


def math_core(qkv, bias_k, bias_v, num_heads: int, causal: bool):
    """Written-out nn.MultiheadAttention core (the torch.compile subject and the reference)."""
    import torch

    B, N, three_d = qkv.shape
    D = three_d // 3
    hd = D // num_heads
    q, k, v = qkv.split(D, dim=-1)
    if bias_k is not None:
        k = torch.cat([k, bias_k.expand(B, 1, D)], 1)
        v = torch.cat([v, bias_v.expand(B, 1, D)], 1)
    M = k.shape[1]
    q = q.reshape(B, N, num_heads, hd).transpose(1, 2)
    k = k.reshape(B, M, num_heads, hd).transpose(1, 2)
    v = v.reshape(B, M, num_heads, hd).transpose(1, 2)
    s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
    if causal:
        mask = torch.ones(N, M, dtype=torch.bool, device=qkv.device).triu(1)
        mask[:, N:] = False
        s = s.masked_fill(mask, float("-inf"))
    return (s.float().softmax(-1).to(v.dtype) @ v).transpose(1, 2).reshape(B, N, D)


def sdpa_core(qkv, bias_k, bias_v, num_heads: int, causal: bool):
    """The model's default core (bindrt.model.layers.sdpa_attention), inlined to avoid the import."""
    import torch
    import torch.nn.functional as F

    B, N, three_d = qkv.shape
    D = three_d // 3
    hd = D // num_heads
    q, k, v = qkv.split(D, dim=-1)
    if bias_k is not None:
        k = torch.cat([k, bias_k.expand(B, 1, D)], dim=1)
        v = torch.cat([v, bias_v.expand(B, 1, D)], dim=1)
    q = q.reshape(B, N, num_heads, hd).transpose(1, 2)
    k = k.reshape(B, k.shape[1], num_heads, hd).transpose(1, 2)
    v = v.reshape(B, v.shape[1], num_heads, hd).transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).reshape(B, N, D)


def flops(B, N, H, hd, bias_kv, causal) -> float:
    if causal:
        pairs = N * (N + 1) / 2 + (N if bias_kv else 0)
    else:
        pairs = N * (N + (1 if bias_kv else 0))
    return 4.0 * B * H * hd * pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bc.add_sweep_args(ap, "vision,audio,text,depth", f"any of {','.join(MODALITIES)}")
    ap.add_argument("--sweep", action="store_true", help="also sweep Triton tile configs")
    args = ap.parse_args(argv)

    settings = bc.sweep_settings(args, MODALITIES, SMOKE_MODALITIES)
    if settings is None:
        return 2
    env = bc.environment()
    peaks = {str(dt): bc.measure_peak(dt, smoke=args.smoke) for dt in settings.dtypes}
    print(f"environment: {env}")
    for k, v in peaks.items():
        print(f"peak {k}: {v['tflops']:.1f} TFLOP/s (matmul {v['n']}^3)")
    compiled_math = None if args.no_compile else bc.compile_for_static_shapes(math_core, settings.compile_backend)

    results, rows = [], []
    for mod in settings.modalities:
        shape = settings.table[mod]
        for dt in settings.dtypes:
            for B in settings.batches:
                case = Case(mod, B, dt, shape, settings.device)
                measured = time_impls(
                    case, implementations(case, compiled_math), settings.timing, peaks[str(dt)]["tflops"]
                )
                results.extend(measured)
                print(
                    f"{mod} B={B} {dt}: "
                    + ", ".join(f"{r['impl']} {r['ms']:.3f} ms" for r in measured if r.get("status") == "ok"),
                    flush=True,
                )
                rows.extend(table_rows(case, measured))
                if args.sweep:
                    sweep_results, best_row = sweep_configs(
                        case, SWEEP if not args.smoke else SWEEP[:2], settings.timing
                    )
                    results.extend(sweep_results)
                    rows.extend(best_row)

    payload = dict(
        environment=env, peaks=peaks, smoke=args.smoke, compile_backend=settings.compile_backend, results=results
    )
    notes = [
        "times: median ms (triton.testing.do_bench); TFLOP/s from useful FLOPs (causal: lower triangle)",
        "% peak: against an 8192^3 torch.matmul in the same dtype measured in this run",
        "sdpa-X: the model's SDPA core incl. split/concat/transposes; sdpa-X-kernel: the SDPA call alone",
        "err: max |out - ref| / max |ref| vs an fp32 math reference",
        "speedup: best sdpa-X core time / this time",
    ]
    if args.smoke:
        notes.insert(0, "SMOKE RUN: tiny shapes, timings meaningless (CPU / interpreter)")
    headers = ["modality", "batch", "dtype", "impl", "ms", "TFLOP/s", "% peak", "err", "speedup"]
    jp, mp = bc.write_outputs(args.out, payload, rows, headers, "Attention core benchmark", notes)
    print(f"wrote {jp} and {mp}")
    bad = [
        r for r in results if r.get("impl") == "bindrt-triton" and (r.get("status") != "ok" or r["max_rel_err"] > 2e-2)
    ]
    if bad:
        print(f"bindrt-triton failed or inaccurate in {len(bad)} case(s)", file=sys.stderr)
        return 1
    return 0


class Case:
    """One (modality, batch, dtype) case: its fresh inputs, the fp32 math reference and its FLOPs."""

    def __init__(self, modality: str, batch: int, dtype, shape: dict, device) -> None:
        import torch

        self.modality, self.batch, self.dtype = modality, batch, dtype
        self.N, self.H, self.hd = shape["N"], shape["H"], shape["hd"]
        self.bias_kv, self.causal = shape["bias_kv"], shape["causal"]
        self.D = self.H * self.hd
        g = torch.Generator(device="cpu").manual_seed(0)
        self.qkv = torch.randn(batch, self.N, 3 * self.D, generator=g).to(device, dtype)
        self.bk = torch.randn(1, 1, self.D, generator=g).to(device, dtype) if self.bias_kv else None
        self.bv = torch.randn(1, 1, self.D, generator=g).to(device, dtype) if self.bias_kv else None
        with torch.no_grad():
            self.ref = math_core(
                self.qkv.float(),
                None if self.bk is None else self.bk.float(),
                None if self.bv is None else self.bv.float(),
                self.H,
                self.causal,
            )
        self.flops = flops(batch, self.N, self.H, self.hd, self.bias_kv, self.causal)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    def record(self, **fields) -> dict:
        return dict(modality=self.modality, batch=self.batch, dtype=self.dtype_name, **fields)


def sdpa_backends() -> dict:
    from torch.nn.attention import SDPBackend

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        backends["cudnn"] = SDPBackend.CUDNN_ATTENTION
    return backends


def implementations(case: Case, compiled_math) -> dict:
    """bindrt's kernel, the model's SDPA core and the bare SDPA call per backend, and compiled math."""
    import torch
    from torch.nn.attention import sdpa_kernel

    from bindrt.kernels import attention as A

    qkv, bk, bv, H, causal, B, N, D, hd = (
        case.qkv,
        case.bk,
        case.bv,
        case.H,
        case.causal,
        case.batch,
        case.N,
        case.D,
        case.hd,
    )
    impls = {"bindrt-triton": lambda: A.fused_attention(qkv, bk, bv, H, causal)}
    # pre-laid-out tensors for the kernel-only SDPA timings
    q, k, v = qkv.split(D, -1)
    if case.bias_kv:
        k = torch.cat([k, bk.expand(B, 1, D)], 1)
        v = torch.cat([v, bv.expand(B, 1, D)], 1)
    ql = q.reshape(B, N, H, hd).transpose(1, 2).contiguous()
    kl = k.reshape(B, -1, H, hd).transpose(1, 2).contiguous()
    vl = v.reshape(B, -1, H, hd).transpose(1, 2).contiguous()
    for bname, bend in sdpa_backends().items():

        def core(bend=bend):
            with sdpa_kernel(bend):
                return sdpa_core(qkv, bk, bv, H, causal)

        def kern(bend=bend):
            with sdpa_kernel(bend):
                o = torch.nn.functional.scaled_dot_product_attention(ql, kl, vl, is_causal=causal)
            return o.transpose(1, 2).reshape(B, N, D)  # view-only for the error check

        impls[f"sdpa-{bname}"] = core
        impls[f"sdpa-{bname}-kernel"] = kern
    if compiled_math is not None:
        impls["compile-math"] = lambda: compiled_math(qkv, bk, bv, H, causal)
    return impls


def time_impls(case: Case, impls: dict, timing: dict, peak: float) -> list[dict]:
    """Each implementation's median time, TFLOP/s, share of peak and error vs the reference (or why it failed)."""
    fields = dict(N=case.N, heads=case.H, head_dim=case.hd, bias_kv=case.bias_kv, causal=case.causal, flops=case.flops)
    measured = bc.measure_impls(impls, case.ref, timing, lambda name: case.record(impl=name, **fields))
    for r in measured:
        if r["status"] == "ok":
            r["tflops"] = case.flops / (r["ms"] * 1e-3) / 1e12
            r["pct_peak"] = 100 * r["tflops"] / peak
    return measured


def table_rows(case: Case, measured: list[dict]) -> list[list]:
    """Markdown rows of one case, each with its speed-up over the best SDPA core time."""
    core_times = [
        r["ms"]
        for r in measured
        if r.get("status") == "ok" and r["impl"].startswith("sdpa-") and not r["impl"].endswith("-kernel")
    ]
    best_core = min(core_times) if core_times else None
    rows = []
    for r in measured:
        if r.get("status") != "ok":
            rows.append([case.modality, case.batch, r["dtype"], r["impl"], "unsupported", "-", "-", "-", "-"])
            continue
        r["speedup_vs_best_sdpa_core"] = best_core / r["ms"] if best_core else None
        rows.append(
            [
                case.modality,
                case.batch,
                r["dtype"],
                r["impl"],
                bc.fmt(r["ms"]),
                bc.fmt(r["tflops"], 1),
                bc.fmt(r["pct_peak"], 1),
                f"{r['max_rel_err']:.1e}",
                bc.fmt(r["speedup_vs_best_sdpa_core"], 2),
            ]
        )
    return rows


def sweep_configs(case: Case, sweep, timing: dict) -> tuple[list[dict], list[list]]:
    """The kernel at every tile config of ``sweep``; the records and a row naming the best against the default."""
    import torch

    from bindrt.kernels import attention as A

    default = A.attention_config(case.N, case.hd, case.dtype)
    best, records = None, []
    for bm, bn, w, s in sweep:
        cfg = A.AttentionConfig(bm, bn, w, s)
        try:
            fn = lambda cfg=cfg: A._launch_attention(case.qkv, case.bk, case.bv, case.H, case.causal, cfg)  # noqa: E731
            with torch.no_grad():
                err = float((fn().float() - case.ref).abs().max() / case.ref.abs().max())
                ms = bc.bench(fn, **timing)
        except Exception as exc:
            records.append(
                dict(
                    modality=case.modality,
                    batch=case.batch,
                    dtype=str(case.dtype),
                    impl="sweep",
                    config=cfg.__dict__,
                    status="failed",
                    error=str(exc).splitlines()[0][:200],
                )
            )
            continue
        records.append(
            case.record(
                impl="sweep", config=cfg.__dict__, ms=ms, max_rel_err=err, status="ok", is_default=cfg == default
            )
        )
        if best is None or ms < best[1]:
            best = (cfg, ms)
    if not best:
        return records, []
    row = [
        case.modality,
        case.batch,
        case.dtype_name,
        f"sweep best {best[0].block_m}x{best[0].block_n} w{best[0].num_warps} "
        f"s{best[0].num_stages} (default {default.block_m}x{default.block_n} "
        f"w{default.num_warps} s{default.num_stages})",
        bc.fmt(best[1]),
        bc.fmt(case.flops / (best[1] * 1e-3) / 1e12, 1),
        "-",
        "-",
        "-",
    ]
    return records, [row]


if __name__ == "__main__":
    sys.exit(main())
