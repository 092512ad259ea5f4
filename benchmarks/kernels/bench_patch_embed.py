#!/usr/bin/env python
"""Benchmark bindrt's fused patch embedding against the torch reference stems.

    python -m benchmarks.kernels.bench_patch_embed OUT [--dtypes fp16,bf16] [--batches 64,256]
                                                       [--modalities vision,audio,depth,thermal,imu]
    python -m benchmarks.kernels.bench_patch_embed OUT --smoke   # tiny shapes, CPU interpreter OK

Writes ``OUT.json`` and ``OUT.md``. Per modality (ImageBind-huge widths: vision
1280, audio 768, depth 384, thermal 768, imu 512) it times, from the raw input
to the ``(B, 1+L, D)`` token sequence the trunk consumes:

* ``bindrt-triton``: the fused kernel (implicit-im2col GEMM + LN + CLS + pos).
* ``torch-ref``: the reference stem in eager torch (vision: image repeated to
  2 frames + Conv3d; audio/depth/thermal: Conv2d; imu: unfold + Linear; then
  LayerNorm where the modality has one, ``torch.cat`` with CLS, ``+ pos``).
* ``torch-ref-sum`` (vision only): the same with the time-summed Conv2d kernel
  (the algebraic trick without the fusion), to separate the two effects.
* ``compile-ref``: ``torch.compile`` of ``torch-ref``.

Median ms (``triton.testing.do_bench``), TFLOP/s of the useful GEMM
(2*B*L*K*D, vision K = 3*14*14), % of an 8192^3 matmul peak measured in this
run, effective GB/s (input + weight + pos + output bytes once) against a
measured device copy bandwidth, and the max error vs an fp32 reference.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.kernels import bench_common as bc

# modality: input shape (without batch), stem weight shape, stride, LN?
STEMS = {
    "vision": dict(x=(3, 224, 224), w=(1280, 3, 2, 14, 14), stride=14, ln=False),
    "audio": dict(x=(1, 128, 204), w=(768, 1, 16, 16), stride=10, ln=True),
    "depth": dict(x=(1, 224, 224), w=(384, 1, 16, 16), stride=16, ln=True),
    "thermal": dict(x=(1, 224, 224), w=(768, 1, 16, 16), stride=16, ln=True),
    "imu": dict(x=(6, 2000), w=(512, 48), stride=8, ln=True),
}
SMOKE_STEMS = {
    "vision": dict(x=(3, 28, 42), w=(64, 3, 2, 14, 14), stride=14, ln=False),
    "audio": dict(x=(1, 36, 46), w=(48, 1, 16, 16), stride=10, ln=True),
    "depth": dict(x=(1, 48, 48), w=(32, 1, 16, 16), stride=16, ln=True),
    "thermal": dict(x=(1, 32, 48), w=(48, 1, 16, 16), stride=16, ln=True),
    "imu": dict(x=(6, 80), w=(32, 48), stride=8, ln=True),
}


def torch_stem(kind, x, w, cls, pos, nw, nb, eps, stride, summed=False):
    """The reference stem in plain torch."""
    import torch
    import torch.nn.functional as F

    B = x.shape[0]
    if kind == "vision":
        if summed:
            y = F.conv2d(x, w.sum(2), stride=stride)
        else:
            y = F.conv3d(x.unsqueeze(2).repeat(1, 1, 2, 1, 1), w, stride=(2, stride, stride))
        y = y.flatten(2).transpose(1, 2)
    elif kind == "imu":
        y = F.linear(x.unfold(-1, stride, stride).permute(0, 2, 1, 3).reshape(B, -1, w.shape[1]), w)
    else:
        y = F.conv2d(x, w, stride=stride).flatten(2).transpose(1, 2)
    if nw is not None:
        y = F.layer_norm(y, (y.shape[-1],), nw, nb, eps)
    return torch.cat([cls.expand(B, -1, -1), y], 1) + pos


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    bc.add_sweep_args(ap, ",".join(STEMS), f"any of {','.join(STEMS)}")
    args = ap.parse_args(argv)

    settings = bc.sweep_settings(args, STEMS, SMOKE_STEMS)
    if settings is None:
        return 2
    env = bc.environment()
    peaks = {str(dt): bc.measure_peak(dt, smoke=args.smoke) for dt in settings.dtypes}
    bandwidth = bc.measure_bandwidth(smoke=args.smoke)
    print(f"environment: {env}\nbandwidth: {bandwidth['gbps']:.0f} GB/s")
    compiled = None if args.no_compile else bc.compile_for_static_shapes(torch_stem, settings.compile_backend)

    results, rows = [], []
    for mod in settings.modalities:
        for dt in settings.dtypes:
            for B in settings.batches:
                case = StemCase(mod, B, dt, settings.table[mod], settings.device)
                measured = time_impls(
                    case, implementations(case, compiled), settings.timing, peaks[str(dt)]["tflops"], bandwidth["gbps"]
                )
                results += measured
                print(
                    f"{mod} B={B} {dt}: "
                    + ", ".join(f"{r['impl']} {r['ms']:.3f} ms" for r in measured if r["status"] == "ok"),
                    flush=True,
                )
                rows.extend(table_rows(case, measured))

    payload = dict(
        environment=env,
        peaks=peaks,
        bandwidth=bandwidth,
        smoke=args.smoke,
        compile_backend=settings.compile_backend,
        results=results,
    )
    notes = [
        "times: median ms (triton.testing.do_bench), raw input -> (B, 1+L, D) tokens",
        "TFLOP/s: useful GEMM FLOPs 2*B*L*K*D (vision K=588, the time-summed kernel); % peak vs an 8192^3 matmul",
        "GB/s: input + weight + pos + output bytes once; % bw vs a measured device copy",
        "err: max |out - ref| / max |ref| vs an fp32 torch reference; speedup: torch-ref time / this time",
    ]
    if args.smoke:
        notes.insert(0, "SMOKE RUN: tiny shapes, timings meaningless (CPU / interpreter)")
    headers = ["modality", "batch", "dtype", "impl", "ms", "TFLOP/s", "% peak", "GB/s", "% bw", "err", "speedup"]
    jp, mp = bc.write_outputs(args.out, payload, rows, headers, "Patch embedding benchmark", notes)
    print(f"wrote {jp} and {mp}")
    bad = [r for r in results if r["impl"] == "bindrt-triton" and (r["status"] != "ok" or r["max_rel_err"] > 2e-2)]
    if bad:
        print(f"bindrt-triton failed or inaccurate in {len(bad)} case(s)", file=sys.stderr)
        return 1
    return 0


class StemCase:
    """One (stem, batch, dtype) case: fresh inputs and parameters, the fp32 reference, useful FLOPs and bytes."""

    def __init__(self, modality: str, batch: int, dtype, st: dict, device) -> None:
        import torch

        self.modality, self.batch, self.dtype = modality, batch, dtype
        D, stride = st["w"][0], st["stride"]
        self.D, self.stride = D, stride
        g = torch.Generator(device="cpu").manual_seed(0)
        self.x = torch.randn(batch, *st["x"], generator=g).to(device, dtype)
        k_full = 1
        for s_ in st["w"][1:]:
            k_full *= s_
        self.w = (torch.randn(*st["w"], generator=g) / k_full**0.5).to(device, dtype)
        if modality == "vision":
            L = (st["x"][1] // stride) * (st["x"][2] // stride)
            K_eff = 3 * 14 * 14
        elif modality == "imu":
            L = st["x"][1] // stride
            K_eff = st["w"][1]
        else:
            kk = st["w"][2]
            L = ((st["x"][1] - kk) // stride + 1) * ((st["x"][2] - kk) // stride + 1)
            K_eff = kk * kk * st["x"][0]
        self.L, self.K = L, K_eff
        self.cls = torch.randn(1, 1, D, generator=g).to(device, dtype)
        self.pos = torch.randn(1, 1 + L, D, generator=g).to(device, dtype)
        self.nw = (1 + 0.1 * torch.randn(D, generator=g)).to(device, dtype) if st["ln"] else None
        self.nb = (0.1 * torch.randn(D, generator=g)).to(device, dtype) if st["ln"] else None
        self.eps = 1e-5
        f32 = lambda t: None if t is None else t.float()  # noqa: E731
        with torch.no_grad():
            self.ref = torch_stem(
                modality,
                f32(self.x),
                f32(self.w),
                f32(self.cls),
                f32(self.pos),
                f32(self.nw),
                f32(self.nb),
                self.eps,
                stride,
            )
        self.flops = 2.0 * batch * L * K_eff * D
        self.nbytes = (self.x.numel() + self.w.numel() + self.pos.numel() + batch * (1 + L) * D) * self.x.element_size()

    @property
    def args(self) -> tuple:
        return (self.x, self.w, self.cls, self.pos, self.nw, self.nb, self.eps, self.stride)


#: bindrt's fused stem kernel per modality, called with the reference stem's arguments.
FUSED = {
    "vision": lambda x, w, c, p, nw, nb, eps, s: _kernels().patch_embed_vision(x, w, c, p, nw, nb, eps),
    "audio": lambda x, w, c, p, nw, nb, eps, s: _kernels().patch_embed_audio(x, w, c, p, nw, nb, eps, stride=s),
    "depth": lambda x, w, c, p, nw, nb, eps, s: _kernels().patch_embed_depth(x, w, c, p, nw, nb, eps),
    "thermal": lambda x, w, c, p, nw, nb, eps, s: _kernels().patch_embed_thermal(x, w, c, p, nw, nb, eps),
    "imu": lambda x, w, c, p, nw, nb, eps, s: _kernels().patch_embed_imu(x, w, c, p, nw, nb, eps, window=s),
}


def _kernels():
    import bindrt.kernels as K

    return K


def implementations(case: StemCase, compiled) -> dict:
    """bindrt's fused stem, the torch reference stem (vision also with its time-summed kernel), compiled torch."""
    mod, args = case.modality, case.args
    impls = {
        "bindrt-triton": lambda: FUSED[mod](*args),
        "torch-ref": lambda: torch_stem(mod, *args),
    }
    if mod == "vision":
        impls["torch-ref-sum"] = lambda: torch_stem(mod, *args, summed=True)
    if compiled is not None:
        impls["compile-ref"] = lambda: compiled(mod, *args)
    return impls


def time_impls(case: StemCase, impls: dict, timing: dict, peak: float, bandwidth: float) -> list[dict]:
    """Median times, TFLOP/s and GB/s against the measured peak and bandwidth, and the error of each implementation."""

    def record(name: str) -> dict:
        return dict(
            modality=case.modality,
            batch=case.batch,
            dtype=str(case.dtype).replace("torch.", ""),
            impl=name,
            tokens=1 + case.L,
            dim=case.D,
            K=case.K,
            flops=case.flops,
            bytes=case.nbytes,
        )

    measured = bc.measure_impls(impls, case.ref, timing, record)
    for r in measured:
        if r["status"] == "ok":
            seconds = r["ms"] * 1e-3
            r["tflops"] = case.flops / seconds / 1e12
            r["pct_peak"] = 100 * r["tflops"] / peak
            r["gbps"] = case.nbytes / seconds / 1e9
            r["pct_bw"] = 100 * r["gbps"] / bandwidth
    return measured


def table_rows(case: StemCase, measured: list[dict]) -> list[list]:
    """Markdown rows of one case, each with its speed-up over the eager torch reference."""
    eager = next((r["ms"] for r in measured if r["impl"] == "torch-ref" and r["status"] == "ok"), None)
    rows = []
    for r in measured:
        if r["status"] != "ok":
            rows.append([case.modality, case.batch, r["dtype"], r["impl"], "unsupported", "-", "-", "-", "-", "-", "-"])
            continue
        r["speedup_vs_torch_ref"] = eager / r["ms"] if eager else None
        rows.append(
            [
                case.modality,
                case.batch,
                r["dtype"],
                r["impl"],
                bc.fmt(r["ms"]),
                bc.fmt(r["tflops"], 1),
                bc.fmt(r["pct_peak"], 1),
                bc.fmt(r["gbps"], 0),
                bc.fmt(r["pct_bw"], 1),
                f"{r['max_rel_err']:.1e}",
                bc.fmt(r["speedup_vs_torch_ref"], 2),
            ]
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
