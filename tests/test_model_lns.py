"""LayerNorm Scaling (issue 19; Sun et al. 2025): model.norm_scaling = lns scales block ℓ's pre-norm outputs by 1/√ℓ."""

from __future__ import annotations

import math

import pytest
import torch

from sparsecod.model import ConfigError, ModelConfig, Transformer, load_model, save_model
from sparsecod.model.transformer import norm_scale

PRE = ModelConfig(n_layers=4, d_model=32, n_heads=4, n_kv_heads=2, d_ff=48, vocab_size=100, pad_vocab_to=64)
LNS = PRE.replace(norm_scaling="lns")


def _model(cfg: ModelConfig, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(cfg).eval()


def test_scale_factors_known_answer() -> None:
    """1-based layer ℓ: 1, 1/√2, 1/√3, 1/2 on both norms of each block (first block unscaled); Pre-LN all 1."""
    want = [1.0, 1 / math.sqrt(2), 1 / math.sqrt(3), 0.5]
    model = _model(LNS)
    assert [b.attn_norm.scale for b in model.blocks] == pytest.approx(want, abs=1e-15)
    assert [b.ffn_norm.scale for b in model.blocks] == pytest.approx(want, abs=1e-15)
    assert model.final_norm.scale == 1.0
    assert [norm_scale(PRE, i) for i in range(4)] == [1.0] * 4
    assert all(b.attn_norm.scale == b.ffn_norm.scale == 1.0 for b in _model(PRE).blocks)


def test_parameter_count_unchanged() -> None:
    assert sum(p.numel() for p in _model(LNS).parameters()) == sum(p.numel() for p in _model(PRE).parameters())
    assert LNS.param_counts() == PRE.param_counts()
    assert _model(LNS).state_dict().keys() == _model(PRE).state_dict().keys()


def test_lns_equals_pre_ln_with_gains_folded() -> None:
    """LNS is Pre-LN whose two norm gains of block ℓ are multiplied by 1/√ℓ — and differs from plain Pre-LN."""
    lns = _model(LNS, seed=3)
    pre = _model(PRE)
    state = lns.state_dict()
    for i in range(LNS.n_layers):
        for norm in ("attn_norm", "ffn_norm"):
            state[f"blocks.{i}.{norm}.weight"] = state[f"blocks.{i}.{norm}.weight"] / math.sqrt(i + 1)
    pre.load_state_dict(state)
    plain = _model(PRE)
    plain.load_state_dict(lns.state_dict())
    idx = torch.randint(0, 100, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, folded, unscaled = lns(idx).logits, pre(idx).logits, plain(idx).logits
    torch.testing.assert_close(got, folded, rtol=0, atol=1e-5)
    assert (got - unscaled).abs().max() > 1e-3


def test_config_with_and_without_the_field(tmp_path) -> None:
    old = {k: v for k, v in PRE.to_dict().items() if k != "norm_scaling"}  # a model config saved before the option
    assert ModelConfig.from_dict(old).norm_scaling == "none"
    assert ModelConfig.from_dict(LNS.to_dict()) == LNS
    assert "norm_scaling" not in repr(PRE) and "norm_scaling='lns'" in repr(LNS)  # old training keys unchanged
    with pytest.raises(ConfigError, match="model.norm_scaling='rms': use one of none, lns"):
        PRE.replace(norm_scaling="rms")
    save_model(_model(LNS), tmp_path / "m")
    assert [b.ffn_norm.scale for b in load_model(tmp_path / "m").blocks][-1] == 0.5
