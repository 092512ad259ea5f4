"""The ``bindrt`` command line: one module per command, each with ``register(subparsers)``.

Every foreseeable failure (bindrt's own errors, OS errors such as a read-only
``--out``, running out of memory, bad arguments) ends as one line on stderr and
exit status 2; ``--debug`` (or ``BINDRT_DEBUG=1``) shows the traceback instead.
Anything else is a bug in bindrt: one line naming it, exit status 70.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import NoReturn, Sequence

from bindrt.errors import BindrtError

#: Modules that define commands; importing them must stay cheap (no torch at import time).
COMMAND_MODULES = (
    "bindrt.cli.demo",
    "bindrt.cli.convert",
    "bindrt.cli.embed",
    "bindrt.cli.info",
    "bindrt.export.cli",
    "bindrt.cli.bench",
    "bindrt.cli.build",
    "bindrt.cli.serve",
    "bindrt.cli.triton_repo",
    "bindrt.cli.index",
    "bindrt.cli.search",
    "bindrt.cli.classify",
    "bindrt.training.cli",
)

#: Exit status of a rejected input or a failure of the environment (what argparse uses too).
EXIT_ERROR = 2
#: Exit status of an unexpected exception, i.e. a bug in bindrt (sysexits' EX_SOFTWARE).
EXIT_BUG = 70
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what shells report for a writer whose reader closed the pipe


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``bindrt CMD: error: ...``) instead of the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="bindrt",
        description="ImageBind-style multimodal encoders: convert, train, export, validate, embed, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"bindrt {_version()}")
    parser.add_argument(
        "--debug", action="store_true", default=False, help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in sub.choices.values():  # `bindrt CMD ... --debug` as well as `bindrt --debug CMD`
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks instead of one-line errors"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = bool(args.debug) or os.environ.get("BINDRT_DEBUG", "") not in ("", "0")
    prefix = f"bindrt {args.command}"
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = lambda message, category, *_a, **_k: print(
                f"{prefix}: warning: {message}", file=sys.stderr
            )
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{prefix}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader went away (`bindrt info --json | head`): not an error to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except SystemExit:
            raise
        except BaseException as exc:
            if debug:
                raise
            status, message = describe_failure(exc)
            print(f"{prefix}: error: {message}", file=sys.stderr)
            return status


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an exception that reached the command line."""
    if isinstance(exc, BindrtError):
        return EXIT_ERROR, one_line(str(exc))
    if isinstance(exc, OSError):
        where = " -> ".join(repr(os.fsdecode(f)) for f in (exc.filename, exc.filename2) if f is not None)
        reason = exc.strerror or str(exc) or type(exc).__name__
        return EXIT_ERROR, one_line(
            f"{reason}: {where}" if where else reason
        ) + " (expected a path bindrt can read or write)"
    if isinstance(exc, MemoryError):
        return EXIT_ERROR, (
            "out of memory (smaller inputs, a smaller --batch-size, or fewer modalities need less; "
            "rerun with --debug for the traceback)"
        )
    return EXIT_BUG, (
        f"internal error {type(exc).__name__}: {one_line(str(exc))} -- this is a bug in bindrt; "
        "rerun with --debug and report the traceback"
    )


def one_line(text: str, limit: int = 600) -> str:
    """First line of a message, clipped: errors from libraries can span pages."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _version() -> str:
    from bindrt import __version__

    return __version__


def modality_list(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]
