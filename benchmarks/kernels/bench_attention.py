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
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from bindrt.kernels import attention as A

    dev, dtypes, batches, mods = settings.device, settings.dtypes, settings.batches, settings.modalities
    table, compile_backend, timing = settings.table, settings.compile_backend, settings.timing

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        backends["cudnn"] = SDPBackend.CUDNN_ATTENTION

    env = bc.environment()
    peaks = {str(dt): bc.measure_peak(dt, smoke=args.smoke) for dt in dtypes}
    print(f"environment: {env}")
    for k, v in peaks.items():
        print(f"peak {k}: {v['tflops']:.1f} TFLOP/s (matmul {v['n']}^3)")

    compiled_math = None
    if not args.no_compile:
        # one static-shape graph per (shape, dtype): lift dynamo's recompile limit so
        # later cases are not silently run eagerly
        import torch._dynamo

        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob, 1024)
        compiled_math = torch.compile(math_core, backend=compile_backend, dynamic=False)

    results, rows = [], []
    for mod in mods:
        shp = table[mod]
        N, H, hd, bias_kv, causal = shp["N"], shp["H"], shp["hd"], shp["bias_kv"], shp["causal"]
        D = H * hd
        for dt in dtypes:
            peak = peaks[str(dt)]["tflops"]
            for B in batches:
                g = torch.Generator(device="cpu").manual_seed(0)
                qkv = torch.randn(B, N, 3 * D, generator=g).to(dev, dt)
                bk = torch.randn(1, 1, D, generator=g).to(dev, dt) if bias_kv else None
                bv = torch.randn(1, 1, D, generator=g).to(dev, dt) if bias_kv else None
                with torch.no_grad():
                    ref = math_core(
                        qkv.float(), None if bk is None else bk.float(), None if bv is None else bv.float(), H, causal
                    )
                fl = flops(B, N, H, hd, bias_kv, causal)

                impls = {"bindrt-triton": lambda: A.fused_attention(qkv, bk, bv, H, causal)}
                # pre-laid-out tensors for the kernel-only SDPA timings
                q, k, v = qkv.split(D, -1)
                if bias_kv:
                    k = torch.cat([k, bk.expand(B, 1, D)], 1)
                    v = torch.cat([v, bv.expand(B, 1, D)], 1)
                ql = q.reshape(B, N, H, hd).transpose(1, 2).contiguous()
                kl = k.reshape(B, -1, H, hd).transpose(1, 2).contiguous()
                vl = v.reshape(B, -1, H, hd).transpose(1, 2).contiguous()
                for bname, bend in backends.items():

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

                for name, fn in impls.items():
                    rec = dict(
                        modality=mod,
                        batch=B,
                        dtype=str(dt).replace("torch.", ""),
                        impl=name,
                        N=N,
                        heads=H,
                        head_dim=hd,
                        bias_kv=bias_kv,
                        causal=causal,
                        flops=fl,
                    )
                    try:
                        with torch.no_grad():
                            out = fn()
                            err = float((out.float() - ref).abs().max() / ref.abs().max())
                            ms = bc.bench(fn, **timing)
                    except Exception as exc:  # backend rejects the case, OOM, compile failure...
                        rec.update(
                            status="unsupported", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        )
                        results.append(rec)
                        continue
                    tflops = fl / (ms * 1e-3) / 1e12
                    rec.update(status="ok", ms=ms, tflops=tflops, pct_peak=100 * tflops / peak, max_rel_err=err)
                    results.append(rec)
                case = results[-len(impls) :]
                print(
                    f"{mod} B={B} {dt}: "
                    + ", ".join(f"{r['impl']} {r['ms']:.3f} ms" for r in case if r.get("status") == "ok"),
                    flush=True,
                )
                # best SDPA core time for the speedup column
                core_times = [
                    r["ms"]
                    for r in case
                    if r.get("status") == "ok" and r["impl"].startswith("sdpa-") and not r["impl"].endswith("-kernel")
                ]
                best_core = min(core_times) if core_times else None
                for r in case:
                    if r.get("status") != "ok":
                        rows.append([mod, B, r["dtype"], r["impl"], "unsupported", "-", "-", "-", "-"])
                        continue
                    r["speedup_vs_best_sdpa_core"] = best_core / r["ms"] if best_core else None
                    rows.append(
                        [
                            mod,
                            B,
                            r["dtype"],
                            r["impl"],
                            bc.fmt(r["ms"]),
                            bc.fmt(r["tflops"], 1),
                            bc.fmt(r["pct_peak"], 1),
                            f"{r['max_rel_err']:.1e}",
                            bc.fmt(r["speedup_vs_best_sdpa_core"], 2),
                        ]
                    )

                if args.sweep:
                    default = A.attention_config(N, hd, dt)
                    best = None
                    sweep = SWEEP if not args.smoke else SWEEP[:2]
                    for bm, bn, w, s in sweep:
                        cfg = A.AttentionConfig(bm, bn, w, s)
                        try:
                            fn = lambda cfg=cfg: A._launch_attention(qkv, bk, bv, H, causal, cfg)  # noqa: E731
                            with torch.no_grad():
                                err = float((fn().float() - ref).abs().max() / ref.abs().max())
                                ms = bc.bench(fn, **timing)
                        except Exception as exc:
                            results.append(
                                dict(
                                    modality=mod,
                                    batch=B,
                                    dtype=str(dt),
                                    impl="sweep",
                                    config=cfg.__dict__,
                                    status="failed",
                                    error=str(exc).splitlines()[0][:200],
                                )
                            )
                            continue
                        results.append(
                            dict(
                                modality=mod,
                                batch=B,
                                dtype=str(dt).replace("torch.", ""),
                                impl="sweep",
                                config=cfg.__dict__,
                                ms=ms,
                                max_rel_err=err,
                                status="ok",
                                is_default=cfg == default,
                            )
                        )
                        if best is None or ms < best[1]:
                            best = (cfg, ms)
                    if best:
                        rows.append(
                            [
                                mod,
                                B,
                                str(dt).replace("torch.", ""),
                                f"sweep best {best[0].block_m}x{best[0].block_n} w{best[0].num_warps} "
                                f"s{best[0].num_stages} (default {default.block_m}x{default.block_n} "
                                f"w{default.num_warps} s{default.num_stages})",
                                bc.fmt(best[1]),
                                bc.fmt(fl / (best[1] * 1e-3) / 1e12, 1),
                                "-",
                                "-",
                                "-",
                            ]
                        )

    payload = dict(environment=env, peaks=peaks, smoke=args.smoke, compile_backend=compile_backend, results=results)
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


if __name__ == "__main__":
    sys.exit(main())
