"""Stock lm-eval tasks on the real offline ARC/HellaSwag/MMLU data through the `sparsecod` adapter (issue 5, M12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from _eval_testutil import EVAL_DATA, GQA, needs_eval_data, needs_neox, save_run
from sparsecod.evaluation.tasks import hf_offline, write_offline_groups

pytestmark = [needs_neox, needs_eval_data]


def test_simple_evaluate_offline_arc_easy_hellaswag(tmp_path) -> None:
    model_dir = save_run(tmp_path / "run", GQA, seq_len=64)
    groups = write_offline_groups(["arc_easy", "hellaswag"], EVAL_DATA, tmp_path / "inc")
    with hf_offline():
        import lm_eval
        from lm_eval.tasks import TaskManager

        import sparsecod.evaluation.adapter  # noqa: F401  registers "sparsecod"

        results = lm_eval.simple_evaluate(
            model="sparsecod", model_args={"checkpoint": str(model_dir), "progress": False}, tasks=groups,
            num_fewshot=0, limit=20, batch_size=16, task_manager=TaskManager(include_path=str(tmp_path / "inc")),
        )
    for task, docs in (("arc_easy", 2376), ("hellaswag", 10042)):  # ARC scored on test, HellaSwag on validation
        res = results["results"][task]
        for metric in ("acc", "acc_norm"):
            assert 0.0 <= res[f"{metric},none"] <= 1.0
            assert res[f"{metric}_stderr,none"] > 0
        assert results["n-samples"][task] == {"original": docs, "effective": 20}
        assert results["n-shot"][task] == 0
    # per-document check of the harness's bookkeeping: acc is the argmax over the choices' log-likelihoods
    samples = results["samples"]["arc_easy"]
    assert len(samples) == 20
    for s in samples:
        lls = [r[0] for r in s["filtered_resps"]]
        assert s["acc"] == float(max(range(len(lls)), key=lls.__getitem__) == s["target"])


@pytest.mark.integration
def test_cli_evaluate_end_to_end(tmp_path) -> None:
    run = tmp_path / "run"
    save_run(run, GQA, seq_len=64)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "SPARSECOD_EVAL_DATA"}
    env["HF_HOME"] = str(tmp_path / "hf")  # nothing may be read from or written to a user cache
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecod", "evaluate", str(run), "--tasks", "arc_easy,arc_challenge",
         "hellaswag", "mmlu", "--limit", "2", "--eval-data", str(EVAL_DATA), "--batch-size", "8", "--log-samples",
         "--no-progress"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    elapsed = time.monotonic() - start
    table = pd.read_csv(run / "eval" / "downstream.csv")
    assert list(table.columns) == ["task", "metric", "value", "stderr", "n"]
    assert table.set_index("task")["metric"].to_dict() == {
        "arc_easy": "acc_norm", "arc_challenge": "acc_norm", "hellaswag": "acc_norm", "mmlu": "acc"}
    assert table.set_index("task")["n"].to_dict() == {"arc_easy": 2, "arc_challenge": 2, "hellaswag": 2,
                                                      "mmlu": 57 * 2}
    assert table["value"].between(0, 100).all()
    results = json.loads((run / "eval" / "lm_eval.json").read_text())
    for task, row in table.set_index("task").iterrows():
        assert row["value"] == pytest.approx(100 * results["results"][task][f"{row['metric']},none"])
    assert "mmlu_stem" in results["results"] and not any(k.startswith("sparsecod_offline") for k in results["results"])
    assert results["config"]["model_args"]["max_length"] == 64  # the run's training T
    assert results["sparsecod"]["data_dir"] == str(EVAL_DATA.resolve())
    samples = run / "eval" / "samples"
    assert (samples / "arc_easy.jsonl").is_file() and (samples / "mmlu_anatomy.jsonl").is_file()
    assert len((samples / "hellaswag.jsonl").read_text().splitlines()) == 2
    assert "acc_norm" in proc.stdout
    assert not list((run / "eval").glob(".lm_eval_tasks.*"))  # the generated include dir is cleaned up
    print(f"sparsecod evaluate (4 tasks, limit 2): {elapsed:.1f} s")


@pytest.mark.integration
def test_stock_lm_eval_cli_sees_the_adapter(tmp_path) -> None:
    model_dir = save_run(tmp_path / "run", GQA, seq_len=64)
    groups = write_offline_groups(["arc_challenge"], EVAL_DATA, tmp_path / "inc")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecod.evaluation.lm_eval_cli", "--model", "sparsecod", "--model_args",
         f"checkpoint={model_dir},progress=false", "--batch_size", "4", "--tasks", groups[0], "--include_path",
         str(tmp_path / "inc"), "--limit", "3", "--output_path", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "arc_challenge" in proc.stdout and "acc_norm" in proc.stdout
    (result_file,) = (tmp_path / "out").rglob("results_*.json")
    assert json.loads(result_file.read_text())["n-samples"]["arc_challenge"]["effective"] == 3
