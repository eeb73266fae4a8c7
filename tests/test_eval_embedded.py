"""The embedded multiple-choice task pydoc_cont4 (issue 15, protocol M12): built from held-out documents only,
deterministic from its seed, an lm-eval task that `sparsecod evaluate` scores offline beside the stock ones."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import pytest
import yaml

from _data_testutil import synthetic_docs
from _eval_testutil import EVAL_DATA, needs_eval_data
from sparsecod.data.corpus import is_heldout
from sparsecod.evaluation import embedded
from sparsecod.evaluation.embedded import CHANCE, CHOICES, TASK, EvalSetSpec, build_eval_set, build_items

PAPER_TASKS = {"mmlu", "arc_easy", "arc_challenge", "hellaswag"}
SPEC = EvalSetSpec(items=120, context_chars=160, min_context_chars=60, continuation_words=5, stride_chars=90,
                   heldout_fraction=0.3)


def _docs(n: int = 60, seed: int = 1) -> list[str]:
    """Documents of several paragraphs, long enough for a few cuts each."""
    return ["\n\n".join(synthetic_docs(4, seed=seed * 1000 + i)) for i in range(n)]


def test_items_follow_their_passage_and_distractors_come_from_other_documents() -> None:
    docs = _docs(12)
    items = build_items(docs, SPEC)
    assert 0 < len(items) <= SPEC.items and [i["id"] for i in items] == list(range(len(items)))
    for item in items:
        assert len(item["choices"]) == CHOICES == len(set(item["choices"]))
        answer = item["choices"][item["label"]]
        source = docs[item["doc"]]
        assert item["context"] + " " + answer in source  # the true continuation, right after the passage
        assert len(answer.split()) == SPEC.continuation_words
        for k, choice in enumerate(item["choices"]):
            if k != item["label"]:
                assert any(choice in d for j, d in enumerate(docs) if j != item["doc"])
    assert len({i["doc"] for i in items}) == len(docs)  # round-robin: every document contributes answers
    assert set(Counter(i["label"] for i in items)) == set(range(CHOICES))


def test_items_are_a_function_of_the_seed() -> None:
    docs = _docs(12)
    assert build_items(docs, SPEC) == build_items(docs, SPEC)
    assert build_items(docs, SPEC) != build_items(docs, replace(SPEC, seed=SPEC.seed + 1))


def test_too_few_documents_name_the_fix() -> None:
    with pytest.raises(ValueError, match="data.heldout_fraction"):
        build_items(_docs(2), SPEC)


def test_eval_set_uses_held_out_documents_only(tmp_path, monkeypatch) -> None:
    docs = _docs(60)
    monkeypatch.setattr("sparsecod.data.builtin.iter_builtin_documents", lambda workers=1: iter(docs))
    meta = build_eval_set(tmp_path / "set", SPEC)
    heldout = [d for d in docs if is_heldout(d, SPEC.heldout_fraction)]
    train = [d for d in docs if not is_heldout(d, SPEC.heldout_fraction)]
    assert 4 <= len(heldout) < len(docs) and meta["heldout_documents"] == len(heldout)
    items = [json.loads(line) for line in (tmp_path / "set" / "test.jsonl").read_text().splitlines()]
    assert len(items) == meta["items"] > 0
    for item in items:
        for choice in item["choices"]:
            assert any(choice in d for d in heldout)
        passage = item["context"] + " " + item["choices"][item["label"]]
        assert passage in heldout[item["doc"]] and not any(passage in d for d in train)
    assert meta["chance"] == CHANCE == 0.25 and meta["task"] == TASK


def test_task_yaml_is_lm_evals_own_multiple_choice_format(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("sparsecod.data.builtin.iter_builtin_documents", lambda workers=1: iter(_docs(60)))
    build_eval_set(tmp_path, SPEC)
    doc = yaml.safe_load((tmp_path / embedded.YAML_NAME).read_text())
    assert doc["task"] == TASK and TASK not in PAPER_TASKS and not TASK.startswith(("arc", "mmlu", "hellaswag"))
    assert doc["output_type"] == "multiple_choice"
    assert [m["metric"] for m in doc["metric_list"]] == ["acc", "acc_norm"]
    assert doc["dataset_kwargs"]["data_files"]["test"] == str((tmp_path / "test.jsonl").resolve())
    from lm_eval.tasks import TaskManager

    task = TaskManager(include_path=str(tmp_path)).load_task_or_group([TASK])[TASK]
    first = json.loads((tmp_path / "test.jsonl").read_text().splitlines()[0])
    lm_doc = next(iter(task.test_docs()))
    assert task.doc_to_text(lm_doc) == first["context"] and task.doc_to_choice(lm_doc) == first["choices"]
    assert task.doc_to_target(lm_doc) == first["label"]


def _tiny_run(tmp_path, docs):
    """The eval set of `docs` under tmp_path/set and a tiny random model with its own small BPE (no download)."""
    from sparsecod.data.tokenizer import load_tokenizer, train_bpe, vocab_size
    from sparsecod.model import ModelConfig, Transformer, save_model

    build_eval_set(tmp_path / "set", SPEC)
    tok = train_bpe(docs, 300, cache_dir=tmp_path / "cache")
    cfg = ModelConfig(n_layers=2, d_model=32, n_heads=4, n_kv_heads=4, d_ff=64,
                      vocab_size=vocab_size(load_tokenizer(tok)))
    save_model(Transformer(cfg).eval(), tmp_path / "run" / "model", tokenizer_file=tok)


def test_evaluate_scores_the_embedded_task_offline(tmp_path, monkeypatch) -> None:
    """A tiny random model through `evaluate_run`: pydoc_cont4 scored with its own limit, results under its own
    name, acc and acc_norm both reported."""
    import pandas as pd

    from sparsecod.evaluation.downstream import evaluate_run

    docs = _docs(60)
    monkeypatch.setattr("sparsecod.data.builtin.iter_builtin_documents", lambda workers=1: iter(docs))
    _tiny_run(tmp_path, docs)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="sparsecod eval-set"):
        evaluate_run(tmp_path / "run", [TASK], max_length=128, progress=False)
    table = evaluate_run(tmp_path / "run", [TASK], task_dir=tmp_path / "set", embedded_limit=30, limit=2,
                         max_length=128, progress=False, batch_size=16)
    assert table.to_dict("records")[0] | {"value": 0, "stderr": 0} == {"task": TASK, "metric": "acc_norm",
                                                                       "value": 0, "stderr": 0, "n": 30}
    results = json.loads((tmp_path / "run" / "eval" / "lm_eval.json").read_text())
    assert {"acc,none", "acc_norm,none"} <= set(results["results"][TASK])
    assert results["sparsecod"]["embedded_limit"] == 30 and results["sparsecod"]["task_dir"]
    assert pd.read_csv(tmp_path / "run" / "eval" / "downstream.csv")["task"].tolist() == [TASK]


@needs_eval_data
def test_embedded_and_stock_tasks_in_one_evaluation(tmp_path, monkeypatch) -> None:
    """pydoc_cont4 beside a stock task on the local copies: one lm_eval.json and downstream.csv holding both, each
    with its own limit."""
    import pandas as pd

    from sparsecod.evaluation.downstream import evaluate_run

    docs = _docs(60)
    monkeypatch.setattr("sparsecod.data.builtin.iter_builtin_documents", lambda workers=1: iter(docs))
    _tiny_run(tmp_path, docs)
    evaluate_run(tmp_path / "run", [TASK, "arc_easy"], task_dir=tmp_path / "set", embedded_limit=5, limit=3,
                 data_dir=EVAL_DATA, max_length=128, progress=False)
    table = pd.read_csv(tmp_path / "run" / "eval" / "downstream.csv")
    assert table[["task", "n"]].values.tolist() == [[TASK, 5], ["arc_easy", 3]]
    results = json.loads((tmp_path / "run" / "eval" / "lm_eval.json").read_text())
    assert set(results["results"]) == {TASK, "arc_easy"} and set(results["n-samples"]) == {TASK, "arc_easy"}
    assert results["config"]["model"] == "sparsecod"
