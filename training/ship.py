"""Ship a trained tiny bundle as package data: fp16 weights, checked to keep the evaluation figures.

The shipped model (``bindrt.data.tiny_bundle()``) is what ``bindrt demo``, ``bindrt search`` and
``bindrt classify`` answer with out of the box. Regenerate it with::

    bindrt train --preset tiny --out /tmp/tiny-run            # seed 0, the preset's full schedule
    python -m bindrt.training.ship /tmp/tiny-run/bundle        # -> bindrt/data/tiny/

Training is not bit-reproducible across machines (thread counts and CPU kernels change float
sums), so the check is the evaluation: the fp16 weights are re-evaluated on the held-out world
seed and every figure must stay within ``TOLERANCE`` of the fp32 run's (the record lands in
``bindrt/data/tiny/eval/``). fp16 halves the package (the text tower's 49,408 x 64 token table
is most of it) and the torch backend computes in fp32 from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: Largest drop of any zero-shot or recall figure from fp32 to the shipped fp16 weights.
TOLERANCE = 0.02
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "bindrt" / "data" / "tiny"


def figures(report: dict[str, Any]) -> dict[str, float]:
    """The comparable numbers of an evaluation report: zero-shot top-1 and retrieval recalls."""
    out = {f"zero_shot/{m}": v for m, v in report.get("zero_shot_top1", {}).items()}
    for pair, rec in report.get("retrieval", {}).items():
        if isinstance(rec, dict) and "R@5" in rec and "->" in pair:
            out.update({f"{pair}/{k}": v for k, v in rec.items()})
    return out


def ship(bundle: "str | Path", out: "str | Path" = DEFAULT_OUT, eval_samples: int = 500) -> dict[str, Any]:
    import torch

    from bindrt.bundle import Bundle, write_bundle
    from bindrt.runtime.torch_backend import load_encoders

    from .evaluate import evaluate_world

    src = Bundle.open(bundle)
    trained = json.loads((src.path / "eval" / "report.json").read_text())
    seed = trained["world"]["seed"]
    weights = {m: {k: v.to(torch.float16) for k, v in src.load_weights(m).items()} for m in src.modalities}
    write_bundle(
        out,
        src.config,
        weights,
        stage="ship",
        source=f"bindrt.training.ship from {src.path} (fp16 weights)",
        extra_files={"eval/trained-fp32-report.json": (json.dumps(trained, indent=1) + "\n").encode()},
        overwrite=True,
    )
    from bindrt.runtime.base import ModelSource

    shipped = Bundle.open(out)
    encoders = load_encoders(ModelSource(config=shipped.config, bundle=shipped), shipped.modalities)
    report = evaluate_world(encoders, seed=seed, samples=eval_samples)
    before, after = figures(trained), figures(report)
    drops = {k: before[k] - after.get(k, 0.0) for k in before}
    worst = max(drops, key=drops.get)
    record = {
        "held_out_seed": seed,
        "fp32": before,
        "fp16_shipped": after,
        "largest_drop": {"figure": worst, "drop": drops[worst]},
        "tolerance": TOLERANCE,
        "passed": drops[worst] <= TOLERANCE,
    }
    (Path(out) / "eval").mkdir(exist_ok=True)
    (Path(out) / "eval" / "shipped-fp16-check.json").write_text(json.dumps(record, indent=1) + "\n")
    if not record["passed"]:
        raise SystemExit(f"fp16 weights lose {drops[worst]:.3f} on {worst} (> {TOLERANCE}); not shipping")
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="the bundle of a `bindrt train --preset tiny` run")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    record = ship(args.bundle, args.out)
    print(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
