"""Beyond the paper (issue 19): Fig X1, Table X1 and claims X1/X2 of LayerNorm Scaling vs Pre-LN (E1)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from _plots_testutil import ROOT, make_results
from sparsecod.plots.claims import COLUMNS, CONTRADICTED, INCONCLUSIVE, REPRODUCED, write_beyond_claims
from sparsecod.plots.data import Results
from sparsecod.plots.inventory import BEYOND, CLAIMS, ITEMS
from sparsecod.plots.render import render_items
from sparsecod.plots.tables import lns_table

REF = ROOT / "config" / "reference"
X_IDS = ["X1-variance-L12", "X1-variance-L16", "X1-variance-L24", "X1-variance-L32", "X1-causal-L32",
         "X1-permutation-L32", "X1-usefulness-L32"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[int, tuple[Path, Results]]:
    out = {}
    for trend in (1, -1):
        root = tmp_path_factory.mktemp(f"lns{trend:+d}") / "results"
        make_results(root, trend=trend)
        out[trend] = (root, Results.load(root, [root / "summary" / "depth.parquet", root / "summary" / "lns.parquet"]))
    return out


def test_inventory_keeps_beyond_items_apart_from_the_papers() -> None:
    assert set(BEYOND) == {"figX1", "tableX1", "claimsX"} and set(BEYOND) <= set(ITEMS)
    assert all(item.groups == ("depth", "lns") and item.category == "Beyond the paper" for item in BEYOND.values())
    assert "lns" not in CLAIMS.groups  # `snakemake claims` never trains the LNS arm


def test_render_writes_figure_table_and_claims(results, tmp_path) -> None:
    root, _ = results[1]
    paths = render_items(["figX1", "tableX1", "claimsX"], root, [root / "summary" / "depth.parquet",
                                                                  root / "summary" / "lns.parquet"], REF)
    names = sorted(p.name for p in paths)
    assert names == sorted(["figX1_lns_variance.pdf", "figX1_lns_variance.png", "tableX1_lns_depth.csv",
                            "tableX1_lns_depth.md", "tableX1_lns_depth.tex", "claims_beyond_paper.md",
                            "claims_beyond_paper.csv"])
    assert all(p.stat().st_size > 200 for p in paths)
    assert (root / "claims_beyond_paper.md").read_text().startswith("# Beyond the paper")


def test_table_has_table1_columns_for_both_arms(results) -> None:
    _, res = results[1]
    table = lns_table(res)
    assert list(table["label"]) == [f"L={L} {arm}" for L in (12, 16, 24, 32) for arm in ("Pre-LN", "LNS")]
    assert list(table["run_id"][:2]) == ["depth-L12", "lns-L12"]
    for col in ("params", "effective_layers", "wasted_layers", "ppl", "mmlu_acc", "hellaswag_acc_norm"):
        assert col in table
    row = table.set_index("run_id").loc["lns-L32"]
    assert row["effective_layers"] == res.value("lns-L32", "usefulness", "effective_layers")
    assert table.set_index("run_id").loc["lns-L16", "params"] == table.set_index("run_id").loc["depth-L16", "params"]


def test_claims_follow_the_results_and_are_never_the_papers(results, tmp_path) -> None:
    holds = write_beyond_claims(results[1][1], REF, tmp_path / "c.md", tmp_path / "c.csv")
    assert list(holds.columns) == COLUMNS and list(holds["claim_id"]) == X_IDS
    assert (holds["verdict"] == REPRODUCED).all(), holds.to_string()
    assert holds["paper"].isna().all() and holds["detail"].str.contains("not a claim of the paper").all()
    reversed_ = write_beyond_claims(results[-1][1], REF, tmp_path / "r.md", tmp_path / "r.csv")
    assert (reversed_["verdict"] == CONTRADICTED).all(), reversed_.to_string()
    res = results[1][1]
    no_lns = Results(res.dir, res.summary[res.summary["group"] != "lns"])
    assert (write_beyond_claims(no_lns, REF, tmp_path / "n.md", tmp_path / "n.csv")
            .eval("verdict == @INCONCLUSIVE and reason.str.startswith('too few runs')", engine="python")).all()
    assert pd.read_csv(tmp_path / "c.csv")["claim_id"].tolist() == X_IDS
