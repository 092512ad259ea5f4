"""bindrt embed: raw files/texts -> embeddings (.npz), with a similarity matrix."""

from __future__ import annotations

import argparse

from bindrt.layouts import INPUT_KINDS

#: The input flags, in the order they are offered (text first: the usual query side).
KINDS = ("text", *(k for k in INPUT_KINDS if k != "text"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="embed files and texts, write .npz, print similarities",
        description="Embed raw inputs with any backend. Writes one array per input kind to an .npz file; "
        "with several kinds, prints their cosine-similarity matrices.",
    )
    p.add_argument("model", help="bundle directory, or a reference checkpoint with --config")
    p.add_argument("--config", help="preset or JSON config when MODEL is a checkpoint file")
    for kind in KINDS:
        what = "texts" if kind == "text" else f"{kind} files"
        p.add_argument(f"--{kind}", nargs="+", metavar="X", help=what)
    p.add_argument(
        "--backend",
        default="torch",
        help="torch | onnxruntime | openvino | triton | auto (default torch; auto: the fastest engine here meeting --tier)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--tier", help="with --backend auto: exact | near-exact (default) | int8")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--out", help="output .npz (default: embeddings.npz)", default="embeddings.npz")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="write unit-norm rows (default: the reference's per-modality scale, e.g. text ~14, audio ~20)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import bindrt
    from bindrt.cli.output import make_console
    from bindrt.errors import InputError
    from bindrt.fileio import atomic_path

    inputs = {k: getattr(args, k) for k in KINDS if getattr(args, k)}
    if not inputs:
        raise InputError("nothing to embed; give at least one of " + ", ".join(f"--{k}" for k in KINDS))
    modalities = sorted({INPUT_KINDS[k] for k in inputs})
    model = bindrt.load(
        args.model,
        args.backend,
        device=args.device,
        precision=args.precision,
        modalities=modalities,
        config=args.config,
        batch_size=args.batch_size,
        tier=args.tier,
    )
    console = make_console()
    if args.backend == "auto":
        from bindrt.runtime.auto import summary

        console.print(summary(model.auto), markup=False, highlight=False, soft_wrap=True)
    with model:
        embeddings = model.embed(normalize=args.normalize, **inputs)
    out = args.out if args.out.endswith(".npz") else args.out + ".npz"
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **embeddings)
    console.print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in embeddings.items()))
    print_similarities(console, inputs, embeddings)
    return 0


def print_similarities(console, inputs: dict, embeddings: dict) -> None:
    from bindrt.cli.output import make_table
    from bindrt.runtime.embedder import similarity

    kinds = list(embeddings)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1 :]:
            sim = similarity(embeddings[a], embeddings[b])
            table = make_table(f"{a} \\ {b}", *[_short(x) for x in inputs[b]], title=f"cosine similarity {a} x {b}")
            for name, row in zip(inputs[a], sim):
                best = row.argmax()
                table.add_row(
                    _short(name), *[f"[bold]{v:+.3f}[/]" if j == best else f"{v:+.3f}" for j, v in enumerate(row)]
                )
            console.print(table)


def _short(x: object, width: int = 24) -> str:
    import os

    s = os.path.basename(str(x)) if isinstance(x, str) and os.sep in x else str(x)
    return s if len(s) <= width else s[: width - 1] + "…"
