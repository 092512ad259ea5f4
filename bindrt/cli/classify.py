"""bindrt classify: zero-shot (and with --examples, few-shot) classification of media files into labels."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "classify",
        help="zero-/few-shot classification of files into text labels",
        description="Each label's prototype is the mean unit text embedding of every --templates prompt filled with "
        "it; with --examples DIR (one subfolder per label) it is blended with the mean embedding of the examples. "
        "Prints a table and writes JSON (--out).",
    )
    p.add_argument("bundle")
    p.add_argument("files", nargs="+")
    p.add_argument("--labels", required=True, help="comma-separated labels, e.g. dog,car,bird")
    p.add_argument("--templates", nargs="+", help="prompt templates with {} for the label (default: a small ensemble)")
    p.add_argument("--examples", help="folder with one subfolder of example files per label (few-shot)")
    p.add_argument("--text-weight", type=float, default=0.5, help="with --examples: weight of the text prototype")
    p.add_argument("--modality", help="treat every file as this input kind")
    p.add_argument("--backend", default="torch")
    p.add_argument("--out", help="write the result as JSON here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    import bindrt
    from bindrt.classification import DEFAULT_TEMPLATES, classify
    from bindrt.cli.output import make_console, make_table
    from bindrt.fileio import atomic_write_bytes

    labels = [lab.strip() for lab in args.labels.split(",")]
    with bindrt.load(args.bundle, args.backend) as model:
        result = classify(
            model,
            args.files,
            labels,
            templates=args.templates or DEFAULT_TEMPLATES,
            examples=args.examples,
            text_weight=args.text_weight,
            modality=args.modality,
        )
    payload = result.to_dict()
    if args.out:
        atomic_write_bytes(args.out, (json.dumps(payload, indent=1) + "\n").encode())
    if args.json:
        print(json.dumps(payload, indent=1))
        return 0
    table = make_table("file", "kind", "label", "probability", *labels)
    for item in payload["items"]:
        table.add_row(
            item["file"],
            item["kind"],
            item["label"],
            f"{item['probability']:.3f}",
            *(f"{item['scores'][lab]:.4f}" for lab in labels),
        )
    make_console().print(table)
    return 0
