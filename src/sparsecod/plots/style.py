"""One look for every figure (issue 7): seaborn "ticks" on matplotlib (Agg), grayscale-safe series.

Series differ by colour (colour-blind palette), marker and line style at once, so a grayscale print still
separates them; the paper's values are drawn as hollow black markers labelled "paper".
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ..fileio import write_bytes_atomic  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
PAPER = {"marker": "o", "facecolors": "none", "edgecolors": "black", "linewidths": 1.2, "zorder": 5}
HEATMAP_CMAP = "vlag"  # diverging, symmetric scales around 0 (or 1 for Jacobians via `center`)
SEQUENTIAL_CMAP = "mako"

sns.set_theme(context="paper", style="ticks", font_scale=1.0,
              rc={"figure.dpi": 100, "savefig.dpi": 150, "axes.grid": True, "grid.alpha": 0.3, "pdf.fonttype": 42})


def series_style(i: int, n: int) -> dict:
    """Colour, marker and line style of the i-th of n ordered series (light → dark for ordered sweeps)."""
    colors = sns.color_palette("viridis", max(n, 2)) if n > 4 else sns.color_palette("colorblind", max(n, 2))
    return {"color": colors[i], "marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)]}


def panels(n: int, ncols: int | None = None, size: tuple[float, float] = (3.6, 2.8), **kw) -> tuple[Figure, list]:
    """A figure with n axes in a grid (ncols defaults to min(n, 4)); returns (fig, flat list of the n axes)."""
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def no_data(ax, what: str) -> None:
    """Mark an axis whose data is missing (a partial results directory still renders)."""
    ax.text(0.5, 0.5, f"no data:\n{what}", ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def save(fig: Figure, out_dir: str | os.PathLike, stem: str, title: str | None = None) -> list[Path]:
    """Write `<out_dir>/<stem>.pdf` and `.png` atomically and close the figure."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    paths = []
    for ext in ("pdf", "png"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, bbox_inches="tight")
        paths.append(write_bytes_atomic(Path(out_dir) / f"{stem}.{ext}", buf.getvalue()))
    plt.close(fig)
    return paths


def legend(ax, loc: str = "best", **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc=loc, fontsize=7, frameon=False, **kw)


def label_axes(axes: Sequence, letters: str = "abcdefghijklmnop") -> None:
    for ax, letter in zip(axes, letters):
        ax.set_title(f"({letter}) {ax.get_title()}".strip(), fontsize=9, loc="left")
