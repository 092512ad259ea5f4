#!/usr/bin/env python
"""Compile bindrt's Triton kernels for a CUDA architecture on a machine without a GPU.

Triton wheels ship ``ptxas``/``cuobjdump``, so the full Triton -> TTGIR -> PTX ->
cubin pipeline runs on any host. This script drives each public kernel wrapper
with *meta* tensors at the ImageBind-huge shapes, intercepts the kernel launch,
binds the arguments exactly as ``JITFunction.run`` would (same specialisation,
same constexprs, same num_warps/num_stages) and compiles for ``sm_<arch>``. It
reports registers per thread, spilled local memory and shared memory per CTA,
and fails (exit 1) on a compile error, a spill or shared memory above the
architecture's limit. Exit 3: cannot run here (interpreter on, no nvidia
backend/ptxas).

    python benchmarks/kernels/compile_check.py [--arch 90] [--quick] [--json out.json]

It says nothing about speed; it proves the kernels *build* for the GPU and fit
its resources, which the CPU interpreter cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

#: max dynamic shared memory per block (bytes) by SM major.minor
SMEM_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448, 100: 232448, 120: 101376}


def _fail_unavailable(msg: str):
    print(f"compile check unavailable: {msg}")
    sys.exit(3)


class _Capture:
    """Stands in for a JITFunction in its module; records ``kernel[grid](*args, **kwargs)``."""

    def __init__(self, fn, sink):
        self.fn, self.sink = fn, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.sink.append((self.fn, grid, args, kwargs))

        return launch


@contextmanager
def _capturing(module, names, sink):
    saved = {n: getattr(module, n) for n in names}
    try:
        for n, fn in saved.items():
            setattr(module, n, _Capture(fn, sink))
        yield
    finally:
        for n, fn in saved.items():
            setattr(module, n, fn)


def _compile(fn, args, kwargs, arch: int):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import make_backend
    from triton.runtime.jit import create_function_from_signature

    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    kwargs = dict(kwargs)
    kwargs.setdefault("debug", False)
    bound_args, specialization, options = binder(*args, **kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound_args, specialization, options)
    src = triton.compiler.ASTSource(fn, signature, constexprs, attrs)
    t0 = time.time()
    compiled = triton.compile(src, target=target, options=options.__dict__)
    seconds = time.time() - t0
    res = _resource_usage(compiled.asm["cubin"])
    res["dyn_shared"] = int(compiled.metadata.shared)
    res["compile_s"] = round(seconds, 2)
    res["num_warps"] = options.num_warps
    res["num_stages"] = options.num_stages
    return res


def _resource_usage(cubin: bytes) -> dict:
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
        path = f.name
    try:
        out = subprocess.run([tool, "-res-usage", path], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(path)
    info = {}
    for tok in out.replace(",", " ").split():
        if ":" in tok:
            k, _, v = tok.partition(":")
            if k in ("REG", "SHARED", "LOCAL", "STACK") and v.isdigit():
                info[k.lower()] = int(v)
    return info


def _cases(quick: bool):
    """(label, thunk) pairs; each thunk calls a launcher with meta tensors."""
    import torch

    from bindrt.kernels import attention as A
    from bindrt.kernels import gelu as G
    from bindrt.kernels import layernorm as LN
    from bindrt.kernels import patch_embed as P

    meta = dict(device="meta")
    dtypes = [torch.float16, torch.bfloat16, torch.float32]
    name = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}
    cases = []

    # attention: ImageBind-huge encoders (+ extra head dims exercising 1..4 parts)
    attn = [
        ("vision", 64, 257, 16, 80, False, False),
        ("text", 64, 77, 16, 64, False, True),
        ("audio", 64, 229, 12, 64, True, False),
        ("depth", 64, 197, 8, 48, True, False),
        ("imu", 64, 251, 8, 64, True, False),
    ]
    if not quick:
        attn += [
            ("hd112", 8, 257, 4, 112, True, False),
            ("hd128", 8, 257, 4, 128, False, True),
            ("hd240", 8, 197, 2, 240, True, False),
            ("hd256", 8, 197, 2, 256, False, False),
            ("hd12", 8, 197, 4, 12, True, False),
        ]
    for dt in dtypes if not quick else [torch.float16, torch.float32]:
        for label, B, N, H, hd, bias, causal in attn:
            if quick and (label not in ("vision", "audio") or (dt == torch.float32 and label != "vision")):
                continue
            D = H * hd

            def run(B=B, N=N, H=H, D=D, bias=bias, causal=causal, dt=dt):
                qkv = torch.empty(B, N, 3 * D, dtype=dt, **meta)
                bk = torch.empty(1, 1, D, dtype=dt, **meta) if bias else None
                A._launch_attention(qkv, bk, bk, H, causal)

            cases.append((A, ["_attn_fwd_kernel"], f"attention {label} B{B} N{N} {H}x{hd} {name[dt]}", run))

    # patch embed stems: (label, x5 shape, w5 shape, stride, D, LN)
    stems = [
        ("vision-image", (64, 3, 1, 224, 224), (1280, 3, 1, 14, 14), [1, 14, 14], False),
        ("vision-clip", (64, 3, 2, 224, 224), (1280, 3, 2, 14, 14), [2, 14, 14], False),
        ("audio", (64, 1, 1, 128, 204), (768, 1, 1, 16, 16), [1, 10, 10], True),
        ("depth", (64, 1, 1, 224, 224), (384, 1, 1, 16, 16), [1, 16, 16], True),
        ("imu", (64, 6, 1, 1, 2000), (512, 6, 1, 1, 8), [1, 1, 8], True),
    ]
    for dt in dtypes if not quick else [torch.float16, torch.float32]:
        for label, xs, ws, stride, ln in stems:
            if quick and (label not in ("vision-image", "audio") or (dt == torch.float32 and label != "audio")):
                continue

            def run(xs=xs, ws=ws, stride=stride, ln=ln, dt=dt):
                D = ws[0]
                L = 1
                for size, k, s in zip(xs[2:], ws[2:], stride):
                    L *= (size - k) // s + 1
                x = torch.empty(*xs, dtype=dt, **meta)
                w = torch.empty(*ws, dtype=dt, **meta)
                cls = torch.empty(1, 1, D, dtype=dt, **meta)
                pos = torch.empty(1, 1 + L, D, dtype=dt, **meta)
                nw = torch.empty(D, dtype=dt, **meta) if ln else None
                P._launch_patch_embed(x, w, cls, pos, nw, nw, 1e-5, stride)

            cases.append((P, ["_patch_embed_kernel"], f"patch_embed {label} {name[dt]}", run))

    for dt in dtypes if not quick else [torch.float16]:
        for D in [384, 768, 1280] if not quick else [1280]:

            def run(D=D, dt=dt):
                x = torch.empty(64 * 257, D, dtype=dt, **meta)
                w = torch.empty(D, dtype=dt, **meta)
                LN._launch_layer_norm(x, w, w, 1e-6, x)

            cases.append((LN, ["_layer_norm_kernel"], f"add_layer_norm D{D} {name[dt]}", run))

        def run_gelu(dt=dt):
            x = torch.empty(64 * 257, 5120, dtype=dt, **meta)
            G._launch_bias_gelu(x, torch.empty(5120, dtype=dt, **meta))

        cases.append((G, ["_bias_gelu_kernel"], f"bias_gelu 5120 {name[dt]}", run_gelu))
    return cases


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="SM version, e.g. 80, 90 (default 90)")
    ap.add_argument("--quick", action="store_true", help="a representative handful (used by the tests)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        _fail_unavailable("TRITON_INTERPRET=1 is set (kernels are interpreted functions); unset it")
    try:
        import triton  # noqa: F401
        import triton.backends.nvidia  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.compiler import make_backend  # noqa: F401
    except Exception as exc:  # pragma: no cover
        _fail_unavailable(f"triton with the nvidia backend is not importable: {exc}")
    tool_dir = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.exists(os.path.join(tool_dir, "cuobjdump")):
        _fail_unavailable(f"no cuobjdump in {tool_dir}")

    limit = SMEM_LIMIT.get(args.arch, 101376)
    results, failures = [], []
    for module, names, label, thunk in _cases(args.quick):
        sink: list = []
        with _capturing(module, names, sink):
            thunk()
        for fn, grid, kargs, kkwargs in sink:
            try:
                res = _compile(fn, kargs, kkwargs, args.arch)
            except Exception as exc:  # compile error: report and continue
                failures.append(f"{label}: {type(exc).__name__}: {str(exc)[-1500:]}")
                print(f"FAIL  {label}: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
                continue
            res.update(label=label, kernel=fn.__name__, grid=list(grid))
            shared = res.get("dyn_shared", 0) + res.get("shared", 0)
            problems = []
            # LOCAL is spilled registers; a small STACK frame without LOCAL is not a spill (reported only)
            if res.get("local", 0):
                problems.append(f"spills ({res['local']} B local, {res.get('stack', 0)} B stack)")
            if shared > limit:
                problems.append(f"shared {shared} B > {limit} B")
            status = "ok" if not problems else "FAIL " + ", ".join(problems)
            if problems:
                failures.append(f"{label}: {', '.join(problems)}")
            res["status"] = status
            results.append(res)
            print(
                f"{status:4s}  {label:45s} regs {res.get('reg', '?'):>3}  stack {res.get('stack', 0):>3} B  smem {shared:>6} B  "
                f"warps {res['num_warps']} stages {res['num_stages']}  ({res['compile_s']} s)",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"arch": args.arch, "results": results, "failures": failures}, f, indent=1)
    print(f"{len(results)} kernels compiled for sm_{args.arch}, {len(failures)} failure(s)")
    for f in failures:
        print("  -", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
