"""Issue 2 parity: our dense model equals transformers.LlamaForCausalLM with the same weights and config; issue 17.6:
our MoE model equals transformers.Qwen2MoeForCausalLM (stock class, no remote code).

The weights go through the exporter's mapping (sparsecod.evaluation.export_hf: fused qkv split into q/k/v,
Llama / Qwen2-MoE names, mixing factors folded into the down projections) and are loaded with strict=True
(dense) or with no missing/unexpected keys (MoE, through from_pretrained), so a missing or extra parameter fails too.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from _eval_testutil import build_model
from sparsecod.evaluation.export_hf import llama_config, llama_state_dict, qwen2_moe_config, qwen2_moe_state_dict
from sparsecod.model import ModelConfig, MoEConfig

transformers = pytest.importorskip("transformers")

BASE = ModelConfig(n_layers=3, d_model=64, n_heads=8, n_kv_heads=8, d_ff=96, vocab_size=200, pad_vocab_to=64,
                   norm_eps=1e-6, rope_theta=10_000.0)
CONFIGS = {
    "mha": BASE,
    "gqa": BASE.replace(n_kv_heads=2, norm_eps=1e-5, rope_theta=500_000.0),
    "mqa": BASE.replace(n_kv_heads=1),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_equal_llama(name: str) -> None:
    cfg = CONFIGS[name]
    ours = build_model(cfg, seed=1)
    hf_cfg = transformers.LlamaConfig(**llama_config(cfg, eos_id=cfg.vocab_size - 1, pad_id=None, max_positions=128))
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    hf.load_state_dict(llama_state_dict(ours.state_dict(), cfg), strict=True)
    assert hf.config.num_key_value_heads == cfg.n_kv_heads and hf.config.rms_norm_eps == cfg.norm_eps
    idx = torch.randint(0, cfg.vocab_size, (3, 96), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ours(idx).logits
        got = hf(input_ids=idx).logits
    assert want.dtype == got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)


def test_parity_is_sensitive_to_rope_theta() -> None:
    """The comparison can fail: a wrong rope_theta in the HF config changes the logits beyond tolerance."""
    cfg = CONFIGS["gqa"]
    ours = build_model(cfg, seed=1)
    wrong = llama_config(cfg.replace(rope_theta=10_000.0), eos_id=0, pad_id=None, max_positions=128)
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**wrong)).eval()
    hf.load_state_dict(llama_state_dict(ours.state_dict(), cfg), strict=True)
    idx = torch.randint(0, cfg.vocab_size, (1, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (hf(input_ids=idx).logits - ours(idx).logits).abs().max() > 1e-3


# MoE (issue 17.6): Qwen2MoeForCausalLM from the exporter's files; routed-only and shared-expert variants, k = 1..3
MOE_BASE = BASE.replace(n_kv_heads=2, d_ff=1)
MOE_CONFIGS = {
    f"{'shared' if shared else 'routed'}-k{k}": MOE_BASE.replace(
        moe=MoEConfig(n_experts=6, top_k=k, d_expert=24, d_shared=shared))
    for shared in (32, 0) for k in (1, 2, 3)
}


def _qwen2_moe(cfg: ModelConfig, ours, tmp_path, **overrides):
    """Write the exported config.json + safetensors and load them with AutoModelForCausalLM (asserting every key)."""
    save_file(qwen2_moe_state_dict(ours.state_dict(), cfg), str(tmp_path / "model.safetensors"),
              metadata={"format": "pt"})
    hf_cfg = {**qwen2_moe_config(cfg, eos_id=cfg.vocab_size - 1, pad_id=None, max_positions=128), **overrides}
    (tmp_path / "config.json").write_text(json.dumps(hf_cfg))
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32,
                                                                 output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return hf.eval()


@pytest.mark.parametrize("name", list(MOE_CONFIGS))
def test_logits_equal_qwen2_moe(name: str, tmp_path) -> None:
    cfg = MOE_CONFIGS[name]
    ours = build_model(cfg, seed=1)
    hf = _qwen2_moe(cfg, ours, tmp_path)
    assert type(hf).__name__ == "Qwen2MoeForCausalLM" and hf.config.norm_topk_prob is False
    idx = torch.randint(0, cfg.vocab_size, (3, 96), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = ours(idx).logits
        got = hf(input_ids=idx).logits
    assert want.dtype == got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
    assert want.std() > 0.5


@pytest.mark.parametrize("override", [{"norm_topk_prob": True}, {"num_experts_per_tok": 3}])
def test_moe_parity_is_sensitive_to_routing(override, tmp_path) -> None:
    """The comparison can fail: renormalised top-k weights or another k change the logits beyond tolerance."""
    cfg = MOE_CONFIGS["shared-k2"]
    ours = build_model(cfg, seed=1)
    hf = _qwen2_moe(cfg, ours, tmp_path, **override)
    idx = torch.randint(0, cfg.vocab_size, (1, 64), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (hf(input_ids=idx).logits - ours(idx).logits).abs().max() > 1e-3
