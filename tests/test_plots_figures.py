"""Figures 1–29 (issue 7) from a synthetic results directory: every figure renders valid PDF/PNG files, the drawn
values are the summary's and the paper's, and missing data renders as marked empty panels instead of failing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from _plots_testutil import close_figures, make_results  # noqa: F401 (autouse fixture)
from sparsecod.cli import main
from sparsecod.plots.data import Results, run_label, spearman
from sparsecod.plots.figures import RENDERERS, render
from sparsecod.plots.inventory import FIGURES, TABLES
from sparsecod.plots.reference import load_reference

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "config" / "reference"



@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Results:
    root = tmp_path_factory.mktemp("results")
    make_results(root)
    return Results.load(root, [root / "summary.parquet"])


def test_inventory_covers_every_figure_and_table_of_the_paper() -> None:
    assert sorted(int(n[3:]) for n in FIGURES) == list(range(1, 30))
    assert sorted(int(n[5:]) for n in TABLES) == list(range(1, 9))
    assert set(RENDERERS) == set(FIGURES)
    stems = [s for item in FIGURES.values() for s in item.stems]
    assert len(stems) == len(set(stems))
    assert all(s.startswith(f"fig{int(n[3:]):02d}") for n, item in FIGURES.items() for s in item.stems)


@pytest.mark.parametrize("name", list(FIGURES))
def test_every_figure_renders_valid_pdf_and_png(name: str, results: Results, tmp_path: Path) -> None:
    paths = render(name, results, REF, tmp_path)
    assert [p.name for p in paths] == [f"{s}.{e}" for s in FIGURES[name].stems for e in ("pdf", "png")]
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 2000, path
        assert data.startswith(b"%PDF" if path.suffix == ".pdf" else b"\x89PNG\r\n\x1a\n"), path
    assert not list(tmp_path.glob("*.tmp*"))


def test_fig2c_bars_are_our_scores_and_markers_the_papers(results: Results) -> None:
    fig = dict(RENDERERS["fig2"](results, REF))["fig02c_depth_scores"]
    ax = fig.axes[0]
    runs = results.runs("depth")["run_id"]
    heights = [round(b.get_height(), 6) for b in ax.patches]
    ours = [results.value(r, src, m) for src, m in (("causal", "causal_global"), ("permutation", "permutation_global"),
                                                   ("usefulness", "usefulness"),
                                                   ("usefulness", "usefulness_transpose_bug")) for r in runs]
    assert heights == [round(v, 6) for v in ours]
    paper = load_reference(REF, "fig2c_depth_scores")  # the released map (D1) is drawn against the paper's U too
    markers = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    expected = paper[["causal", "permutation", "usefulness", "usefulness"]].to_numpy().ravel()
    assert sorted(markers.round(3)) == sorted(expected.round(3))


def test_fig1_plots_average_accuracy_and_the_papers_values(results: Results) -> None:
    fig = dict(RENDERERS["fig1"](results, REF))["fig01_ablation_stack"]
    ax = fig.axes[0]
    runs = results.runs("ablation")["run_id"]
    avg = [(results.value(r, "eval", "arc_challenge.acc_norm") + results.value(r, "eval", "hellaswag.acc_norm")) / 2
           for r in runs]
    assert [round(b.get_width(), 6) for b in ax.patches] == [round(v, 6) for v in avg]
    paper = load_reference(REF, "fig1_ablation")["avg_acc_arcc_hellaswag"].tolist()
    assert ax.collections[0].get_offsets()[:, 0].tolist() == paper


def test_fig4_weight_sparsity_panels_follow_the_summary(results: Results) -> None:
    figs = dict(RENDERERS["fig4"](results, REF))
    runs = results.runs("weight_decay")["run_id"]
    for stem, eps in (("fig04b_wd_weight_sparsity", "0.01"), ("fig04d_wd_weight_sparsity", "0.0001")):
        line = figs[stem].axes[0].lines[0]
        expected = [results.value(r, "weight_sparsity", f"sparsity.all.{eps}") for r in runs]
        np.testing.assert_allclose(line.get_ydata(), expected)


def test_variance_figures_align_to_the_shortest_run(results: Results) -> None:
    fig = dict(RENDERERS["fig5"](results, REF))["fig05a_seq_variance"]
    shortest = min(results.value(r, "variance", "last_layer.steps") for r in results.runs("seqlen")["run_id"])
    lines = fig.axes[0].lines
    assert len(lines) == 6 and max(line.get_xdata().max() for line in lines) == shortest


def test_a_partial_results_directory_renders_marked_empty_panels(tmp_path: Path) -> None:
    empty = Results(tmp_path, pd.DataFrame(columns=["run_id", "trained_as", "group", "scale", "source", "metric",
                                                    "value"]))
    for name in ("fig1", "fig2", "fig5", "fig13", "fig20"):
        for _, fig in RENDERERS[name](empty, REF):
            texts = [t.get_text() for ax in fig.axes for t in ax.texts]
            assert any(t.startswith("no data") for t in texts), name


def test_run_labels_name_runs_as_the_paper_does() -> None:
    assert run_label({"group": "weight_decay", "label_weight_decay": 0.1}) == "λ=0.1"
    assert run_label({"group": "seqlen", "label_seq_len": 2048.0}) == "T=2048"
    assert run_label({"group": "gqa", "label_group_size": 4}) == "G=4"
    assert run_label({"group": "moe", "run_id": "moe-7BA1B"}) == "MoE-7BA1B"
    assert run_label({"group": "depth", "label_depth": 16.0}) == "L=16"
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(spearman([1, 2], [1, 2]))


def test_render_cli_writes_figures_and_names_bad_input(results: Results, capsys) -> None:
    summary = results.dir / "summary" / "moe.parquet"
    assert main(["render", "fig8", "table5", "--results", str(results.dir), "--summary", str(summary),
                 "--reference", str(REF)]) == 0
    assert (results.dir / "figures" / "fig08b_moe_variance_1B.pdf").is_file()
    assert (results.dir / "tables" / "table5_moe.tex").is_file()
    assert main(["render", "fig99", "--results", str(results.dir), "--summary", str(summary),
                 "--reference", str(REF)]) == 2
    assert "unknown name(s) ['fig99']" in capsys.readouterr().err
    assert main(["render", "fig8", "--results", str(results.dir), "--summary", str(results.dir / "nope.parquet"),
                 "--reference", str(REF)]) == 2
    assert "nope.parquet" in capsys.readouterr().err


def test_seed_spread_is_drawn_as_error_bars() -> None:
    """Panels take per-seed values and draw seaborn's mean ± sd error bars where a point has ≥ 2 seeds."""
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from sparsecod.plots.panels import score_bars, sweep_lines

    fig, (a, b) = plt.subplots(1, 2)
    sweep_lines(a, [1, 2, 3], {"s": [0.1, 0.2, 0.3]}, seeds={"s": [[0.1], [0.15, 0.25], [0.2, 0.4]]}, categorical=True)
    bars = [c for c in a.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1
    segments = bars[0].lines[2][0].get_segments()
    assert len(segments) == 2 and np.ptp(segments[1][:, 1]) == pytest.approx(2 * np.std([0.2, 0.4], ddof=1))
    score_bars(b, ["L=12", "L=16"], {"causal": [0.3, 0.2]}, seeds={"causal": [[0.3], [0.2]]})
    assert not [c for c in b.containers if isinstance(c, ErrorbarContainer)], "one seed: no error bar"
    plt.close(fig)


def test_variance_curves_of_a_seeded_run_are_a_mean_with_a_band(results: Results) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection

    from sparsecod.plots.panels import variance_curves

    fig, ax = plt.subplots()
    variance_curves(ax, results, results.runs("gqa"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["G=1 (2 seeds)", "G=4 (2 seeds)", "G=16 (2 seeds)"]
    assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == 3  # one ± sd band per run
    plt.close(fig)
