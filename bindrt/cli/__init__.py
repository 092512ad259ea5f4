"""The ``bindrt`` command line: one module per command, each with ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from bindrt.errors import BindrtError

#: Modules that define commands; importing them must stay cheap (no torch at import time).
COMMAND_MODULES = (
    "bindrt.cli.demo",
    "bindrt.cli.convert",
    "bindrt.cli.embed",
    "bindrt.cli.info",
    "bindrt.export.cli",
    "bindrt.cli.bench",
    "bindrt.training.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bindrt",
        description="ImageBind-style multimodal encoders: convert, export, build, run, benchmark, serve.",
    )
    parser.add_argument("--version", action="version", version=f"bindrt {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BindrtError as exc:
        print(f"bindrt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bindrt {args.command}: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from bindrt import __version__

    return __version__


def modality_list(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]
