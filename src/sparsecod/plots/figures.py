"""Figures 1–29 of the paper (protocol §4), one function per figure, from `Results` and the paper's numbers.

Every function takes (res, ref_dir) and returns [(stem, matplotlib Figure)] in the order of the figure's stems
in `inventory.FIGURES`; `render` saves them as `<stem>.pdf` and `.png`. Where the paper gives numbers
(config/reference, protocol §5) they are drawn beside ours as hollow black markers labelled "paper".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..metrics.variance_curve import last_layer_curve
from .data import DEPTH_ARMS, PAPER_ACCURACY_TASKS, DirectoryResults, Results, depth_arms
from .inventory import ATTENTION_DETAIL, BEYOND, FIGURES, SCORE_PANELS
from .panels import (heatmap, layer_curves, paper_anchors, score_bars, score_visualization,
                     sweep_lines, variance_curves)
from .reference import load_reference
from .style import PAPER, legend, no_data, panels, save, series_style

PANEL_EPS = ("0.01", "0.001", "0.0001")  # M7/M8 default panels ε ∈ {1e-2, 1e-3, 1e-4}
USEFULNESS_RELEASED = "usefulness (released code, D1)"  # M6 with the released code's map x Wᵀ + b
Figures = list[tuple[str, object]]


def _stems(name: str) -> tuple[str, ...]:
    return FIGURES[name].stems


def _mark_if_empty(axes, runs: pd.DataFrame, group: str) -> None:
    if runs.empty:
        for ax in axes:
            no_data(ax, f"runs of group {group}")


def _variance_with_anchors(res: Results, ref_dir: Path, group: str, figure: str, *, log: bool,
                           align: int | None = None, runs: pd.DataFrame | None = None, title: str = ""):
    runs = res.runs(group) if runs is None else runs
    fig, (ax, ax_ref) = panels(2, size=(4.2, 3.0), gridspec_kw={"width_ratios": [2.2, 1]})
    variance_curves(ax, res, runs, align=align, log=log)
    ax.set_title(title + (f" (aligned to {align} steps)" if align else ""), fontsize=9)
    paper_anchors(ax_ref, load_reference(ref_dir, "variance_anchors"), figure, runs, log=log)
    return fig


# --- E6 ----------------------------------------------------------------------------------------------------
def fig1(res: Results, ref_dir: Path) -> Figures:
    """Ablation stack (E6): average acc_norm bars (ARC-C & HellaSwag, or the tasks evaluated instead; the axis names
    them), usefulness stars on the top axis (M12, M6)."""
    runs = res.runs("ablation")
    tasks = res.accuracy_tasks(runs["run_id"])
    df = res.scalars("ablation", {**{t: ("eval", f"{t}.acc_norm") for t in tasks},
                                  "usefulness": ("usefulness", "usefulness")})
    paper = load_reference(ref_dir, "fig1_ablation").set_index("id")
    fig, (ax,) = panels(1, size=(6.0, 4.2))
    if df.empty:
        no_data(ax, "ablation runs")
        return [(_stems("fig1")[0], fig)]
    df["avg"] = df[list(tasks)].mean(axis=1, skipna=False) if tasks else np.nan
    y = np.arange(len(df))[::-1]
    kept = [str(k) in ("yes", "base", "ref") for k in df.get("label_kept", pd.Series(["yes"] * len(df)))]
    ax.barh(y, np.nan_to_num(df["avg"]), color=["0.3" if k else "0.75" for k in kept], edgecolor="black", lw=0.4,
            label="ours: avg acc")
    ids = [r.replace("abl-", "") for r in df["run_id"]]
    same = tasks == PAPER_ACCURACY_TASKS  # the paper's numbers are ARC-C/HellaSwag averages: drawn only beside those
    pa = [paper["avg_acc_arcc_hellaswag"].get(i, np.nan) for i in ids] if same else []
    if same:
        ax.scatter(pa, y, **PAPER, label="paper: avg acc")
    ax.set_yticks(y, df["label"])
    ax.set_xlabel(f"average accuracy, {' & '.join(tasks) or 'no task evaluated'} acc_norm (%)"
                  + ("" if same or not tasks else "; paper: ARC-C & HellaSwag, not drawn"))
    finite = [v for v in [*df["avg"], *pa] if np.isfinite(v)]
    if finite:
        ax.set_xlim(min(finite) - 2, max(finite) + 2)
    top = ax.twiny()
    top.scatter(df["usefulness"], y, marker="*", s=90, color="tab:orange", edgecolors="black", lw=0.4,
                label="ours: usefulness", zorder=6)
    top.scatter([paper["usefulness_approx"].get(i, np.nan) for i in ids], y, marker="*", s=90, facecolors="none",
                edgecolors="tab:orange", label="paper: usefulness", zorder=6)
    top.set_xlim(0, 1.05)
    top.set_xlabel("usefulness U (stars)")
    handles = [h for a in (ax, top) for h in a.get_legend_handles_labels()[0]]
    labels = [lab for a in (ax, top) for lab in a.get_legend_handles_labels()[1]]
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2, fontsize=7, frameon=False)
    return [(_stems("fig1")[0], fig)]


# --- E1 ----------------------------------------------------------------------------------------------------
def fig2(res: Results, ref_dir: Path) -> Figures:
    """(a) last-layer variance vs step (log), (b) Jacobian deviation per layer, (c) M4–M6 bars with the paper's."""
    runs = res.runs("depth")
    a = _variance_with_anchors(res, ref_dir, "depth", "2a", log=True, title="last-layer variance by depth")
    fig_b, (ax,) = panels(1, size=(4.5, 3.2))
    drawn = 0
    for i, run in enumerate(runs.itertuples()):
        table = res.analysis(run.run_id, "jacobian")
        if table is None:
            continue
        table = table[(table["layer"] >= 1) & (table["layer"] <= table["layer"].max() - 1)]  # paper: 1..L−2
        ax.plot(table["layer"], table["deviation"], label=run.label, lw=1.2, markersize=4, **series_style(i, len(runs)))
        drawn += 1
    if drawn:
        ax.set_xlabel("layer")
        ax.set_ylabel("‖J̄ − I‖_F / d")
        legend(ax)
    else:
        no_data(ax, "jacobian analysis")
    metrics = {"causal": ("causal", "causal_global"), "permutation": ("permutation", "permutation_global"),
               "usefulness": ("usefulness", "usefulness"),
               USEFULNESS_RELEASED: ("usefulness", "usefulness_transpose_bug")}  # protocol D1: the paper's numbers
    df = res.scalars("depth", metrics)
    ref = load_reference(ref_dir, "fig2c_depth_scores").set_index("depth")
    ref[USEFULNESS_RELEASED] = ref["usefulness"]
    depths = [int(float(v)) for v in df.get("label_depth", [])]
    fig_c, (ax,) = panels(1, size=(6.0, 3.2))
    score_bars(ax, list(df["label"]), {m: df[m] for m in metrics},
               {m: [ref[m].get(d, np.nan) for d in depths] for m in metrics}, xlabel="depth",
               seeds={m: df[f"{m}_seeds"] for m in metrics})
    return list(zip(_stems("fig2"), (a, fig_b, fig_c)))


def _jacobian_grid(mats: list[tuple[str, np.ndarray]], crop: int = 64):
    fig, axes = panels(max(len(mats), 1), size=(3.0, 2.8))
    if not mats:
        no_data(axes[0], "jacobian matrices")
        return fig
    crops = [m[:crop, :crop] for _, m in mats]
    span = max(float(np.abs(c - np.eye(c.shape[0])).max()) for c in crops)
    for ax, (title, _), c in zip(axes, mats, crops):
        heatmap(ax, c, vmin=-span, vmax=1 + span, center=0.0, title=title, xlabel="input dim", ylabel="output dim")
    return fig


def fig3(res: Results, ref_dir: Path) -> Figures:
    """J̄ at layer L−2 of each depth model (M3b), top-left 64×64, one shared colour scale."""
    mats = []
    for run in res.runs("depth").itertuples():
        saved = res.jacobians(run.run_id)
        if saved:
            L = int(res.value(run.run_id, "jacobian", "n_layers"))
            layer = min(saved, key=lambda k: abs(k - (L - 2)))
            mats.append((f"{run.label}, layer {layer}", saved[layer]))
    return [(_stems("fig3")[0], _jacobian_grid(mats))]


def fig9(res: Results, ref_dir: Path) -> Figures:
    """Variance of every block output during training, one panel per depth (M1, log axis)."""
    runs = res.runs("depth")
    fig, axes = panels(max(len(runs), 1), ncols=2, size=(4.2, 3.0))
    for ax, run in zip(axes, runs.itertuples()):
        layer_curves(ax, res.variance(run.run_id), "out_var", log=True, title=run.label)
    _mark_if_empty(axes, runs, "depth")
    return [(_stems("fig9")[0], fig)]


def fig12(res: Results, ref_dir: Path) -> Figures:
    """J̄ of the deepest depth model at the saved layers (protocol M3b: 1, 8, 16, 24, 30 for L = 32)."""
    runs = res.runs("depth")
    mats = []
    if len(runs):
        deepest = runs.iloc[-1]
        mats = [(f"{deepest['label']}, layer {k}", m) for k, m in res.jacobians(deepest["run_id"]).items()]
    return [(_stems("fig12")[0], _jacobian_grid(mats))]


# --- E2 ----------------------------------------------------------------------------------------------------
def fig4(res: Results, ref_dir: Path) -> Figures:
    """(a) last-layer variance vs step per λ (linear); (b–d) weight sparsity of all parameters vs λ (M7)."""
    out = [_variance_with_anchors(res, ref_dir, "weight_decay", "4a", log=False, title="last-layer variance by λ")]
    runs = res.runs("weight_decay")
    lams = [float(v) for v in runs.get("label_weight_decay", [])]
    for eps in PANEL_EPS:
        fig, (ax,) = panels(1, size=(3.8, 3.0))
        seeds = [res.seed_values(r, "weight_sparsity", f"sparsity.all.{eps}") for r in runs["run_id"]]
        ys = [float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for v in seeds]
        sweep_lines(ax, lams, {f"ε = {eps}": ys}, xlabel="weight decay λ", ylabel=f"weight sparsity S_ε, ε = {eps}",
                    categorical=True, seeds={f"ε = {eps}": seeds})
        out.append(fig)
    return list(zip(_stems("fig4"), out))


# --- E3 ----------------------------------------------------------------------------------------------------
def _sparsity_vs_T(ax, res: Results, runs: pd.DataFrame, Te: int, eps_list=PANEL_EPS) -> None:
    Ts = [int(float(v)) for v in runs.get("label_seq_len", [])]
    seeds = {f"ε = {e}": [res.seed_values(r, "attention", f"sparsity.{Te}.{e}") for r in runs["run_id"]]
             for e in eps_list}
    series = {name: [float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for v in per_run]
              for name, per_run in seeds.items()}
    sweep_lines(ax, Ts, series, xlabel="training T (paper scale)", ylabel=f"attention sparsity at T_e = {Te}",
                categorical=True, seeds=seeds)


def _sparsity_by_layer(ax, res: Results, runs: pd.DataFrame, Te: int, eps: str = "0.001") -> None:
    drawn = 0
    for i, run in enumerate(runs.itertuples()):
        table = res.analysis(run.run_id, "attention")
        if table is None:
            continue
        part = table[(table["T_e"] == Te) & np.isclose(table["eps"], float(eps))]
        prof = part.groupby("layer")["sparsity"].mean()
        ax.plot(prof.index, prof.to_numpy(), label=run.label, lw=1.1, markersize=3, **series_style(i, len(runs)))
        drawn += 1
    if not drawn:
        no_data(ax, "attention analysis")
        return
    ax.set_xlabel("layer")
    ax.set_ylabel(f"attention sparsity, ε = {eps}, T_e = {Te}")
    legend(ax)


def fig5(res: Results, ref_dir: Path) -> Figures:
    """(a) last-layer variance aligned to the shortest run (log); (b–d) attention sparsity at the longest T_e vs T."""
    runs = res.runs("seqlen")
    out = [_variance_with_anchors(res, ref_dir, "seqlen", "5a", log=True, align=res.common_step(runs["run_id"]),
                                  title="last-layer variance by training T")]
    lengths = res.attention_lengths()
    for eps in PANEL_EPS:
        fig, (ax,) = panels(1, size=(3.8, 3.0))
        if lengths:
            _sparsity_vs_T(ax, res, runs, lengths[-1], (eps,))
        else:
            no_data(ax, "attention analysis")
        out.append(fig)
    return list(zip(_stems("fig5"), out))


def fig6(res: Results, ref_dir: Path) -> Figures:
    """Attention sparsity per layer (mean over heads) at the longest T_e, one line per training T, 3 thresholds."""
    runs, lengths = res.runs("seqlen"), res.attention_lengths()
    fig, axes = panels(len(PANEL_EPS), size=(3.8, 3.0))
    for ax, eps in zip(axes, PANEL_EPS):
        if lengths:
            _sparsity_by_layer(ax, res, runs, lengths[-1], eps)
        else:
            no_data(ax, "attention analysis")
    return [(_stems("fig6")[0], fig)]


def _attention_detail(name: str, index: int):
    def render(res: Results, ref_dir: Path) -> Figures:
        runs, lengths = res.runs("seqlen"), res.attention_lengths()
        fig, (a, b) = panels(2, size=(3.8, 3.0))
        if index < len(lengths):
            _sparsity_vs_T(a, res, runs, lengths[index])
            _sparsity_by_layer(b, res, runs, lengths[index])
        else:
            no_data(a, f"evaluation length #{index + 1}")
            no_data(b, f"evaluation length #{index + 1}")
        return [(_stems(name)[0], fig)]

    render.__doc__ = f"Attention sparsity at the {index + 1}. evaluation length (M8): vs training T and per layer."
    return render


def fig18(res: Results, ref_dir: Path) -> Figures:
    """Attention entropy (M9) vs training T, one line per evaluation length."""
    runs, lengths = res.runs("seqlen"), res.attention_lengths()
    fig, (ax,) = panels(1, size=(4.5, 3.2))
    Ts = [int(float(v)) for v in runs.get("label_seq_len", [])]
    sweep_lines(ax, Ts, {f"T_e = {Te}": [res.value(r, "attention", f"entropy.{Te}") for r in runs["run_id"]]
                         for Te in lengths}, xlabel="training T (paper scale)", ylabel="attention entropy (nats)",
                categorical=True)
    return [(_stems("fig18")[0], fig)]


def fig19(res: Results, ref_dir: Path) -> Figures:
    """Unaligned last-layer variance of the sequence-length (log) and GQA runs."""
    out = []
    for group, log in (("seqlen", True), ("gqa", False)):
        fig, (ax,) = panels(1, size=(4.5, 3.2))
        variance_curves(ax, res, res.runs(group), log=log)
        out.append(fig)
    return list(zip(_stems("fig19"), out))


# --- E4, E5 ------------------------------------------------------------------------------------------------
def fig7(res: Results, ref_dir: Path) -> Figures:
    """Last-layer variance for G = 1, 4, 16 aligned to the G = 1 run (its 4,768 steps at paper scale)."""
    runs = res.runs("gqa")
    align = res.common_step(runs["run_id"])
    return [(_stems("fig7")[0], _variance_with_anchors(res, ref_dir, "gqa", "7", log=False, align=align,
                                                       title="last-layer variance by GQA group size"))]


def fig8(res: Results, ref_dir: Path) -> Figures:
    """Last-layer variance, (a) Dense-400M vs MoE-2BA400M, (b) Dense-1B vs MoE-7BA1B."""
    runs = res.runs("moe")
    out = []
    for size, key in (("400M", "8a"), ("1B", "8b")):
        part = runs[runs.get("label_size", pd.Series(dtype=str)).astype(str) == size] if len(runs) else runs
        out.append(_variance_with_anchors(res, ref_dir, "moe", key, log=False, runs=part,
                                          title=f"dense vs MoE, {size} active"))
    return list(zip(_stems("fig8"), out))


# --- E7 ----------------------------------------------------------------------------------------------------
def _sublayer(name: str, column: str, what: str):
    def render(res: Results, ref_dir: Path) -> Figures:
        runs = res.runs("sublayer")
        fig, axes = panels(max(len(runs), 1), ncols=2, size=(4.2, 3.0))
        for ax, run in zip(axes, runs.itertuples()):
            layer_curves(ax, res.variance(run.run_id), column, log=True, title=run.label, ylabel=what)
        _mark_if_empty(axes, runs, "sublayer")
        return [(_stems(name)[0], fig)]

    render.__doc__ = f"{what} of every layer during training (M2), L = 16 and L = 32."
    return render


def fig13(res: Results, ref_dir: Path) -> Figures:
    """Kurtosis (M10): layer-level K^(l) and the 99th percentile of per-dimension κ over training."""
    runs = res.runs("sublayer")
    n = max(len(runs), 1)
    fig, axes = panels(2 * n, ncols=n, size=(4.2, 3.0))
    for i, run in enumerate(runs.itertuples()):
        log_df = res.kurtosis(run.run_id)
        layer_curves(axes[i], log_df, "kurtosis", title=f"{run.label}: K^(l)", ylabel="kurtosis (Gaussian = 3)")
        layer_curves(axes[n + i], log_df, "kurt_p99", log=True, title=f"{run.label}: p99 of κ_j",
                     ylabel="per-dimension kurtosis, p99")
    _mark_if_empty(axes, runs, "sublayer")
    return [(_stems("fig13")[0], fig)]


# --- Figs 20–29: score visualizations ---------------------------------------------------------------------
def _scores(n: int):
    group, run_ids = SCORE_PANELS[n]

    def render(res: Results, ref_dir: Path) -> Figures:
        labels = dict(zip(res.runs(group)["run_id"], res.runs(group)["label"]))
        out = []
        for run_id in run_ids:
            fig, axes = panels(3, ncols=3, size=(3.8, 3.2))
            score_visualization(res, run_id, axes)
            fig.suptitle(f"{labels.get(run_id, run_id)} ({run_id})", fontsize=10)
            out.append(fig)
        return list(zip(_stems(f"fig{n}"), out))

    render.__doc__ = f"Score visualizations (M4 heatmap, M5 heatmap, M6 ratios) of {', '.join(run_ids)}."
    return render


RENDERERS: dict[str, Callable[[Results, Path], Figures]] = {
    "fig1": fig1, "fig2": fig2, "fig3": fig3, "fig4": fig4, "fig5": fig5, "fig6": fig6, "fig7": fig7, "fig8": fig8,
    "fig9": fig9, "fig10": _sublayer("fig10", "attn_out_var", "attention-output variance"),
    "fig11": _sublayer("fig11", "ffn_out_var", "MLP-output variance"), "fig12": fig12, "fig13": fig13,
    **{f"fig{n}": _attention_detail(f"fig{n}", i) for n, i in ATTENTION_DETAIL.items()},
    "fig18": fig18, "fig19": fig19, **{f"fig{n}": _scores(n) for n in SCORE_PANELS},
}


# --- beyond the paper (inventory.BEYOND) -------------------------------------------------------------------
def fig_x1_lns_variance(res: Results, ref_dir: Path) -> Figures:
    """Pre-LN (E1) vs LayerNorm Scaling (lns): Var(x_L) vs step per run, and its final value by depth (M1)."""
    arms = depth_arms(res)
    fig, (ax, ax_depth) = panels(2, size=(4.4, 3.2))
    depths = sorted(arms["depth"].unique())
    dash = {"Pre-LN": "-", "LNS": "--"}
    drawn = 0
    for row in arms.itertuples():
        log_df = res.variance(row.run_id)
        if log_df is None or log_df.empty:
            continue
        curve = last_layer_curve(log_df)
        color = series_style(depths.index(row.depth), len(depths))["color"]
        ax.plot(curve["step"], curve["value"], color=color, linestyle=dash[row.arm], lw=1.2, label=row.label)
        drawn += 1
    if drawn:
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel("Variance @ last layer")
        legend(ax, ncols=2)
    else:
        no_data(ax, "variance logs of groups depth and lns")
    finals = [res.value(r, "variance", "last_layer.final_mean") for r in arms["run_id"]]
    if np.isfinite(finals).any():
        for i, (arm, _) in enumerate(DEPTH_ARMS):
            sel = (arms["arm"] == arm).to_numpy()
            ax_depth.plot(arms["depth"][sel], np.asarray(finals)[sel], linestyle=dash[arm], lw=1.3, label=arm,
                          color=series_style(i, 2)["color"], marker=series_style(i, 2)["marker"])
        ax_depth.set_yscale("log")
        ax_depth.set_xticks(depths)
        ax_depth.set_xlabel("depth L")
        ax_depth.set_ylabel("final Var(x_L) (mean of last 10%)")
        legend(ax_depth)
    else:
        no_data(ax_depth, "variance logs of groups depth and lns")
    return [(BEYOND["figX1"].stems[0], fig)]


BEYOND_RENDERERS: dict[str, Callable[[Results, Path], Figures]] = {"figX1": fig_x1_lns_variance}
EXTERNAL_STEM = "layers"  # <OUT>/figures/layers.{pdf,png} of an external checkpoint (sparsecod.external layout)


def external_figure(out: str | os.PathLike) -> list[Path]:
    """One external checkpoint's layer figure from `<out>/analysis/`: per-layer held-out variance of block, attention
    and MLP outputs (M1/M2 via kurtosis), Jacobian deviation (M3), causal and permutation matrices (M4, M5) and the
    usefulness loss ratios (M6). Written to `<out>/figures/layers.{pdf,png}`; missing families leave marked panels."""
    out = Path(out)
    res, run = DirectoryResults(out.parent), out.name
    fig, axes = panels(5, ncols=5, size=(3.6, 3.2))
    variance = res.analysis(run, "kurtosis")
    if variance is not None and not variance.empty:
        for i, (column, label) in enumerate((("out_var", "block output x_l+1"), ("attn_out_var", "attention a_l"),
                                             ("ffn_out_var", "MLP m_l"))):
            ax = axes[0]
            ax.plot(variance["layer"], variance[column], label=label, lw=1.2, **series_style(i, 3))
        axes[0].set_yscale("log")
        axes[0].set(xlabel="layer", ylabel="held-out variance", title="per-layer variance")
        legend(axes[0])
    else:
        no_data(axes[0], "kurtosis analysis (per-layer variance)")
    jac = res.analysis(run, "jacobian")
    if jac is not None and not jac.empty:
        axes[1].plot(jac["layer"], jac["deviation"], lw=1.2, **series_style(0, 1))
        axes[1].set(xlabel="layer", ylabel="‖J̄ − I‖_F / d", title="Jacobian deviation")
    else:
        no_data(axes[1], "jacobian analysis")
    score_visualization(res, run, axes[2:])
    fig.suptitle(run, fontsize=10)
    return save(fig, out / "figures", EXTERNAL_STEM)


def render(name: str, res: Results, ref_dir: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Draw figure `name` (fig1 … fig29; figX1 beyond the paper), each panel as `<out_dir>/<stem>.pdf` and `.png`."""
    renderer = RENDERERS.get(name) or BEYOND_RENDERERS.get(name)
    if renderer is None:
        raise ValueError(f"unknown figure {name!r}; known: {', '.join([*RENDERERS, *BEYOND_RENDERERS])}")
    figures = renderer(res, Path(ref_dir))
    stems = [stem for stem, _ in figures]
    expected = FIGURES[name].stems if name in FIGURES else BEYOND[name].stems
    if tuple(stems) != expected:
        raise RuntimeError(f"{name} drew {stems}, the inventory lists {list(expected)}")
    return [p for stem, fig in figures for p in save(fig, out_dir, stem)]
