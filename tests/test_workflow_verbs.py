"""Issue 17.7: every rule calls a `sparsecod` verb under `shell:` (no `run:` blocks), so `conda:` environments apply
to all of them; the verbs that need the run registry (run-config, select-lr, collect) read the workflow config
from --workflow-config or from $SPARSECOD_WORKFLOW_CONFIG, which the workflow sets."""

from __future__ import annotations

import ast
import json
import os
import re
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sparsecod.cli import main
from sparsecod.experiments import WORKFLOW_CONFIG_ENV, load_config, load_registry

from test_workflow import ROOT, job_counts, snakemake

SMOKE = ROOT / "config" / "smoke.yaml"
RULE_FILES = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]


def test_no_rule_has_a_run_block_and_every_shell_rule_a_conda_env() -> None:
    for path in RULE_FILES:
        text = path.read_text()
        assert not re.search(r"^\s+run:\s*$", text, re.M), f"{path.name} has a run: block"
        for rule in re.split(r"^\s*rule\b", text, flags=re.M)[1:]:
            if "shell:" in rule:
                env = re.search(r'conda:\s*\n\s*"([^"]+)"', rule)
                assert env, f"{path.name}: a shell rule without conda: {rule[:80]!r}"
                assert (path.parent / env.group(1)).resolve().is_file(), env.group(1)
                assert env.group(1).startswith("../envs/"), env.group(1)


def test_env_headers_cite_tests_that_exist() -> None:
    """Every `tests/<file>.py[::test]` an environment file's header names exists."""
    envs = sorted((ROOT / "workflow" / "envs").glob("*.yaml"))
    assert [p.name for p in envs] == ["analysis.yaml", "train.yaml"]
    for env in envs:
        cited = re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", env.read_text())
        assert cited, f"{env.name} cites no test"
        for file, test in cited:
            tree = ast.parse((ROOT / file).read_text())
            assert not test or test in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, (env, test)


def _fake(path: Path, text: str = "{}") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    time.sleep(0.02)  # strictly increasing mtimes: upstream files older than downstream ones


def test_run_config_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    config = {**load_config(SMOKE), "results": str(tmp_path / "results")}
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    reg = load_registry(cfg_file)
    _fake(reg.data_dir() / "meta.json", '{"vocab_size": 2048}')
    _fake(reg.sweep_file("depth-shallow"), '{"best_lr": 0.01}')
    assert main(["run-config", "depth-L16", "--out", str(tmp_path / "a.yaml"), "--workflow-config", str(cfg_file)]) == 0
    monkeypatch.setenv(WORKFLOW_CONFIG_ENV, json.dumps(config))
    assert main(["run-config", "depth-L16", "--out", str(tmp_path / "b.yaml"), "--log", str(tmp_path / "l")]) == 0
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text()
    run = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert run["train"]["lr"] == 0.01 and run["model"]["vocab_size"] == 2048
    assert "lr=0.01" in (tmp_path / "l").read_text()


def test_registry_verbs_without_a_config_fail_in_one_line(monkeypatch, capsys) -> None:
    monkeypatch.delenv(WORKFLOW_CONFIG_ENV, raising=False)
    assert main(["collect", "--out", "x.parquet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsecod collect: error: no workflow config: give --workflow-config") and err.count("\n") == 1


def test_select_lr_collect_and_merge(tmp_path, monkeypatch, capsys) -> None:
    config = {**load_config(SMOKE), "results": str(tmp_path / "results")}
    monkeypatch.setenv(WORKFLOW_CONFIG_ENV, json.dumps(config))
    reg = load_registry(SMOKE)
    sweep = reg.sweeps["L16-T4096"]
    files = []
    for point, loss in zip(sweep.points, (3.0, 2.5)):
        files.append(tmp_path / point / "summary.json")
        _fake(files[-1], json.dumps({"run_id": point, "final_val_loss": loss}))
    out = tmp_path / "sweep.json"
    assert main(["select-lr", "L16-T4096", *map(str, files), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["best_lr"] == sweep.grid[1]
    assert main(["select-lr", "L16-T4096", str(files[0]), "--out", str(out)]) == 2
    assert "has 2 grid points, got 1" in capsys.readouterr().err
    assert main(["collect", "--group", "nope", "--out", str(tmp_path / "x.parquet")]) == 2
    assert "--group nope: unknown" in capsys.readouterr().err

    runs = tmp_path / "results" / "runs"
    _fake(runs / "sub-L16" / "summary.json", json.dumps({"run_id": "sub-L16", "final_val_loss": 4.0}))
    parts = [tmp_path / f"{g}.parquet" for g in ("sublayer", "gqa")]
    for group, part in zip(("sublayer", "gqa"), parts):
        assert main(["collect", "--group", group, "--out", str(part)]) == 0
    assert main(["merge-summaries", *map(str, parts), "--out", str(tmp_path / "all.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "all.parquet")
    assert set(table.group) == {"sublayer", "gqa"}
    trained = table[(table.source == "run") & (table.metric == "trained")].set_index("run_id")["value"]
    assert trained["sub-L16"] == 1.0 and trained["sub-L32"] == 0.0
    assert table[(table.run_id == "sub-L16") & (table.metric == "final_val_loss")]["value"].tolist() == [4.0]


@pytest.mark.integration
def test_shell_rules_run_under_snakemake(tmp_path) -> None:
    """select_lr and collect_group run through the CLI under Snakemake with a --configfile and a --config override."""
    config = {**load_config(SMOKE), "results": str(tmp_path / "results")}
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(config))
    reg = load_registry(cfg_file)
    _fake(reg.data_dir() / "meta.json", '{"vocab_size": 2048}')
    sweep = reg.sweeps["L16-T4096"]

    def trained(run: str, loss: float) -> None:
        d = reg.run_dir(run)
        _fake(d / "run.yaml")
        _fake(d / "summary.json", json.dumps({"run_id": run, "final_val_loss": loss}))
        _fake(d / "model" / "config.json")

    for point, loss in zip(sweep.points, (2.0, 2.5)):
        trained(point, loss)
    target = str(reg.sweep_file(sweep.name))
    first = snakemake(target, "-c1", "--configfile", str(cfg_file))
    assert first.returncode == 0, first.stdout + first.stderr
    assert job_counts(first.stdout + first.stderr) == {"select_lr": 1}
    assert json.loads(Path(target).read_text())["best_lr"] == sweep.grid[0]

    for run in reg.group_runs["sublayer"]:
        trained(run, 4.0)
    summary = f"{reg.results}/summary/sublayer.parquet"
    second = snakemake(summary, "-c1", "--configfile", str(cfg_file), "--config", "scale=mini")
    assert second.returncode == 0, second.stdout + second.stderr
    assert job_counts(second.stdout + second.stderr) == {"collect_group": 1}
    table = pd.read_parquet(summary)
    assert set(table.run_id) == {"sub-L16", "sub-L32"} and set(table.scale) == {"mini"}
    assert os.environ.get(WORKFLOW_CONFIG_ENV) is None  # only the workflow's jobs see it
