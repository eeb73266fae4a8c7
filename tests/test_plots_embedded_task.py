"""Issue 15: figures, tables and claims show the tasks actually evaluated, under their own names (protocol M12, E6).

Two synthetic smoke-scale result sets: every task evaluated (the paper's ARC-C/HellaSwag average), and the fresh
offline machine, where only the embedded pydoc_cont4 ran.
"""

from __future__ import annotations

import pandas as pd
import pytest

from _plots_testutil import ROOT, STOCK_TASKS, close_figures, make_results  # noqa: F401 (autouse fixture)
from sparsecod.plots.claims import evaluate_claims
from sparsecod.plots.data import Results
from sparsecod.plots.figures import RENDERERS
from sparsecod.plots.tables import build_table, lns_table, render_table

REF = ROOT / "config" / "reference"



@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Results]:
    out = {}
    for name, skip in (("all", ()), ("offline", STOCK_TASKS)):
        root = tmp_path_factory.mktemp(name) / "results"
        make_results(root, skip_tasks=skip)
        out[name] = Results.load(root, [root / "summary.parquet"])
    return out


def test_accuracy_tasks_are_the_papers_pair_when_evaluated_else_the_evaluated_ones(results) -> None:
    runs = results["all"].runs("ablation")["run_id"]
    assert results["all"].accuracy_tasks(runs) == ("arc_challenge", "hellaswag")
    assert results["offline"].accuracy_tasks(runs) == ("pydoc_cont4",)
    assert results["offline"].eval_metrics(runs) == ["pydoc_cont4.acc_norm"]
    assert results["offline"].accuracy_tasks(results["offline"].runs("seqlen")["run_id"]) == ()


def test_fig1_offline_averages_the_embedded_task_and_says_so(results) -> None:
    res = results["offline"]
    ax = dict(RENDERERS["fig1"](res, REF))["fig01_ablation_stack"].axes[0]
    runs = res.runs("ablation")["run_id"]
    assert [round(b.get_width(), 6) for b in ax.patches] == [round(res.value(r, "eval", "pydoc_cont4.acc_norm"), 6)
                                                             for r in runs]
    assert "pydoc_cont4" in ax.get_xlabel() and "paper: ARC-C & HellaSwag, not drawn" in ax.get_xlabel()
    assert not [c for c in ax.collections if c.get_label() == "paper: avg acc"]  # no ARC/HellaSwag markers beside it
    online = dict(RENDERERS["fig1"](results["all"], REF))["fig01_ablation_stack"].axes[0]
    assert "arc_challenge & hellaswag" in online.get_xlabel()
    assert [c for c in online.collections if c.get_label() == "paper: avg acc"]


def test_table1_shows_each_evaluated_task_under_its_own_name(results, tmp_path) -> None:
    offline = build_table("table1", results["offline"], REF).set_index("run_id")
    assert "pydoc_cont4_acc_norm" in offline.columns
    assert offline.loc["depth-L16", "pydoc_cont4_acc_norm"] == pytest.approx(
        results["offline"].value("depth-L16", "eval", "pydoc_cont4.acc_norm"))
    assert offline["arc_c_acc_norm"].isna().all() and offline["arc_c_acc_norm_paper"].notna().all()
    assert offline["pydoc_cont4_acc_norm_paper"].isna().all()  # the paper has no such task
    both = build_table("table1", results["all"], REF)
    assert both["arc_c_acc_norm"].notna().all() and both["pydoc_cont4_acc_norm"].notna().all()
    md = render_table("table1", results["offline"], REF, tmp_path)[1].read_text()
    assert "pydoc_cont4_acc_norm" in md.splitlines()[2]
    assert "pydoc_cont4_acc_norm" in lns_table(results["offline"]).columns


def test_claim_e6_uses_the_evaluated_tasks_and_names_them(results) -> None:
    online = evaluate_claims(results["all"], REF).set_index("claim_id").loc["E6-accuracy"]
    offline = evaluate_claims(results["offline"], REF).set_index("claim_id").loc["E6-accuracy"]
    assert online["statistic"].endswith("mean acc_norm of arc_challenge, hellaswag")
    assert offline["statistic"].endswith("mean acc_norm of pydoc_cont4")
    assert "paper: ARC-C/HellaSwag" in offline["detail"]
    res = results["offline"]
    gap = res.value("abl-A8", "eval", "pydoc_cont4.acc_norm") - res.value("abl-A1", "eval", "pydoc_cont4.acc_norm")
    assert offline["ours"] == pytest.approx(gap) and offline["verdict"] == "reproduced"
    assert not pd.isna(offline["ci_low"])
