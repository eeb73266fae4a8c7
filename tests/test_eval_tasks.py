"""Offline task configuration and the offline guard of `sparsecod evaluate` (issue 5, protocol M12)."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from _eval_testutil import GQA, needs_neox, save_run
from sparsecod.cli import main
from sparsecod.data.network import OfflineError
from sparsecod.evaluation.downstream import evaluate_run, parse_tasks
from sparsecod.evaluation.tasks import hf_offline, resolve_data_dir, write_offline_groups


@pytest.fixture
def data_dir(tmp_path):
    root = tmp_path / "data"
    for sub in ("ai2_arc", "hellaswag", "hails/mmlu_no_train"):
        (root / sub).mkdir(parents=True)
    return root


def test_group_yaml_overrides_only_the_data(data_dir, tmp_path) -> None:
    inc = tmp_path / "inc"
    groups = write_offline_groups(["arc_easy", "hellaswag", "mmlu", "mmlu_anatomy"], data_dir, inc)
    assert groups == ["sparsecod_offline_arc_easy", "sparsecod_offline_hellaswag", "sparsecod_offline_mmlu",
                      "sparsecod_offline_mmlu_anatomy"]
    docs = {g: yaml.safe_load((inc / f"{g}.yaml").read_text()) for g in groups}
    assert docs["sparsecod_offline_arc_easy"] == {
        "group": "sparsecod_offline_arc_easy",
        "task": [{"task": "arc_easy", "dataset_path": str(data_dir / "ai2_arc"), "training_split": None}],
    }
    assert docs["sparsecod_offline_hellaswag"]["task"][0]["dataset_path"] == str(data_dir / "hellaswag")
    # mmlu stays the registered group (size-weighted aggregate and subgroups), only its data moves
    assert docs["sparsecod_offline_mmlu"]["task"] == [{"group": "mmlu",
                                                       "dataset_path": str(data_dir / "hails/mmlu_no_train")}]
    assert docs["sparsecod_offline_mmlu_anatomy"]["task"][0]["task"] == "mmlu_anatomy"


def test_hub_id_folder_preferred_and_missing_folder(data_dir, tmp_path) -> None:
    (data_dir / "allenai/ai2_arc").mkdir(parents=True)
    write_offline_groups(["arc_challenge"], data_dir, tmp_path / "inc")
    doc = yaml.safe_load((tmp_path / "inc/sparsecod_offline_arc_challenge.yaml").read_text())
    assert doc["task"][0]["dataset_path"] == str(data_dir / "allenai/ai2_arc")
    (data_dir / "hellaswag").rmdir()
    with pytest.raises(FileNotFoundError, match="Rowan/hellaswag.*hellaswag"):
        write_offline_groups(["hellaswag"], data_dir, tmp_path / "inc2")


def test_unknown_task_with_local_data(data_dir, tmp_path) -> None:
    with pytest.raises(ValueError, match="piqa.*evaluation.data_dir"):
        write_offline_groups(["arc_easy", "piqa"], data_dir, tmp_path / "inc")


def test_resolve_data_dir(data_dir, monkeypatch) -> None:
    monkeypatch.delenv("SPARSECOD_EVAL_DATA", raising=False)
    assert resolve_data_dir(None) is None
    monkeypatch.setenv("SPARSECOD_EVAL_DATA", str(data_dir))
    assert resolve_data_dir(None) == data_dir.resolve()
    with pytest.raises(FileNotFoundError, match="evaluation.data_dir"):
        resolve_data_dir(data_dir / "nope")


def test_parse_tasks() -> None:
    assert parse_tasks(None) == ["mmlu", "arc_easy", "arc_challenge", "hellaswag"]
    assert parse_tasks(["arc_easy,hellaswag", "mmlu", "arc_easy"]) == ["arc_easy", "hellaswag", "mmlu"]
    with pytest.raises(ValueError):
        parse_tasks(" , ")


def test_hf_offline_sets_and_restores(monkeypatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    before = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    with hf_offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert datasets.config.HF_HUB_OFFLINE is True and huggingface_hub.constants.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE) == before


@needs_neox
def test_offline_without_local_data_fails_at_once(tmp_path, monkeypatch, capsys) -> None:
    run = tmp_path / "run"
    save_run(run, GQA)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SPARSECOD_EVAL_DATA", raising=False)
    start = time.monotonic()
    with pytest.raises(OfflineError, match=r"HF_HUB_OFFLINE=1.*evaluation\.data_dir.*--eval-data"):
        evaluate_run(run, ["arc_easy"])
    assert time.monotonic() - start < 5
    assert not (run / "eval" / "lm_eval.json").exists()
    assert main(["evaluate", str(run), "--tasks", "arc_easy"]) == 2
    assert "evaluation.data_dir" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["evaluate", str(tmp_path), "--eval-data", str(tmp_path)]) == 2
    assert "train the run first" in capsys.readouterr().err
