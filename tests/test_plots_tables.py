"""Tables 1–8 (protocol §4): three formats, our values from the summary, the paper's from config/reference (§5)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from _plots_testutil import ROOT, make_results
from sparsecod.collect import collect
from sparsecod.plots.data import Results
from sparsecod.plots.inventory import TABLES
from sparsecod.plots.reference import load_reference
from sparsecod.plots.tables import build_table, latex_escape, parse_count, render_table

REF = ROOT / "config" / "reference"


@pytest.fixture(scope="module")
def res(tmp_path_factory) -> Results:
    root = tmp_path_factory.mktemp("tables") / "results"
    make_results(root, trend=1)
    return Results.load(root, [root / "summary.parquet"])


def _md_cells(line: str) -> list[str]:
    """The cells of one Markdown pipe-table line, stripped of their padding."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _csv(res: Results, name: str, out_dir) -> pd.DataFrame:
    paths = render_table(name, res, REF, out_dir)
    return pd.read_csv(paths[0], keep_default_na=True)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_renders_csv_markdown_and_booktabs(res, tmp_path, name) -> None:
    paths = render_table(name, res, REF, tmp_path)
    stem = TABLES[name].stems[0]
    assert [p.name for p in paths] == [f"{stem}.csv", f"{stem}.md", f"{stem}.tex"]
    table = pd.read_csv(paths[0])
    assert list(table["run_id"]) == list(res.runs(TABLES[name].groups[0])["run_id"])
    md = paths[1].read_text().splitlines()
    assert _md_cells(md[2])[:2] == ["run_id", "label"] and set(md[3]) <= set("|-:")
    assert all(cell.endswith(":") for cell, col in zip(_md_cells(md[3]), table.columns) if col.endswith("_paper"))
    assert len([line for line in md if line.startswith("| ")]) == len(table) + 1
    tex = paths[2].read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule", r"\begin{tabular}", r"\end{tabular}"):
        assert tex.count(rule) == 1, rule
    assert r"run\_id" in tex and "λ" not in tex
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    body = tex.split(r"\midrule")[1].split(r"\bottomrule")[0].strip().splitlines()
    assert len(body) == len(table) and all(row.endswith(r"\\") for row in body)


@pytest.mark.parametrize("name, group, key, ref_stem, ref_key", [
    ("table2", "weight_decay", "label_weight_decay", "table2_weight_decay", "weight_decay"),
    ("table3", "seqlen", "label_seq_len", "table3_seqlen", "seq_len"),
    ("table4", "gqa", "label_group_size", "table4_gqa", "group_size"),
    ("table5", "moe", "label", "table5_moe", "model"),
])
def test_score_tables_match_summary_and_reference(res, tmp_path, name, group, key, ref_stem, ref_key) -> None:
    table = _csv(res, name, tmp_path).set_index("run_id")
    ref = load_reference(REF, ref_stem)
    metrics = {"ppl": ("perplexity", "ppl"), "causal": ("causal", "causal_global"),
               "permutation": ("permutation", "permutation_global"), "usefulness": ("usefulness", "usefulness"),
               "effective_layers": ("usefulness", "effective_layers")}
    ref_cols = {"effective_layers": "effective_layers_of_16"}
    for run in res.runs(group).to_dict("records"):
        paper = ref[ref[ref_key] == (run[key] if group == "moe" else float(run[key]))].iloc[0]
        for col, (source, metric) in metrics.items():
            ours = float(np.mean(res.seed_values(run["run_id"], source, metric)))  # the mean over the run's seeds
            assert table.loc[run["run_id"], col] == pytest.approx(ours, rel=1e-12)
            assert table.loc[run["run_id"], f"{col}_paper"] == pytest.approx(float(paper[ref_cols.get(col, col)]))
            assert table.loc[run["run_id"], f"{col}_diff"] == pytest.approx(ours - float(paper[ref_cols.get(col, col)]))


def test_table1_depth_columns(res, tmp_path) -> None:
    table = _csv(res, "table1", tmp_path).set_index("run_id")
    assert table.loc["depth-L12", "params_paper"] == 9.0e8 and table.loc["depth-L32", "params_paper"] == 2.3e9
    assert table.loc["depth-L16", "params"] == res.value("depth-L16", "train", "params.non_embedding")
    for col, metric in (("mmlu_acc", "mmlu.acc"), ("arc_c_acc_norm", "arc_challenge.acc_norm"),
                        ("arc_e_acc_norm", "arc_easy.acc_norm"), ("hellaswag_acc_norm", "hellaswag.acc_norm")):
        assert table.loc["depth-L24", col] == pytest.approx(res.value("depth-L24", "eval", metric))
    ref = load_reference(REF, "table1_depth").set_index("depth")
    assert table.loc["depth-L16", "effective_layers_released"] == res.value("depth-L16", "usefulness",
                                                                           "effective_layers_transpose_bug")
    assert table.loc["depth-L16", "effective_layers_released"] == table.loc["depth-L16", "effective_layers"] + 1
    assert table.loc["depth-L16", "effective_layers_released_paper"] == ref.loc[16, "effective_layers"]
    assert table.loc["depth-L32", "wasted_layers_paper"] == ref.loc[32, "wasted_layers"]
    assert table.loc["depth-L32", "hellaswag_acc_norm_paper"] == pytest.approx(ref.loc[32, "hellaswag_acc_norm"])


def test_table3_keeps_the_paper_note_and_table4_reads_the_run_config(res, tmp_path) -> None:
    t3 = _csv(res, "table3", tmp_path).set_index("run_id")
    assert "typo" in t3.loc["seq-4096", "note"] and pd.isna(t3.loc["seq-256", "note"])
    t4 = _csv(res, "table4", tmp_path).set_index("run_id")
    for run in ("gqa-G1", "gqa-G4", "gqa-G16"):
        train = res.config(run)["train"]
        assert t4.loc[run, "kv_heads"] == res.config(run)["model"]["n_kv_heads"]
        assert t4.loc[run, "train_tokens"] == train["steps"] * train["global_batch"] * train["seq_len"]
    assert t4.loc["gqa-G4", "train_tokens_paper"] == 5.35e9 and t4.loc["gqa-G16", "params_paper"] == 1.051e9


@pytest.mark.parametrize("name, expected", [
    ("table6", {"depth-L12": "depth-L12", "depth-L32": "depth-L32"}),
    ("table7", {"dense-400M": "Dense-400M", "moe-2BA400M": "MoE-2BA400M", "dense-1B": "Dense-1B",
                "moe-7BA1B": "MoE-7BA1B"}),
    ("table8", {"abl-A0": "ablation-L16", "abl-A4": "ablation-L32", "abl-A8": "ablation-MoE-L32"}),
])
def test_config_tables_put_our_run_config_next_to_the_papers(res, tmp_path, name, expected) -> None:
    table = _csv(res, name, tmp_path).set_index("run_id")
    ref = load_reference(REF, "tables6-8_configs").set_index("model")
    for run, model in expected.items():
        cfg = res.config(run)["model"]
        row = table.loc[run]
        assert row["paper_model"] == model
        assert (row["depth"], row["hidden"], row["q_heads"], row["kv_heads"]) == (
            cfg["n_layers"], cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"])
        assert row["max_train_len"] == res.config(run)["train"]["seq_len"]
        assert row["mlp_inner"] == (cfg["moe"]["d_expert"] if cfg["moe"] else cfg["d_ff"])
        for col in ("depth", "hidden", "mlp_inner", "q_heads", "kv_heads", "max_train_len", "experts", "active"):
            paper = ref.loc[model, col]
            assert (pd.isna(row[f"{col}_paper"]) and pd.isna(paper)) or row[f"{col}_paper"] == paper, col
        assert row["params_non_embedding"] == res.value(run, "train", "params.non_embedding")
        assert row["params_active"] == res.value(run, "train", "params.active")
        assert pd.isna(row["experts"]) == (cfg["moe"] is None)


def test_missing_values_leave_empty_cells(res, tmp_path) -> None:
    no_eval = Results(res.dir, res.summary[res.summary["source"] != "eval"])
    t1 = build_table("table1", no_eval, REF)
    assert t1["mmlu_acc"].isna().all() and t1["mmlu_acc_diff"].isna().all() and t1["mmlu_acc_paper"].notna().all()
    no_files = Results(tmp_path / "elsewhere", res.summary)  # no run.yaml anywhere
    t8 = build_table("table8", no_files, REF)
    assert t8["depth"].isna().all() and (t8["depth_paper"] == 32).sum() == 8
    empty = Results(res.dir, res.summary.iloc[:0])
    for name in TABLES:
        paths = render_table(name, empty, REF, tmp_path / "empty")
        assert pd.read_csv(paths[0]).empty and r"\bottomrule" in paths[2].read_text()
    render_table("table1", no_eval, REF, tmp_path / "no_eval")
    md = (tmp_path / "no_eval" / "table1_depth.md").read_text().splitlines()
    assert "–" in {cell for line in md[4:] for cell in _md_cells(line)}


def test_helpers() -> None:
    assert latex_escape("a_b & 5% #1 λ=0.3 {x}") == r"a\_b \& 5\% \#1 $\lambda$=0.3 \{x\}"
    assert parse_count("900M") == 9e8 and parse_count("1.176B") == pytest.approx(1.176e9)
    assert parse_count(12) == 12.0 and math.isnan(parse_count("")) and math.isnan(parse_count(np.nan))


def test_a_run_that_never_finished_keeps_its_row(tmp_path) -> None:
    reg = make_results(tmp_path / "results", trend=1)
    shutil.rmtree(reg.run_dir("depth-L24"))
    summary = tmp_path / "depth.parquet"
    collect(reg, summary, groups=["depth"])
    table = build_table("table1", Results.load(reg.results, [summary]), REF)
    assert list(table["run_id"]) == reg.group_runs["depth"]
    row = table.set_index("run_id").loc["depth-L24"]
    assert pd.isna(row["ppl"]) and pd.isna(row["params"]) and row["ppl_paper"] > 0
    assert table.set_index("run_id").drop("depth-L24")["ppl"].notna().all()


def test_tables_show_each_value_with_its_interval(res, tmp_path) -> None:
    """Table 4 (gqa, 2 seeds in smoke): the t interval across seeds; Table 1 (1 seed): the window bootstrap."""
    t4 = _csv(res, "table4", tmp_path).set_index("run_id")
    values = res.seed_values("gqa-G4", "causal", "causal_global")
    assert len(values) == 2 and t4.loc["gqa-G4", "causal_low"] < np.mean(values) < t4.loc["gqa-G4", "causal_high"]
    t2 = _csv(res, "table2", tmp_path).set_index("run_id")
    assert t2.loc["wd-0.1", "causal_low"] == pytest.approx(res.value("wd-0.1", "causal", "ci.causal_global.low"))
    md = next(tmp_path.glob("table2_*.md")).read_text()
    assert f"[{t2.loc['wd-0.1', 'causal_low']:.3f}, " in md and "causal_low" not in md
    t1 = _csv(res, "table1", tmp_path).set_index("run_id")
    assert t1.loc["depth-L16", "usefulness_normalised"] == pytest.approx(
        res.value("depth-L16", "usefulness", "normalised_score")) and t1["ceiling_max"].notna().all()
