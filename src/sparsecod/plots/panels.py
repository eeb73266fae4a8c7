"""Plot primitives shared by the figures (issue 7): variance curves, sweep lines, score bars, heatmaps.

Each draws on a given matplotlib axis from `Results` data; figures.py composes them per paper figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import matplotlib
import seaborn as sns
from matplotlib import colors as mcolors
from matplotlib import cm

from ..metrics.variance_curve import last_layer_curve
from .data import Results
from .style import HEATMAP_CMAP, PAPER, SEQUENTIAL_CMAP, legend, no_data, series_style


def variance_curves(ax, res: Results, runs: pd.DataFrame, *, column: str = "out_var", align: int | None = None,
                    log: bool = False, ylabel: str = "Variance @ last layer") -> None:
    """M1: the last block's output variance vs step, one line per run; `align` cuts every run at that step. A run
    with replicate seeds is drawn as the mean over its seeds with seaborn's ± sd band (errorbar="sd")."""
    drawn = 0
    for i, run in enumerate(runs.itertuples()):
        curves = []
        for rep in res.replicas(run.run_id):
            log_df = res.variance(rep)
            if log_df is not None and not log_df.empty:
                curve = last_layer_curve(log_df, column)
                curves.append(curve[curve["step"] <= align] if align is not None else curve)
        if not curves:
            continue
        st = series_style(i, len(runs))
        if len(curves) == 1:
            ax.plot(curves[0]["step"], curves[0]["value"], color=st["color"], linestyle=st["linestyle"], lw=1.3,
                    label=run.label)
        else:
            sns.lineplot(data=pd.concat(curves, ignore_index=True), x="step", y="value", errorbar="sd",
                         estimator="mean", color=st["color"], linestyle=st["linestyle"], lw=1.3,
                         label=f"{run.label} ({len(curves)} seeds)", ax=ax)
        drawn += 1
    if not drawn:
        no_data(ax, "variance logs")
        return
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    legend(ax)


def paper_anchors(ax, anchors: pd.DataFrame, figure: str, runs: pd.DataFrame, log: bool = False) -> None:
    """Digitized paper variance anchors of `figure` (peak and end per run) as hollow markers over run labels."""
    part = anchors[anchors["figure"].astype(str) == figure]
    names = {r.run_id.lower(): r.label for r in runs.itertuples()}
    labels = [names.get(str(r).lower(), str(r)) for r in part["run"]]
    if part.empty:
        no_data(ax, f"paper anchors for Fig {figure}")
        return
    order = list(dict.fromkeys(labels))
    for quantity, marker in (("peak", "o"), ("end", "s"), ("at", "D")):
        sel = (part["quantity"] == quantity).to_numpy()
        if sel.any():
            x = [order.index(lab) for lab, s in zip(labels, sel) if s]
            ax.scatter(x, part.loc[sel, "value"].astype(float), **{**PAPER, "marker": marker}, label=f"paper {quantity}")
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right")
    if log:
        ax.set_yscale("log")
    ax.set_title("paper (digitized)", fontsize=9)
    legend(ax)


def layer_curves(ax, log_df: pd.DataFrame | None, column: str, *, log: bool = False, title: str = "",
                 ylabel: str = "variance") -> None:
    """Every layer's `column` vs step, colour = layer index (sequential map with a colour bar)."""
    ax.set_title(title, fontsize=9)
    if log_df is None or log_df.empty or column not in log_df:
        no_data(ax, column)
        return
    n = int(log_df["layer"].max()) + 1
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    norm = mcolors.Normalize(0, max(n - 1, 1))
    for layer, part in log_df.sort_values("step").groupby("layer"):
        ax.plot(part["step"], part[column], color=cmap(norm(layer)), lw=0.9)
    if log and (log_df[column] > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.figure.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="layer")


def seed_errorbars(ax, x: Sequence[float], seeds: Sequence[Sequence[float]], color="black") -> None:
    """Error bars across seeds at positions x: seaborn's mean ± sd (errorbar="sd") of each position's per-seed
    values, drawn only where a position has at least two finite seeds."""
    rows = [(xi, v) for xi, values in zip(x, seeds) if np.isfinite(np.asarray(values, float)).sum() >= 2
            for v in values if np.isfinite(v)]
    if not rows:
        return
    sns.lineplot(data=pd.DataFrame(rows, columns=["x", "value"]), x="x", y="value", errorbar="sd", err_style="bars",
                 estimator="mean", ls="", marker="", color=color, err_kws={"capsize": 2, "lw": 0.8}, legend=False,
                 ax=ax)
    ax.set_xlabel("")
    ax.set_ylabel("")


def sweep_lines(ax, x: Sequence, series: dict[str, Sequence[float]], *, paper: dict[str, Sequence[float]] | None = None,
                xlabel: str = "", ylabel: str = "", logx: bool = False, categorical: bool = False,
                seeds: dict[str, Sequence[Sequence[float]]] | None = None) -> None:
    """One line per series over the sweep values x; `paper` values of the same series as hollow markers;
    `seeds`: per-seed values of a series at each x, drawn as error bars across seeds (mean ± sd)."""
    xs = list(range(len(x))) if categorical else list(x)
    drawn = False
    for i, (name, ys) in enumerate(series.items()):
        ys = np.asarray(ys, dtype=float)
        if np.isfinite(ys).any():
            st = series_style(i, len(series))
            ax.plot(xs, ys, label=name, lw=1.3, markersize=5, **st)
            if seeds and name in seeds:
                seed_errorbars(ax, xs, seeds[name], st["color"])
            drawn = True
        if paper and name in paper:
            ax.scatter(xs, paper[name], **PAPER, label=f"{name} (paper)" if len(series) > 1 else "paper")
    if not drawn:
        no_data(ax, ylabel)
        return
    if categorical:
        ax.set_xticks(xs, [str(v) for v in x])
    elif logx:
        ax.set_xscale("symlog" if min(x) <= 0 else "log", **({"linthresh": 0.01} if min(x) <= 0 else {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    legend(ax)


def score_bars(ax, labels: Sequence[str], scores: dict[str, Sequence[float]],
               paper: dict[str, Sequence[float]] | None = None, *, xlabel: str = "",
               seeds: dict[str, Sequence[Sequence[float]]] | None = None) -> None:
    """Grouped bars of the M4–M6 scores per run with values annotated; the paper's values as hollow markers;
    `seeds`: per-seed values of each score and run, drawn as error bars across seeds (mean ± sd)."""
    if not any(np.isfinite(np.asarray(v, dtype=float)).any() for v in scores.values()):
        no_data(ax, ", ".join(scores))
        return
    n = len(scores)
    width = 0.8 / n
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(scores.items()):
        values = np.asarray(values, dtype=float)
        st = series_style(i, n)
        pos = x + (i - (n - 1) / 2) * width
        bars = ax.bar(pos, np.nan_to_num(values), width, color=st["color"], label=name,
                      hatch=("", "//", "..", "xx")[i % 4], edgecolor="white")
        for bar, v in zip(bars, values):
            if np.isfinite(v):
                ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=6, rotation=90)
        if paper and name in paper:
            ax.scatter(pos, paper[name], **PAPER, label="paper" if i == 0 else None)
        if seeds and name in seeds:
            seed_errorbars(ax, pos, seeds[name])
    ax.set_xticks(x, labels)
    ax.set_ylim(0, 1.15)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score")
    legend(ax, ncols=2)


def heatmap(ax, matrix: np.ndarray, *, vmin: float, vmax: float, center: float | None = None, title: str = "",
            xlabel: str = "", ylabel: str = "", cmap: str = HEATMAP_CMAP, colorbar: bool = True) -> None:
    """A matrix with a given (shared) colour range; NaN cells stay blank."""
    norm = mcolors.TwoSlopeNorm(center, vmin, vmax) if center is not None and vmin < center < vmax else \
        mcolors.Normalize(vmin, vmax)
    image = ax.imshow(matrix, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.grid(False)


def pair_matrix(table: pd.DataFrame | None, row: str, col: str, value: str, n: int) -> np.ndarray:
    """Long (row, col, value) pairs -> (n, n) matrix, NaN where absent (upper-triangle scores of M4/M5)."""
    out = np.full((n, n), np.nan)
    if table is not None and not table.empty:
        out[table[row].to_numpy(int), table[col].to_numpy(int)] = table[value].to_numpy(float)
    return out


def score_visualization(res: Results, run_id: str, axes: Sequence) -> None:
    """Three panels of one run (Figs 20–29): C(s, l) heatmap (M4), P(i, j) heatmap (M5), M6 loss ratios."""
    L = int(res.value(run_id, "causal", "n_layers")) if np.isfinite(res.value(run_id, "causal", "n_layers")) else None
    causal, perm = res.analysis(run_id, "causal"), res.analysis(run_id, "permutation")
    useful = res.analysis(run_id, "usefulness")
    if L is None:
        L = int(max([t[c].max() + 1 for t, c in ((causal, "l"), (perm, "j")) if t is not None and len(t)] or [0]))
    for ax, table, (r, c, v), title, labels in (
        (axes[0], causal, ("s", "l", "causal"), "causal effect C(s, l)", ("skipped layer s", "later layer l")),
        (axes[1], perm, ("i", "j", "permutation"), "permutation P(i, j)", ("layer i", "layer j")),
    ):
        if table is None or table.empty or not L:
            no_data(ax, title)
            continue
        M = pair_matrix(table, r, c, v, L)
        heatmap(ax, M, vmin=0.0, vmax=float(np.nanmax(M)) or 1.0, cmap=SEQUENTIAL_CMAP, title=title,
                ylabel=labels[0], xlabel=labels[1])
    ax = axes[2]
    if useful is None or useful.empty:
        no_data(ax, "usefulness")
        return
    part = useful[useful["variant"] == "correct"] if "variant" in useful else useful
    useful_mask = part["ratio"].to_numpy() > 1.1
    ax.bar(part["layer"], part["ratio"], color=np.where(useful_mask, "0.25", "0.7"), edgecolor="black", lw=0.3)
    ax.axhline(1.1, color="black", ls="--", lw=1, label="1.1 (useful)")
    lo = min(0.95, float(part["ratio"].min()) - 0.02)
    ax.set_ylim(lo, max(1.2, float(part["ratio"].max()) + 0.05))
    ax.set_title(f"linear replacement: loss ratio (U = {useful_mask.mean():.2f})", fontsize=9)
    ax.set_xlabel("layer")
    ax.set_ylabel("loss ratio ℓ_lin / ℓ_0")
    legend(ax)
