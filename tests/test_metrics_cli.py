"""`sparsecod analyze` end to end on a saved tiny model and a hand-written shard directory (issue 4)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from _metrics_testutil import DENSE, VOCAB, one_thread, tiny_model  # noqa: F401
from sparsecod.cli import main
from sparsecod.config import RunConfig, TrainConfig
from sparsecod.model import save_model

SETTINGS = {"window": 16, "samples": 6, "jacobian_samples": 2, "attention_lengths": [8, 16], "attention_samples": 2,
            "ppl_tokens": 512, "jacobian_chunk": 16, "batch_tokens": 48}
ALL = ["weight_sparsity", "perplexity", "kurtosis", "jacobian", "causal", "permutation", "usefulness", "attention"]
INIT = ["weight_sparsity", "causal", "permutation", "usefulness", "attention"]  # the untrained control's families


def write_shard(directory: Path, n: int = 3000, vocab: int = VOCAB) -> Path:
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        rng.integers(0, vocab, n).astype(np.uint16).tofile(directory / f"{split}.bin")
    meta = {"dtype": "uint16", "eos_id": vocab - 1, "vocab_size": vocab, "tokenizer_sha256": "0" * 64,
            "splits": {"train": {"tokens": n}, "heldout": {"tokens": n}}, "source": {"kind": "test"}}
    (directory / "meta.json").write_text(json.dumps(meta))
    return directory


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    shard = write_shard(tmp_path / "shard")
    run = tmp_path / "runs" / "tiny"
    save_model(tiny_model(DENSE), run / "model")
    train = TrainConfig(seq_len=32, global_batch=4, micro_batch=4, steps=4, warmup_steps=1)
    RunConfig("tiny", DENSE, train, str(shard), meta={"group": "gqa", "aliases": ["tiny-alias"]}).save(run / "run.yaml")
    return run


def test_all_metrics_end_to_end(run_dir: Path) -> None:
    suite = run_dir / "analysis" / "suite.json"
    rc = main(["analyze", str(run_dir), "--metric", "all", "--settings-json", json.dumps(SETTINGS),
               "--suite-out", str(suite), "--no-progress"])  # --heldout defaults to run.yaml's data
    assert rc == 0
    out = run_dir / "analysis"
    assert json.loads(suite.read_text())["metrics"] == ALL + [f"{m}@init" for m in INIT]
    for name in ALL:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["metric"] == name and doc["run_id"] == "tiny" and doc["precision"] == "fp32"
        assert doc["settings"]["window"] == 16
        assert (out / f"{name}.parquet").is_file() == (name != "perplexity")
    assert json.loads((out / "perplexity.json").read_text())["seq_len"] == 32, "the run's T from run.yaml"
    assert json.loads((out / "perplexity.json").read_text())["n_windows"] == 512 // 32
    jac = json.loads((out / "jacobian.json").read_text())
    assert jac["matrix_layers"] == [1, 2, 3] and jac["n_windows"] == 2
    assert np.load(out / jac["files"]["layer02"]).shape == (32, 32)
    assert len(pd.read_parquet(out / "causal.parquet")) == 6
    att = json.loads((out / "attention.json").read_text())
    assert set(att["sparsity"]) == {"8", "16"}
    assert not list(out.glob(".*")), "no temporary files left behind"
    for name, key in (("causal", "causal_global"), ("permutation", "permutation_global"), ("usefulness", "usefulness")):
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["weights"] == "trained" and doc["ci"][key]["low"] <= doc[key] <= doc["ci"][key]["high"]
    assert set(att["ci"]["sparsity"]["16"]) == set(att["sparsity"]["16"])
    assert sorted(p.stem for p in (out / "init").glob("*.json")) == sorted(INIT)
    init = json.loads((out / "init" / "causal.json").read_text())
    assert init["weights"] == "init (step 0)" and init["n_windows"] == 6 and "ci" in init
    assert init["causal_global"] != json.loads((out / "causal.json").read_text())["causal_global"]


def test_the_untrained_control_is_the_training_init(run_dir: Path) -> None:
    from sparsecod.metrics.runner import Analysis
    from sparsecod.metrics.settings import AnalysisSettings
    from sparsecod.train.module import LMTrainModule

    run = RunConfig.load(run_dir / "run.yaml")
    ctx = Analysis(run_dir, AnalysisSettings(**SETTINGS), device="cpu", progress=False)
    ctx.use_init_weights()
    start = LMTrainModule(run).model.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in ctx.model.state_dict().items())


def test_no_control_when_switched_off(run_dir: Path) -> None:
    rc = main(["analyze", str(run_dir), "--metric", "causal", "--no-progress",
               "--settings-json", json.dumps({**SETTINGS, "init_control": False, "bootstrap_resamples": 0})])
    assert rc == 0 and not (run_dir / "analysis" / "init").exists()
    assert "ci" not in json.loads((run_dir / "analysis" / "causal.json").read_text())


def test_all_follows_the_workflow_config_and_its_aliases(run_dir: Path, tmp_path: Path) -> None:
    config = {
        "analysis": {"one_job_per_run": True, **SETTINGS},
        "groups": {"seqlen": {"runs": {"other": {}}, "analyses": ["attention"]},
                   "gqa": {"runs": {"tiny-alias": {}}, "analyses": ["causal", "permutation"]}},
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(config))
    shard = tmp_path / "shard"
    rc = main(["analyze", str(run_dir), "--metric", "all", "--config", str(path), "--heldout", str(shard),
               "--no-progress"])
    assert rc == 0
    assert sorted(p.stem for p in (run_dir / "analysis").glob("*.json")) == ["causal", "permutation"]


def test_clear_errors(run_dir: Path, tmp_path: Path, capsys) -> None:
    args = ["analyze", str(run_dir), "--settings-json", json.dumps(SETTINGS), "--no-progress"]
    assert main([*args, "--metric", "causal,entropy"]) == 2
    assert "unknown metric(s) ['entropy']" in capsys.readouterr().err
    big = write_shard(tmp_path / "big", vocab=1000)
    assert main([*args, "--metric", "causal", "--heldout", str(big)]) == 2
    assert "vocab_size 1000" in capsys.readouterr().err
    assert main(["analyze", str(run_dir), "--metric", "causal", "--settings-json", '{"samples": 1000}']) == 2
    assert "analysis.samples" in capsys.readouterr().err
    (run_dir / "model" / "tokenizer.json").write_text("{}")  # not the shard's tokenizer (sha256 0…0)
    assert main([*args, "--metric", "causal"]) == 2
    assert "differs from the tokenizer of the held-out shard" in capsys.readouterr().err
    assert not (run_dir / "analysis").exists()


@pytest.mark.integration
def test_module_entry_point(run_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sparsecod", "analyze", str(run_dir), "--metric", "weight_sparsity,perplexity",
         "--settings-json", json.dumps(SETTINGS), "--bf16", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((run_dir / "analysis" / "perplexity.json").read_text())
    assert doc["precision"] == "bf16" and 1 < doc["ppl"] < 2 * VOCAB


def test_one_definition_of_the_metric_names() -> None:
    """metrics.registry names the families; the config schema's `analyses` enum, the external checkpoints'
    analyses, the CLI help and the workflow's `metric` wildcard agree with it."""
    from sparsecod.cli import build_parser
    from sparsecod.external import EXTERNAL_ANALYSES
    from sparsecod.metrics.registry import INIT_METRICS, METRICS, REGISTRY

    root = Path(__file__).resolve().parents[1]
    assert list(METRICS) == ALL and list(INIT_METRICS) == INIT
    schema = yaml.safe_load((root / "workflow" / "schemas" / "config.schema.yaml").read_text())
    enums = []

    def find(node):
        if isinstance(node, dict):
            if "analyses" in node and isinstance(node["analyses"], dict):
                enums.append(node["analyses"]["items"]["enum"])
            for value in node.values():
                find(value)
        elif isinstance(node, list):
            for value in node:
                find(value)

    find(schema)
    assert enums and all(sorted(e) == sorted(METRICS) for e in enums), enums
    assert set(EXTERNAL_ANALYSES) <= set(METRICS)
    sub = build_parser()._subparsers._group_actions[0].choices["analyze"]
    assert all(f"{name} ({spec.protocol})" in " ".join(sub.description.split()) for name, spec in REGISTRY.items())
    assert 'metric="|".join(METRICS)' in (root / "workflow" / "rules" / "common.smk").read_text()
