"""The CPU suite of ``bindrt bench``: imagebind_huge-size towers, every backend and tier that runs on this machine.

Builds (once, cached in ``--workdir``) a bundle of imagebind_huge's depth and audio towers
with random weights, exports it at fp32, fp16, bf16 and int8 (plain and fused graphs), then
runs the product's own command on it, as a user would:

    bindrt bench BUNDLE --backends torch:fp32 torch:bf16 torch.compile:fp32 ... --batch 1,8 --plots --out ...
    bindrt bench BUNDLE --backends torch auto --batch 1,8 --out ...      (what backend='auto' picks)

Whatever cannot run here (TensorRT without a GPU, precisions a backend lacks) is a
``skipped:`` line in the report. ``--quick`` is the CI form: the golden-size bundle, batch 1
and 2, a handful of calls; it checks that every report is complete, not the numbers.

    python -m benchmarks.bench.cpu_suite                     # ~20 min on 2 cores
    python -m benchmarks.bench.cpu_suite --quick --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import results_dir

ROOT = Path(__file__).resolve().parents[2]
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: Every backend and tier a CPU user could pick (torch fp16 is left out: CPUs without AVX512-FP16 emulate
#: it, minutes per audio batch; triton once, to show its fallback to plain torch without a GPU).
TARGETS = (
    "torch:fp32", "torch:bf16", "torch.compile:fp32", "torch.compile:bf16", "triton:fp32",
    "onnxruntime:fp32", "onnxruntime:fp16", "onnxruntime:int8",
    "openvino:fp32", "openvino:bf16", "openvino:fp16", "openvino:int8",
    "tensorrt:fp16",
)  # fmt: skip
SEED = 0


def build_bundle(out: Path, preset: str, modalities: list[str], export: bool = True) -> Path:
    """A bundle of ``preset``'s ``modalities`` with seeded random weights, exported at every precision
    (``export=False``: weights only, for the torch-based backends)."""
    import torch

    from bindrt.bundle import write_bundle
    from bindrt.config import PRESETS
    from bindrt.export import export_bundle
    from bindrt.model import build_encoder
    from bindrt.model.checkpoint import to_reference_key

    marker = out / "exported.json"
    wanted = {
        "preset": preset,
        "modalities": modalities,
        "precisions": list(PRECISIONS) if export else [],
        "seed": SEED,
    }
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return out
    torch.manual_seed(SEED)
    config = PRESETS[preset]
    weights = {}
    for m in modalities:
        encoder = build_encoder(m, config)
        weights[m] = {to_reference_key(m, k): v for k, v in encoder.state_dict().items()}
    write_bundle(out, config, weights, stage="bench", overwrite=True)
    if export:
        export_bundle(out, precisions=PRECISIONS, fused=True)
    marker.write_text(json.dumps(wanted))
    return out


def bench(bundle: Path, out: Path, name: str, backends: list[str], extra: list[str]) -> None:
    cmd = [sys.executable, "-m", "bindrt", "bench", str(bundle), "--backends", *backends]
    cmd += ["--out", str(out), "--name", name, "--plots", *extra]
    print("$", " ".join(cmd[2:]), flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    print(f"  {name}: exit {proc.returncode} in {time.time() - start:.0f} s", flush=True)
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI form: golden-size towers, batch 1,2, few calls")
    ap.add_argument("--workdir", default="/tmp/bindrt-cpu-suite", help="where the exported bundle is kept")
    ap.add_argument("--bundle", help="an already exported bundle to run on instead (at every precision)")
    ap.add_argument("--out", help="results folder (default benchmarks/results/<date>-<cpu>/bench)")
    ap.add_argument("--modalities", default="depth,audio")
    ap.add_argument("--batch", default=None, help="default 1,8 (quick: 1,2)")
    ap.add_argument("--duration", default="3", help="seconds of timed calls per combination")
    ap.add_argument("--threads", default=None, help="threads per engine (default: each library's own)")
    args = ap.parse_args(argv)
    modalities = args.modalities.split(",")
    preset = "golden" if args.quick else "imagebind_huge"
    workdir = Path(args.workdir)
    bundle = (
        Path(args.bundle)
        if args.bundle
        else build_bundle(workdir / f"{preset}-{'-'.join(modalities)}", preset, modalities)
    )
    out = Path(args.out) if args.out else results_dir("bench")
    out.mkdir(parents=True, exist_ok=True)
    timing = ["--iters", "4", "--rounds", "2", "--warmup", "1"] if args.quick else ["--duration", args.duration]
    timing += ["--rounds", "3", "--warmup", "1"] if not args.quick else []
    timing += ["--batch", args.batch or ("1,2" if args.quick else "1,8"), "--modalities", *modalities]
    timing += ["--threads", args.threads] if args.threads else []
    bench(bundle, out, "cpu-suite", list(TARGETS), timing)
    bench(bundle, out, "cpu-auto", ["torch", "auto"], ["--no-preprocess", *timing])
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
