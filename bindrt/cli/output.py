"""Console output for the commands: rich on a terminal, full values everywhere else.

Rich sizes tables to the terminal and cuts cells (``toleran…``) when it has none (logs,
CI, pipes): there bindrt gives it a wide virtual width and folds long cells instead,
so what is printed is always the whole value.
"""

from __future__ import annotations

import sys
from typing import Any, Mapping

#: Width rich lays out to when stdout/stderr is not a terminal.
PIPE_WIDTH = 200


def make_console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPE_WIDTH)


def make_table(*columns: str, title: str | None = None) -> Any:
    """A table whose cells wrap (fold) rather than end in an ellipsis."""
    from rich.table import Column, Table

    return Table(*(Column(c, overflow="fold") for c in columns), title=title)


def graphs_table(records: Mapping[str, Mapping[str, Any]], title: str) -> Any:
    """One row per exported graph: precision, variant, opset and its validation against torch fp32."""
    table = make_table(
        "graph",
        "precision",
        "variant",
        "opset",
        "passed",
        "max rel diff",
        "min cosine",
        "top-1",
        "tolerance",
        title=title,
    )
    for key, rec in records.items():
        v = rec.get("validation") or {}
        worst, tol = v.get("worst", {}), v.get("tolerance", {})
        table.add_row(
            key,
            str(rec.get("precision", "-")),
            str(rec.get("variant", "-")),
            str(rec.get("opset", "-")),
            "[green]yes[/]" if v.get("passed") else "[red]NO[/]" if v else "-",
            f"{worst['max_rel_diff']:.2e}" if "max_rel_diff" in worst else "-",
            f"{worst['min_cosine']:.6f}" if "min_cosine" in worst else "-",
            f"{worst['top1_agreement']:.2f}" if "top1_agreement" in worst else "-",
            (("rel<=" if tol.get("sense") == "max" else "cos>=") + f"{tol.get('bound'):g}") if tol else "-",
        )
    return table
