"""Issue 2 parity: our dense model equals transformers.LlamaForCausalLM with the same weights and config.

The weights go through the exporter's mapping (sparsecod.evaluation.export_hf: fused qkv split into q/k/v,
Llama names) and are loaded with strict=True, so a missing or extra parameter fails too.
"""

from __future__ import annotations

import pytest
import torch

from _eval_testutil import build_model
from sparsecod.evaluation.export_hf import llama_config, llama_state_dict
from sparsecod.model import ModelConfig

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
