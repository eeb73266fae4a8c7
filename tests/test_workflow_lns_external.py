"""Workflow targets of issue 19: group `lns` (E1 with LayerNorm Scaling) and `external:` checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from test_workflow import job_counts, snakemake

transformers = pytest.importorskip("transformers")

LNS_RUNS = {f"lns-L{L}" for L in (12, 16, 24, 32)}


def _trained(stdout: str) -> set[str]:
    return set(re.findall(r"rule train:\n(?:.*\n)*?\s+wildcards: run=([^,\s]+)", stdout))


def test_paper_lns_target_plans_only_the_lns_sweep(tmp_path: Path) -> None:
    result = snakemake("-n", "lns", "--config", f"results={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    points = {f"lns-L{L}@lr{lr}" for L in (16, 32) for lr in ("3e-4", "6e-4", "1e-3", "2e-3")}
    assert _trained(result.stdout) == LNS_RUNS | points  # E1's Pre-LN runs are shared, not retrained here
    counts = job_counts(result.stdout)
    assert counts["analyze"] == 4 * 5 and counts["evaluate"] == 4 and counts["select_lr"] == 2


def test_smoke_lns_adds_four_trainings_and_renders(tmp_path: Path) -> None:
    result = snakemake("-n", "lns", "figX1", "tableX1", "claimsX", "--configfile", "config/smoke.yaml",
                       "--config", f"results={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    trained = _trained(result.stdout)
    assert LNS_RUNS <= trained and {f"depth-L{L}" for L in (12, 16, 24, 32)} <= trained  # figX1 shows both arms
    assert not any(r.startswith("lns-") and "@lr" in r for r in trained)  # smoke borrows E1's LR winners
    counts = job_counts(result.stdout)
    assert counts["analyze_run"] == 8 and counts["collect_group"] == 2
    assert counts["figX1"] == counts["tableX1"] == counts["claimsX"] == 1


def _checkpoint(path: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers

    cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    vocab = {chr(c): i for i, c in enumerate(range(32, 127))} | {"<|endoftext|>": 95}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.save(str(path / "tokenizer.json"))
    return path


def test_external_target_plans_heldout_and_analysis(tmp_path: Path) -> None:
    ckpt = _checkpoint(tmp_path / "tiny-llama")
    result = snakemake("-n", "external", "--configfile", "config/smoke.yaml", "--config",
                       f"results={tmp_path / 'r'}", f"external={json.dumps({'tiny': str(ckpt)})}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_counts(result.stdout) == {"external_heldout": 1, "analyze_external": 1, "external": 1}
    assert f"{tmp_path / 'r'}/external/tiny/figures/layers.png" in result.stdout
    bad = snakemake("-n", "external", "--config", f"results={tmp_path / 'r'}",
                    f"external={json.dumps({'tiny': str(tmp_path / 'missing')})}")
    assert bad.returncode != 0 and "external.tiny=" in bad.stdout + bad.stderr


@pytest.mark.integration
def test_external_target_runs_end_to_end(tmp_path: Path) -> None:
    """`snakemake external` at smoke scale on a random Llama checkpoint: held-out shard, import, metrics, figure."""
    ckpt = _checkpoint(tmp_path / "tiny-llama")
    results = tmp_path / "r"
    run = snakemake("--profile", "local", "external", "--configfile", "config/smoke.yaml", "--config",
                    f"results={results}", f"external={json.dumps({'tiny': str(ckpt)})}", timeout=20 * 60)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    out = results / "external" / "tiny"
    suite = json.loads((out / "analysis" / "suite.json").read_text())
    assert set(suite["metrics"]) == {"jacobian", "causal", "permutation", "usefulness", "kurtosis", "perplexity"}
    assert (out / "figures" / "layers.png").stat().st_size > 2000
    assert json.loads((out / "heldout" / "meta.json").read_text())["tokenizer"] == str(ckpt / "tokenizer.json")
