"""PNG plots of a report: latency and throughput against batch size, one line per target, one figure per input kind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bindrt.errors import ConfigError
from bindrt.fileio import atomic_write_bytes


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or a ConfigError saying how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plots needs matplotlib; install it with `pip install bindrt[plots]`") from None
    return plt


def plot_report(report: dict[str, Any], out_dir: "str | os.PathLike[str]", stem: str) -> list[Path]:
    """``<stem>-<kind>.png`` for every input kind with rows; needs matplotlib (``pip install bindrt[plots]``)."""
    import io

    plt = pyplot()
    from matplotlib import ticker

    paths = []
    for kind in dict.fromkeys(r["kind"] for r in report["rows"]):
        fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4.2))
        for target in dict.fromkeys(r["target"] for r in report["rows"] if r["kind"] == kind):
            rows = sorted(
                (r for r in report["rows"] if r["kind"] == kind and r["target"] == target), key=lambda r: r["batch"]
            )
            batches = [r["batch"] for r in rows]
            (line,) = lat.plot(batches, [r["p50_ms"] for r in rows], marker="o", label=target)
            lat.fill_between(
                batches, [r["p50_ms"] for r in rows], [r["p90_ms"] for r in rows], color=line.get_color(), alpha=0.15
            )
            thr.plot(batches, [r["items_per_s"] for r in rows], marker="o", label=target)
        for ax, title, unit in ((lat, "latency (p50, band to p90)", "ms"), (thr, "throughput", "items/s")):
            ax.set_xscale("log", base=2)
            ax.set_xticks(sorted({r["batch"] for r in report["rows"] if r["kind"] == kind}))
            ax.xaxis.set_major_formatter(ticker.ScalarFormatter())
            ax.set_yscale("log")
            ax.set_xlabel("batch")
            ax.set_ylabel(unit)
            ax.set_title(f"{kind}: {title}")
            ax.grid(True, which="both", alpha=0.3)
        thr.legend(fontsize=8)
        machine = report["machine"]
        fig.suptitle(
            f"{Path(report['bundle']).name} on {machine.get('gpu') or machine['cpu']} ({machine['date'][:10]})",
            fontsize=9,
        )
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        path = Path(out_dir) / f"{stem}-{kind}.png"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths
