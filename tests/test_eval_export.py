"""`sparsecod export-hf` (issue 5, 17.6): a transformers-loadable LlamaForCausalLM (dense) or Qwen2MoeForCausalLM (MoE)
directory with identical logits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from _eval_testutil import GQA, MOE, NEOX, needs_neox, save_run
from sparsecod.cli import main
from sparsecod.evaluation.export_hf import ExportError, verify_export
from sparsecod.model import load_model

pytestmark = needs_neox
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    save_run(root / "run", GQA, seq_len=64)
    assert main(["export-hf", str(root / "run"), str(root / "hf")]) == 0
    return root


def test_config_and_files(exported) -> None:
    out = exported / "hf"
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    assert (cfg["rope_theta"], cfg["rms_norm_eps"], cfg["num_key_value_heads"], cfg["num_attention_heads"]) == (
        5000.0, 1e-6, 2, 4)
    assert cfg["vocab_size"] == 50304 and cfg["tie_word_embeddings"] is False
    assert cfg["attention_bias"] is False and cfg["mlp_bias"] is False
    assert cfg["max_position_embeddings"] == 64 and cfg["eos_token_id"] == 50279
    assert (out / "tokenizer.json").read_bytes() == NEOX.read_bytes()


def test_transformers_logits_equal_ours(exported) -> None:
    ours = load_model(exported / "run" / "model")
    hf = transformers.LlamaForCausalLM.from_pretrained(exported / "hf", dtype=torch.float32).eval()
    assert hf.config.rope_parameters["rope_theta"] == 5000.0 and hf.config.num_key_value_heads == 2
    idx = torch.randint(0, 50280, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ours(idx).logits
        got = hf(input_ids=idx).logits
    assert got.shape == want.shape == (2, 40, 50304)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert want.std() > 0.5  # not trivially small logits


def test_tokenizer_loads_with_autotokenizer(exported) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(exported / "hf")
    assert tok("Hello world")["input_ids"] == [12092, 1533]
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 50279
    assert tok.pad_token_id == 1 and tok.bos_token is None
    assert tok.decode([12092, 1533]) == "Hello world"


def test_export_does_not_import_transformers(exported, tmp_path) -> None:
    code = ("import sys; from sparsecod.evaluation.export_hf import export_hf; "
            f"export_hf({str(exported / 'run' / 'model')!r}, {str(tmp_path / 'hf')!r}); "
            "assert 'transformers' not in sys.modules, 'transformers was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "hf" / "model.safetensors").read_bytes() == (exported / "hf" / "model.safetensors").read_bytes()


@pytest.fixture(scope="module")
def exported_moe(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_moe")
    save_run(root / "run", MOE, seq_len=64)
    assert main(["export-hf", str(root / "run"), str(root / "hf"), "--verify"]) == 0
    return root


def test_moe_exports_to_qwen2_moe(exported_moe) -> None:
    """Issue 17.6: an MoE run loads with the stock AutoModelForCausalLM (Qwen2-MoE) and gives our logits."""
    cfg = json.loads((exported_moe / "hf" / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2MoeForCausalLM"] and cfg["norm_topk_prob"] is False
    assert (cfg["num_experts"], cfg["num_experts_per_tok"], cfg["moe_intermediate_size"],
            cfg["shared_expert_intermediate_size"], cfg["qkv_bias"]) == (4, 2, 16, 16, True)
    ours = load_model(exported_moe / "run" / "model")
    hf = transformers.AutoModelForCausalLM.from_pretrained(exported_moe / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == "Qwen2MoeForCausalLM"
    biases = [p for n, p in hf.named_parameters() if n.endswith("bias")]
    assert len(biases) == 3 * 2 and all((b == 0).all() for b in biases)  # q/k/v of 2 layers, written as zeros
    idx = torch.randint(0, 50280, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = ours(idx).logits
        got = hf(input_ids=idx).logits
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert want.std() > 0.5
    assert transformers.AutoTokenizer.from_pretrained(exported_moe / "hf")("Hello world")["input_ids"] == [12092, 1533]


def test_verify_reports_the_measured_difference(exported_moe, tmp_path) -> None:
    """An export that does not reproduce our logits fails --verify with the measured difference."""
    assert verify_export(exported_moe / "run", exported_moe / "hf") <= 1e-4
    broken = tmp_path / "hf"
    shutil.copytree(exported_moe / "hf", broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "norm_topk_prob": True}))
    with pytest.raises(ExportError, match=r"max \|logit difference\| [0-9.e+-]+ > 0.0001 \(fp32\)"):
        verify_export(exported_moe / "run", broken)
