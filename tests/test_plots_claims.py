"""Claims verdict (protocol §3 E1–E6, §5): synthetic results where every claim holds, is reversed, or lacks runs."""

from __future__ import annotations

import pandas as pd
import pytest

from _plots_testutil import ROOT, make_results
from sparsecod.plots.claims import (COLUMNS, CONTRADICTED, INCONCLUSIVE, REPRODUCED, VERDICTS, evaluate_claims,
                                    write_claims)
from sparsecod.plots.data import Results
from sparsecod.plots.reference import load_reference

REF = ROOT / "config" / "reference"
CLAIM_IDS = ["E1-variance", "E1-usefulness", "E1-usefulness-released", "E1-usefulness-score", "E1-causal",
             "E1-permutation",
             "E2-variance", "E2-weight-sparsity", "E3-attention-sparsity", "E3-variance", "E4-variance",
             "E4-mqa-vs-mha", "E5-variance-400M", "E5-usefulness-400M", "E5-variance-1B", "E5-usefulness-1B",
             "E6-accuracy"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[int, Results]:
    out = {}
    for trend in (1, -1):
        root = tmp_path_factory.mktemp(f"claims{trend:+d}") / "results"
        make_results(root, trend=trend)
        out[trend] = Results.load(root, [root / "summary.parquet"])
    return out


def test_claims_hold_when_the_results_follow_the_paper(results) -> None:
    claims = evaluate_claims(results[1], REF)
    assert list(claims.columns) == COLUMNS and list(claims["claim_id"]) == CLAIM_IDS
    assert (claims["verdict"] == REPRODUCED).all(), claims[claims["verdict"] != REPRODUCED].to_string()
    assert claims["runs"].str.len().gt(0).all() and claims["reason"].str.len().gt(0).all()
    assert (claims["ci_low"] <= claims["ours"]).all() and (claims["ours"] <= claims["ci_high"]).all()
    assert (claims["p_value"] <= 0.05).all()
    control = claims[claims["claim_id"] != "E6-accuracy"]
    assert control["init_value"].notna().all()


def test_claims_fail_when_every_effect_is_reversed(results) -> None:
    claims = evaluate_claims(results[-1], REF)
    assert (claims["verdict"] == CONTRADICTED).all(), claims[claims["verdict"] != CONTRADICTED].to_string()


def test_paper_column_is_the_same_statistic_on_the_reference_numbers(results) -> None:
    claims = evaluate_claims(results[-1], REF).set_index("claim_id")["paper"]  # independent of our runs
    anchors = load_reference(REF, "variance_anchors").set_index(["figure", "run", "quantity"])["value"]
    fig1 = load_reference(REF, "fig1_ablation").set_index("id")["avg_acc_arcc_hellaswag"]
    table5 = load_reference(REF, "table5_moe").set_index("model")["usefulness"]
    assert claims["E6-accuracy"] == pytest.approx(fig1["A8"] - fig1["A1"]) == pytest.approx(4.6)
    assert claims["E4-mqa-vs-mha"] == pytest.approx(anchors["7", "gqa-G1", "end"] / anchors["7", "gqa-G16", "end"])
    assert claims["E5-variance-400M"] == pytest.approx(103 / 15) and claims["E5-variance-1B"] == pytest.approx(220 / 75)
    assert claims["E5-usefulness-1B"] == pytest.approx(table5["MoE-7BA1B"] - table5["Dense-1B"])
    assert claims["E1-variance"] == 1 and claims["E1-usefulness"] == claims["E3-variance"] == -1
    assert pd.isna(claims["E1-usefulness-score"])
    assert claims["E1-usefulness-released"] == claims["E1-usefulness"]  # the paper's numbers come from one map
    assert claims["E2-variance"] < -0.9
    assert pd.isna(claims["E2-weight-sparsity"]) and pd.isna(claims["E3-attention-sparsity"])


def test_missing_runs_are_inconclusive(results) -> None:
    res = results[1]
    summary = res.summary
    no_depth_moe = Results(res.dir, summary[~summary["group"].isin(["depth", "moe"])])
    claims = evaluate_claims(no_depth_moe, REF).set_index("claim_id")["verdict"]
    dropped = [c for c in CLAIM_IDS if c.startswith(("E1", "E5"))]
    assert (claims[dropped] == INCONCLUSIVE).all() and (claims.drop(dropped) == REPRODUCED).all()
    two_depths = Results(res.dir, summary[~summary["run_id"].isin(["depth-L12", "depth-L24"])])
    assert (evaluate_claims(two_depths, REF).set_index("claim_id").loc[["E1-variance", "E1-causal"], "verdict"]
            == INCONCLUSIVE).all()
    assert (evaluate_claims(Results(res.dir, summary.iloc[:0]), REF)["verdict"] == INCONCLUSIVE).all()
    no_a1 = Results(res.dir, summary[summary["run_id"] != "abl-A1"])
    assert evaluate_claims(no_a1, REF).set_index("claim_id").loc["E6-accuracy", "verdict"] == INCONCLUSIVE


def test_write_claims_markdown_and_csv(results, tmp_path) -> None:
    md, csv = tmp_path / "claims.md", tmp_path / "claims.csv"
    claims = write_claims(results[1], REF, md, csv)
    assert pd.read_csv(csv)["claim_id"].tolist() == claims["claim_id"].tolist() == CLAIM_IDS
    text = md.read_text().splitlines()
    assert text[0].startswith("# ") and text[2].startswith("Scale: smoke.") and "p ≤ 0.05" in text[2]
    assert text[4].startswith("| claim_id | verdict | reason | ours | ci_low | ci_high | p_value | init_value | paper")
    assert len([line for line in text if line.startswith("| E")]) == len(CLAIM_IDS)
    assert text[-1] == f"Verdicts: {REPRODUCED}: {len(CLAIM_IDS)}, {CONTRADICTED}: 0, {INCONCLUSIVE}: 0."
    assert VERDICTS == (REPRODUCED, CONTRADICTED, INCONCLUSIVE)


def _edited(res: Results, source: str, metric: str, value) -> Results:
    """A copy of `res` whose (source, metric) rows hold value(row) instead."""
    summary = res.summary.copy()
    rows = (summary["source"] == source) & (summary["metric"] == metric)
    summary.loc[rows, "value"] = [value(r) for r in summary[rows].to_dict("records")]
    return Results(res.dir, summary)


def test_a_claim_that_holds_at_init_and_is_unchanged_by_training_is_not_reproduced(results) -> None:
    res = results[1]
    trained = {r: res.value(r, "causal", "causal_global") for r in res.runs("depth")["run_id"]}
    same = _edited(res, "causal@init", "causal_global", lambda row: trained.get(row["run_id"], row["value"]))
    row = evaluate_claims(same, REF).set_index("claim_id").loc["E1-causal"]
    assert row["verdict"] == INCONCLUSIVE and "holds at init" in row["reason"] and row["init_value"] == row["ours"]


def test_a_floor_usefulness_is_inconclusive(results) -> None:
    res = _edited(results[1], "usefulness", "usefulness", lambda row: 0.0)
    rows = evaluate_claims(res, REF).set_index("claim_id")
    assert rows.loc["E1-usefulness", "verdict"] == INCONCLUSIVE
    assert rows.loc["E1-usefulness", "reason"].startswith("floor")
    assert rows.loc["E5-usefulness-1B", "verdict"] == INCONCLUSIVE
    flagged = _edited(results[1], "usefulness", "floor", lambda row: 1.0)
    row = evaluate_claims(flagged, REF).set_index("claim_id").loc["E1-usefulness"]
    assert row["verdict"] == INCONCLUSIVE and "ceiling" in row["reason"]


def test_seeds_are_points_of_the_trend_and_pairs_use_a_t_test(results) -> None:
    claims = evaluate_claims(results[1], REF).set_index("claim_id")
    assert claims.loc["E4-variance", "n_seeds"] == 2 and "n = 6" in claims.loc["E4-variance", "test"]
    assert "seeds" in claims.loc["E4-mqa-vs-mha", "test"]  # synthetic seeds agree exactly: no t statistic
    assert "z-test" in claims.loc["E5-variance-400M", "test"]  # one seed: the step-bootstrap interval


def test_variance_is_compared_after_warm_up(results, monkeypatch) -> None:
    """Runs that end inside their warm-up are left out (E3: step 11 of a 12-step warm-up at mini)."""
    import sparsecod.plots.claims as claims_module

    long = {"seq-4096", "seq-8192"}
    monkeypatch.setattr(claims_module, "_warmup", lambda res, run: 10_000 if run in long else 4)
    row = evaluate_claims(results[1], REF).set_index("claim_id").loc["E3-variance"]
    assert "left out (end inside warm-up): seq-4096, seq-8192" in row["detail"] and row["n_runs"] == 4
    monkeypatch.setattr(claims_module, "_warmup", lambda res, run: 10_000)
    row = evaluate_claims(results[1], REF).set_index("claim_id").loc["E3-variance"]
    assert row["verdict"] == INCONCLUSIVE and "warm-up" in row["reason"]
